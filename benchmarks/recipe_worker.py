"""One instrumented training run of benchmarks/benchmark_recipe.py: a train.py (this project's, or a released one
from its checkout) for a fixed number of optimiser steps, with a record of where each step's time goes.

    python benchmarks/recipe_worker.py SPEC.json      (benchmark_recipe.py writes SPEC.json and runs this)

Before the train.py runs, only the standard library, PyTorch and psutil are imported: the released code has
top-level packages named like this project's (utils, models, datasets), so nothing of this project may be
loaded first. What the run is given, identically for both codes:
- the first `warmup` batches are fixed ones (benchmark_recipe.py's probe batches), handed out by the training
  DataLoader before its own: both codes take their first steps on the same images from the same weights, so
  their first losses must agree to float rounding. The timed steps then come from each code's own loader.
- the initial network weights: this project's run saves its freshly built network; the released run loads the
  same tensors in the released parameter layout (converted by benchmark_recipe.py).

Patched only where the machine forces it (released code on a machine without CUDA): `.cuda()` returns the
module or tensor unchanged, and the missing `tensorboardX` package (imported, never used) is served by PyTorch's
SummaryWriter. ResNet-152's weights come from $TORCH_HOME, where torchvision looks for them.

The record: marks at data waits, the network's forward, the regulariser's forward, backward (split where the
gradient reaches the network's output), and the optimiser step; on CUDA each mark synchronises first.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import resource
import runpy
import sys
import time
import traceback
from pathlib import Path

import psutil
import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils.data import DataLoader


class StopRun(Exception):
    """Raised after the last measured optimiser step: ends the train.py's loop."""


class Timeline:
    """Named time marks; `losses` holds the loss of the first steps as the step scales it for backward."""

    def __init__(self, device: str, steps: int, record_losses: int):
        self.device = device
        self.synchronize = torch.cuda.synchronize if device == "cuda" else lambda: None
        self.steps, self.record_losses = steps, record_losses
        self.marks: list[tuple[str, float]] = []
        self.losses: list[float] = []
        self.optimizer_steps = 0
        self.started = time.perf_counter()

    def mark(self, name: str) -> None:
        self.synchronize()
        self.marks.append((name, time.perf_counter()))

    def loss(self, value: torch.Tensor) -> None:
        if len(self.losses) < self.record_losses:
            self.losses.append(value.detach().float().item())

    def optimizer_stepped(self) -> None:
        self.mark("optimizer_end")
        self.optimizer_steps += 1
        if self.optimizer_steps == self.steps:
            self.memory_gb = memory_gb(self.device)  # while the DataLoader workers still run
            raise StopRun


def install_step_marks(timeline: Timeline) -> None:
    """Marks around every optimiser step, backward call and loss scaling, whichever code runs."""
    register_optimizer_step_pre_hook(lambda *_: timeline.mark("optimizer_start"))
    register_optimizer_step_post_hook(lambda *_: timeline.optimizer_stepped())
    backward = torch.Tensor.backward

    def timed_backward(self, *args, **kwargs):
        timeline.mark("backward_start")
        backward(self, *args, **kwargs)
        timeline.mark("backward_end")
    torch.Tensor.backward = timed_backward
    scale = torch.amp.GradScaler.scale  # both codes scale the loss before backward (a no-op when disabled)

    def recorded_scale(self, outputs):
        timeline.loss(outputs)
        return scale(self, outputs)
    torch.amp.GradScaler.scale = recorded_scale


def mark_network(network: nn.Module, timeline: Timeline) -> None:
    """Marks around the network's forward pass, and when backward reaches its output."""
    network.register_forward_pre_hook(lambda *_: timeline.mark("network_start"))

    def finished(module, inputs, output):
        timeline.mark("network_end")
        if output.requires_grad:
            output.register_hook(lambda grad: timeline.mark("output_gradient"))
    network.register_forward_hook(finished)


def mark_regulariser(regulariser: nn.Module, timeline: Timeline) -> None:
    regulariser.register_forward_pre_hook(lambda *_: timeline.mark("regulariser_start"))
    regulariser.register_forward_hook(lambda *_: timeline.mark("regulariser_end"))


class ProbesFirst:
    """The training DataLoader's iterator, handing out the probe batches before its own, and timing each wait."""

    def __init__(self, iterator, probes: list[dict], timeline: Timeline):
        self.iterator, self.probes, self.timeline = iterator, list(probes), timeline

    def __iter__(self):
        return self

    def __next__(self):
        self.timeline.mark("data_start")
        batch = self.probes.pop(0) if self.probes else next(self.iterator)
        self.timeline.mark("data_end")
        return batch


