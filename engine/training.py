"""A training run and its named steps: build it, take one optimiser step, validate, save, resume.

train.py calls these in its epoch loop; benchmarks/benchmark_training.py times `train_step` itself.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from losses import WeightedLoss
from models import build_model
from utils.checkpoint import load_checkpoint, save_checkpoint, write_text_atomically
from utils.cli import UserError
from utils.config import Config, ConfigError, changed_keys, config_from_dict
from utils.precision import autocast_dtype

from .evaluation import evaluate, model_inputs, summarize
from .process import Process, rng_state, set_rng_state

# What a resumed run may change: the rest of the config is what the checkpoint's weights were trained with.
RESUMABLE_CHANGES = ("train.lr", "train.epochs", "train.max_skipped_steps")


class TrainingDiverged(UserError):
    """The run cannot go on: losses or weights stopped being finite."""


@dataclass
class TrainingRun:
    """What a run trains with, and the state that changes as it trains (all of it goes into checkpoints)."""

    config: Config
    process: Process
    model: nn.Module                     # the network: checkpoints hold its weights
    net: nn.Module                       # what a step calls: the model, wrapped by DDP and/or torch.compile
    ddp: DistributedDataParallel | None
    criterion: WeightedLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    model_args: dict
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    steps_per_epoch: int = 1
    epoch: int = 0                       # finished epochs
    step: int = 0                        # optimiser steps taken in the unfinished epoch
    best_psnr: float = -math.inf
    history: list[dict] = field(default_factory=list)
    skipped_steps: int = 0

    @property
    def progress(self) -> float:
        """Epochs trained: whole ones, and the share of the unfinished one."""
        return self.epoch if self.step == 0 else round(self.epoch + self.step / self.steps_per_epoch, 4)


def build_run(config: Config, criterion: WeightedLoss, model_args: dict, process: Process,
              steps_per_epoch: int = 1) -> TrainingRun:
    """The network, AdamW (fused), cosine annealing per epoch, the GradScaler of fp16 autocast, the optional
    EMA, and the DDP / torch.compile wrappers, as the config asks."""
    train, device = config.train, process.device
    memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
    amp_dtype = autocast_dtype(train.amp, device.type)
    model = build_model(config.model, **model_args).to(device, memory_format=memory_format)
    if train.sync_batchnorm and process.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train.epochs, eta_min=train.lr * train.min_lr_ratio)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay), use_buffers=True)
           if train.ema_decay > 0 else None)
    ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
           if process.distributed else None)
    net = torch.compile(ddp or model) if train.compile else ddp or model
    return TrainingRun(config, process, model, net, ddp, criterion, optimizer, scheduler, scaler, ema, model_args,
                       amp_dtype, memory_format, steps_per_epoch)


def weights_are_finite(model: nn.Module) -> bool:
    """Parameters and floating buffers (BatchNorm statistics) alike: a checkpoint holds both."""
    tensors = [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(tensors, norm_type=math.inf)))


def train_step(run: TrainingRun, micro_batches: list[dict]) -> list[float]:
    """One optimiser step over one global batch, given as this process's micro-batches: gradients accumulate
    over them (under DDP they are all-reduced on the last one only). Returns the total loss and each term,
    means over the global batch. A step whose loss is not finite changes no weight and is counted; too many
    such steps, or weights that an update made non-finite, stop the run before anything is saved."""
    device, criterion = run.process.device, run.criterion
    sums = torch.zeros(len(criterion.terms) + 1, device=device)
    for i, batch in enumerate(micro_batches):
        inputs = tuple(t.contiguous(memory_format=run.memory_format) if t.dim() == 4 else t
                       for t in model_inputs(batch, device))
        gt = batch["gt"].to(device, non_blocking=True).contiguous(memory_format=run.memory_format)
        last = i == len(micro_batches) - 1
        with run.ddp.no_sync() if run.ddp is not None and not last else contextlib.nullcontext():
            with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
                output = run.net(*inputs, return_global=True) if criterion.needs_global_feature else run.net(*inputs)
                output, global_feature = output if criterion.needs_global_feature else (output, None)
                loss, parts = criterion(output.float(), gt, inputs[0], global_feature)  # each term chooses fp32 or not
            run.scaler.scale(loss / len(micro_batches)).backward()
        sums += torch.stack([loss.detach(), *(p.detach() for p in parts.values())])
    if run.process.distributed:
        dist.all_reduce(sums)
    losses = (sums / (len(micro_batches) * run.process.world_size)).tolist()

    stepped = math.isfinite(losses[0])
    if stepped:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.skipped_steps += 1
    if not weights_are_finite(run.model):  # an update, or BatchNorm statistics of a non-finite forward pass
        raise TrainingDiverged(
            f"epoch {run.epoch + 1}: weights or BatchNorm statistics became non-finite (train.lr {run.config.train.lr:g} "
            f"too high?); nothing from this epoch is saved. Resume the last checkpoint with a lower rate: "
            f"train.py CONFIG --resume train.lr=...")
    if stepped and run.ema is not None:
        run.ema.update_parameters(run.model)
    if run.skipped_steps > run.config.train.max_skipped_steps:
        raise TrainingDiverged(
            f"{run.skipped_steps} steps had a non-finite loss (train.max_skipped_steps is "
            f"{run.config.train.max_skipped_steps}): the run diverged. Resume the last checkpoint with a lower "
            f"rate or bf16: train.py CONFIG --resume train.lr=... (or another out_dir with train.amp=bf16)")
    run.optimizer.zero_grad(set_to_none=True)
    return losses


def validate(run: TrainingRun, loader) -> tuple[dict, list[dict]]:
    """Score the network (and its EMA) on the validation data; record the result in the run's history.
    best.pt is judged by the EMA's PSNR when there is an EMA."""
    device = run.process.device
    records = list(evaluate(run.model, loader, device, run.amp_dtype))
    metrics = summarize(records)
    if run.ema is not None:
        ema_metrics = summarize(list(evaluate(run.ema.module, loader, device, run.amp_dtype)))
        metrics |= {f"ema_{k}": v for k, v in ema_metrics.items()}
    score = metrics["ema_psnr" if run.ema is not None else "psnr"]
    is_best = score > run.best_psnr
    run.best_psnr = max(run.best_psnr, score)
    run.history.append({"epoch": run.progress, **metrics, "best": is_best})
    return metrics, records


