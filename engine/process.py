"""The process a training run lives in: device, rank and world size under torchrun (and which torchrun job and
restart it belongs to), seeds, precision."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Process:
    rank: int
    world_size: int
    device: torch.device
    distributed: bool = False  # launched by torchrun: in a process group, the model under DDP (even alone)
    job: str | None = None     # torchrun's job (rendezvous) id, None outside torchrun or when it is torchrun's "none"
    restarts: int = 0          # how often torchrun has restarted the workers of this job after a failure

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, prints and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start_process(seed: int) -> Process:
    """Join the process group when launched by torchrun (which sets WORLD_SIZE, also for one process), pick the
    device, seed every generator."""
    if "WORLD_SIZE" not in os.environ:
        process = Process(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    else:
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **group_store())
        job = os.environ.get("TORCHELASTIC_RUN_ID")
        process = Process(dist.get_rank(), dist.get_world_size(), device, distributed=True,
                          job=None if job in (None, "none") else job, restarts=job_restarts(device))
    torch.manual_seed(seed)
    random.seed(seed)
    torch.backends.cudnn.benchmark = True
    return process


def group_store() -> dict:
    """The store, rank and world size the process group forms with (init_process_group's keywords). torchrun's agent
    serves one store for the whole job, and what a process group wrote there before a restart stays: restarted
    workers would read their predecessors' addresses (gloo then fails to connect, or hangs). On one node, where
    every worker has the same restart count, each restart gets keys of its own, as PyTorch's env:// rendezvous once
    did itself; across nodes the counts differ (a node whose workers did not fail restarts them without counting)."""
    store, rank, world_size = next(dist.rendezvous("env://"))
    if os.environ.get("GROUP_WORLD_SIZE", "1") == "1":
        store = dist.PrefixStore(f"restart_{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}", store)
    return {"store": store, "rank": rank, "world_size": world_size}


def job_restarts(device: torch.device) -> int:
    """How often torchrun has restarted this job's workers: the most any node counts, so that every worker agrees
    whether the job was restarted (see group_store)."""
    restarts = torch.tensor([int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))], device=device)
    dist.all_reduce(restarts, op=dist.ReduceOp.MAX)
    return int(restarts.item())


def finish_process(process: Process) -> None:
    if process.distributed:
        dist.destroy_process_group()


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