def serve_probes_first(probes: list[dict], timeline: Timeline) -> None:
    """The first DataLoader iterated (both codes iterate the training loader first) starts with the probes."""
    original = DataLoader.__iter__
    served = []

    def iterate(loader):
        iterator = original(loader)
        if served:
            return iterator
        served.append(loader)
        return ProbesFirst(iterator, probes, timeline)
    DataLoader.__iter__ = iterate


def probe_batches(path: str, code: str, text: bool) -> list[dict]:
    """The fixed batches in each code's batch layout (its DataLoader's collated dicts); `text`: with the text
    features (MixCL)."""
    batches = []
    for probe in torch.load(path, weights_only=True):
        if code == "ours":
            batches.append({"hazy": probe["hazy"], "gt": probe["gt"]} | ({"prior": probe["text"]} if text else {}))
        else:  # the released PairLoader: text features stored 1×D per image (MixDehazeNet's ignores them)
            batches.append({"source": probe["hazy"], "target": probe["gt"], "text": probe["text"][:, None],
                            "filename": [f"probe{i}" for i in range(len(probe["hazy"]))]})
    return batches


def run_ours(spec: dict, timeline: Timeline) -> None:
    """This project's train.py, its run built as train.py builds it; the fresh network's weights are saved."""
    engine, train = importlib.import_module("engine"), importlib.import_module("train")  # from spec["code"]
    build_run = engine.build_run

    def built(*args, **kwargs):
        run = build_run(*args, **kwargs)
        torch.save(run.model.state_dict(), spec["initial_weights"])
        mark_network(run.net, timeline)  # outside torch.compile's graph when the config compiles
        if "contrastive" in run.criterion.terms:
            mark_regulariser(run.criterion.terms["contrastive"], timeline)
        return run
    engine.build_run = built
    train.main(spec["argv"])


def run_released(spec: dict, timeline: Timeline) -> None:
    """A released train.py from its checkout, its network given the initial weights."""
    sys.dont_write_bytecode = True  # no __pycache__ in the checkout
    if spec["device"] == "cpu":
        nn.Module.cuda = lambda self, device=None: self
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    if importlib.util.find_spec("tensorboardX") is None:
        sys.modules["tensorboardX"] = importlib.import_module("torch.utils.tensorboard")
    models, regularisers = importlib.import_module("models"), importlib.import_module("utils.CR_res")  # the release's
    factory_name = spec["released_factory"]
    factory = getattr(models, factory_name)

    def network():
        net = factory()
        net.load_state_dict(torch.load(spec["initial_weights"], weights_only=True))
        mark_network(net, timeline)
        return net
    setattr(models, factory_name, network)
    regulariser_init = regularisers.ContrastLoss_res.__init__

    def regulariser(self, *args, **kwargs):
        regulariser_init(self, *args, **kwargs)
        mark_regulariser(self, timeline)
    regularisers.ContrastLoss_res.__init__ = regulariser
    sys.argv = [str(Path(spec["code"]) / "train.py"), *spec["argv"]]
    runpy.run_path(sys.argv[0], run_name="__main__")


def memory_gb(device: str) -> tuple[float, float]:
    """(peak of this process: the allocator's on CUDA, resident set size on the CPU; its child processes'
    proportional set size now: the DataLoader workers)."""
    main = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    workers = 0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            workers += child.memory_full_info().pss
    return main / 2**30, workers / 2**30


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    timeline = Timeline(spec["device"], spec["warmup"] + spec["steps"], spec["warmup"] + 1)
    sys.path.insert(0, spec["code"])
    os.chdir(spec["cwd"])
    install_step_marks(timeline)
    serve_probes_first(probe_batches(spec["probes"], spec["kind"], spec["text"]), timeline)
    try:
        (run_ours if spec["kind"] == "ours" else run_released)(spec, timeline)
        outcome = {"error": f"the run ended after {timeline.optimizer_steps} steps, before the last measured one"}
    except StopRun:
        main_gb, workers_gb = timeline.memory_gb
        outcome = {"marks": timeline.marks, "losses": timeline.losses, "started": timeline.started,
                   "peak_gb": main_gb, "workers_gb": workers_gb}
    except BaseException:
        outcome = {"error": traceback.format_exc()}
    Path(spec["result"]).write_text(json.dumps(outcome))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # at once: DataLoader workers are not waited for


if __name__ == "__main__":
    main(sys.argv[1])