def training_checkpoint(run: TrainingRun) -> dict:
    """Everything `--resume` needs, and what `load_model` reads (utils/checkpoint.py describes the format)."""
    checkpoint = {"model_name": run.config.model, "model_args": run.model_args, "model": run.model.state_dict(),
                  "config": run.config.to_dict(), "epoch": run.epoch, "step": run.step, "metrics": run.history[-1],
                  "best_psnr": run.best_psnr, "history": run.history, "optimizer": run.optimizer.state_dict(),
                  "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
                  "loss_state": run.criterion.running_state(), "rng": rng_state(), "skipped_steps": run.skipped_steps,
                  "torchrun_job": run.process.job}
    if run.ema is not None:
        checkpoint |= {"ema": run.ema.module.state_dict(), "ema_updates": int(run.ema.n_averaged)}
    return checkpoint


def save_checkpoints(run: TrainingRun, out_dir: Path) -> None:
    """best.pt (when the last validation was the best so far) and last.pt, then history.jsonl, so that the
    history never lists an epoch no checkpoint holds. Weights are checked finite first."""
    if not weights_are_finite(run.model):
        raise TrainingDiverged(f"epoch {run.epoch}: the weights are not finite; {out_dir / 'last.pt'} is left as it was")
    checkpoint = training_checkpoint(run)
    if run.history[-1]["best"]:
        save_checkpoint(out_dir / "best.pt", checkpoint)
    save_checkpoint(out_dir / "last.pt", checkpoint)
    write_text_atomically(out_dir / "history.jsonl", "".join(json.dumps(h) + "\n" for h in run.history))


