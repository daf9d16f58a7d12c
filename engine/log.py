"""What a training run reports: TensorBoard scalars and sample images under <out_dir>/tensorboard, and
console lines. Only rank 0 writes; the other ranks' log does nothing."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from .data import TrainingData
from .training import TrainingRun


class TrainingLog:
    def __init__(self, out_dir: Path, run: TrainingRun, data: TrainingData):
        self.run, self.data = run, data
        self.writer = (SummaryWriter(out_dir / "tensorboard", purge_step=self.global_step) if run.process.is_main else None)

    @property
    def global_step(self) -> int:
        """Optimiser steps so far: the x axis of losses and validation scores alike."""
        return self.run.epoch * self.data.steps_per_epoch + self.run.step

    def started(self) -> None:
        run, data = self.run, self.data
        if self.writer is None:
            return
        print(f"{run.config.model}: {sum(p.numel() for p in run.model.parameters()) / 1e6:.3f}M parameters, "
              f"{len(data.train_loader.dataset)} train / {len(data.val_loader.dataset)} validation samples, device "
              f"{run.process.device} × {run.process.world_size}, precision {run.amp_dtype or torch.float32}, batch "
              f"{run.config.train.batch_size} = {run.process.world_size} process(es) × "
              f"{data.sampler.accumulation_steps} accumulation step(s) × {data.sampler.micro_batch_size}"
              + (f"; resuming after epoch {run.progress}" if run.progress else ""))

    def step(self, global_step: int, losses: list[float]) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("train/loss", losses[0], global_step)
        for name, value in zip(self.run.criterion.terms, losses[1:]):
            self.writer.add_scalar(f"train/loss_{name}", value, global_step)
        if not math.isfinite(losses[0]):
            self.writer.add_scalar("train/skipped_steps", self.run.skipped_steps, global_step)
            tqdm.write(f"step {global_step}: non-finite loss, step skipped ({self.run.skipped_steps} so far)")

    def epoch(self, images_per_second: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/lr", self.run.scheduler.get_last_lr()[0], self.run.epoch)
            self.writer.add_scalar("train/images_per_second", images_per_second, self.run.epoch)

    def validation(self, metrics: dict, records: list[dict]) -> None:
        if self.writer is None:
            return
        step, best = self.global_step, self.run.history[-1]["best"]
        for name in ("psnr", "ssim", "ema_psnr", "ema_ssim"):
            if name in metrics:
                self.writer.add_scalar(f"val/{name}", metrics[name], step)
        for i, record in enumerate(records[:self.run.config.log_images]):
            samples = torch.stack([record["hazy"], record["output"], record["gt"]])
            self.writer.add_images(f"val/{i}_hazy_output_gt", samples, step)
        self.writer.flush()  # logs on disk cover what the checkpoint will cover
        tqdm.write(f"epoch {self.run.progress}: validation PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}"
                   + (f", EMA {metrics['ema_psnr']:.2f} dB" if "ema_psnr" in metrics else "")
                   + f" (hazy input {metrics['hazy_psnr']:.2f} dB){'  [best]' if best else ''}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