def restarted_after_checkpoint(process: Process, path: Path) -> bool:
    """Whether this process is a worker torchrun restarted after a failure (--max-restarts) of a job that wrote the
    checkpoint at `path`: it then continues from there by itself. A checkpoint of any other run, and any without a
    job id (torchrun's "none", when nodes rendezvous without --rdzv-id), is not continued unasked."""
    if process.restarts == 0 or process.job is None or not path.is_file():
        return False
    return load_checkpoint(path).get("torchrun_job") == process.job


def restore_run(run: TrainingRun, path: Path) -> list[str]:
    """Continue from a checkpoint written by `save_checkpoints`. Only RESUMABLE_CHANGES may differ between its
    config and the run's; they take effect from the next epoch (a new rate or length re-plans the cosine
    schedule from where it is). Returns the changed keys."""
    checkpoint = load_checkpoint(path)
    # the checkpoint's config with today's defaults for keys added since it was written
    changed = changed_keys(config_from_dict(checkpoint["config"]).to_dict(), run.config.to_dict())
    refused = [k for k in changed if k not in RESUMABLE_CHANGES]
    if refused:
        raise ConfigError(f"cannot resume {path}: the config differs in {', '.join(refused)} (a resume may change "
                          f"only {', '.join(RESUMABLE_CHANGES)}; start another out_dir for the rest)")
    if network_shape(checkpoint["model_args"]) != network_shape(run.model_args):
        raise ConfigError(f"cannot resume {path}: it was trained with the network arguments "
                          f"{network_shape(checkpoint['model_args'])}, this run would build {network_shape(run.model_args)} "
                          f"(the language prior changed: CLIP weights that are now present or missing?); start another "
                          f"out_dir")
    if run.config.train.epochs <= checkpoint["epoch"]:
        raise ConfigError(f"cannot resume {path}: it has trained {checkpoint['epoch']} epochs, train.epochs is "
                          f"{run.config.train.epochs}")
    run.model.load_state_dict(checkpoint["model"])
    if run.ema is not None:
        run.ema.module.load_state_dict(checkpoint["ema"])
        run.ema.n_averaged.fill_(checkpoint["ema_updates"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    run.criterion.load_running_state(checkpoint["loss_state"])
    set_rng_state(checkpoint["rng"])
    run.epoch, run.best_psnr, run.history = checkpoint["epoch"], checkpoint["best_psnr"], checkpoint["history"]
    run.step = checkpoint.get("step", 0)  # checkpoints written before mid-epoch validation end epochs
    run.skipped_steps = checkpoint["skipped_steps"]
    if {"train.lr", "train.epochs"} & set(changed):
        replan_schedule(run)
    return changed


def network_shape(model_args: dict) -> dict:
    """The arguments that shape the network's weights: all but the prior settings, whose class text features are
    recomputed by CLIP on each start (equal up to float rounding) and which older checkpoints did not record."""
    return {key: value for key, value in model_args.items() if key != "prior"}


def replan_schedule(run: TrainingRun) -> None:
    """Cosine annealing from the config's lr to lr·min_lr_ratio over train.epochs, continued at the finished
    epoch: the current rate is the closed-form value there, and the scheduler's recursion goes on from it."""
    train, scheduler = run.config.train, run.scheduler
    lr, eta_min = train.lr, train.lr * train.min_lr_ratio
    current = eta_min + (lr - eta_min) * (1 + math.cos(math.pi * run.epoch / train.epochs)) / 2
    scheduler.base_lrs, scheduler.eta_min, scheduler.T_max = [lr] * len(scheduler.base_lrs), eta_min, train.epochs
    for group in run.optimizer.param_groups:
        group["initial_lr"], group["lr"] = lr, current
    scheduler._last_lr = [current] * len(run.optimizer.param_groups)
