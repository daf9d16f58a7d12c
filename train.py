"""Train a dehazing network.

    python train.py configs/reside6k/mixdehazenet-t.yaml                    # RESIDE-6K recipe
    python train.py configs/reside6k/mixdehazenet-t.yaml data.root=/data/RESIDE-6K train.batch_size=8
    python train.py configs/reside6k/mixdehazenet-t.yaml --resume            # continue from <out_dir>/last.pt
    torchrun --standalone --nproc_per_node=4 train.py configs/reside6k/mixcl-s.yaml   # 4 GPUs (train.sh does this)

Writes to the config's out_dir: last.pt and best.pt (atomically), history.jsonl (one line per
validation) and TensorBoard logs under tensorboard/. Under torchrun only rank 0 writes and prints.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from datasets import SeededSampler, attach_prior, build_training_sets
from models import build_model
from models.weights import MissingWeightsError
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.cli import run_reporting_user_errors
from utils.config import Config, ConfigError, load_config
from utils.cpu_memory import keep_freed_memory
from utils.evaluation import evaluate, model_inputs, summarize
from utils.losses import build_loss


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML config (configs/<experiment>/<model>.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=2e-4 data.root=/data")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    return parser.parse_args(argv)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: fp16 or bf16 on CUDA; on the CPU bf16 when asked for, else fp32 (the CPU has no
    fast fp16, and the default config's fp16 is meant for GPUs)."""
    if amp == "off" or (device.type != "cuda" and amp != "bf16"):
        return None
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[amp]


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


def setup_process() -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def attach_prior_or_fall_back(config: Config, datasets: list, device: torch.device) -> tuple[list, dict]:
    try:
        return attach_prior(config.prior, datasets, device)
    except MissingWeightsError as e:
        if not config.prior.fallback_to_labels:
            raise
        print(f"{e}\nContinuing with the `labels` prior (each synthetic photo's known domain) instead of CLIP.")
        config.prior.mode = "labels"  # recorded in the checkpoints
        return attach_prior(config.prior, datasets, device)


def train(config: Config, resume: bool = False) -> list[dict]:
    """Run (or resume) training; return the validation history, one dict per evaluation."""
    rank, world_size, device = setup_process()
    is_main = rank == 0
    out_dir = Path(config.out_dir)
    amp_dtype = autocast_dtype(config.train.amp, device)
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)
    torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
    if device.type == "cpu" and config.train.keep_freed_cpu_memory:
        keep_freed_memory()

    if not resume and (out_dir / "last.pt").exists():
        raise FileExistsError(f"{out_dir / 'last.pt'} exists: pass --resume to continue it, or choose another out_dir")

    # The loss first (it loads ImageNet weights: a missing file stops the run here), then the data: every
    # file is checked (and the language prior computed) before the first step.
    criterion = build_loss(config.loss).to(device)
    # Rank 0 goes first, so that only it writes the prior caches the other processes then read.
    if not is_main:
        dist.barrier()
    train_set, val_set = build_training_sets(config.data)
    model_args = dict(config.model_args)
    if config.prior.mode != "none":
        (train_set, val_set), prior_args = attach_prior_or_fall_back(config, [train_set, val_set], device)
        model_args |= prior_args
    if is_main and world_size > 1:
        dist.barrier()
    sampler = SeededSampler(len(train_set), config.train.seed, config.train.batch_size,
                            config.train.micro_batch_size, rank, world_size)
    if sampler.steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size {config.train.batch_size} exceeds the {len(train_set)} training samples")
    loader_options = dict(num_workers=config.data.num_workers, pin_memory=device.type == "cuda",
                          persistent_workers=config.data.num_workers > 0)
    train_loader = DataLoader(train_set, sampler.micro_batch_size, sampler=sampler, **loader_options)
    val_loader = DataLoader(val_set, sampler.micro_batch_size, **loader_options)

    # Model, loss, optimisation.
    model = build_model(config.model, **model_args).to(device, memory_format=memory_format)
    if config.train.sync_batchnorm and world_size > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay,
                                  fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.train.epochs, eta_min=config.train.lr * config.train.min_lr_ratio)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.train.ema_decay), use_buffers=True)
           if config.train.ema_decay > 0 else None)

    start_epoch, best_psnr, history, skipped = 0, -math.inf, [], 0
    if resume:
        checkpoint = load_checkpoint(out_dir / "last.pt")
        if checkpoint["config"] != config.to_dict():
            changed = sorted(k for k in config.to_dict() if checkpoint["config"].get(k) != config.to_dict()[k])
            raise ConfigError(f"cannot resume {out_dir / 'last.pt'}: config differs in {', '.join(changed)}")
        model.load_state_dict(checkpoint["model"])
        if ema is not None:
            ema.module.load_state_dict(checkpoint["ema"])
            ema.n_averaged.fill_(checkpoint["ema_updates"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        criterion.load_running_state(checkpoint["loss_state"])
        set_rng_state(checkpoint["rng"])
        start_epoch, best_psnr, history = checkpoint["epoch"], checkpoint["best_psnr"], checkpoint["history"]
        skipped = checkpoint["skipped_steps"]
        if is_main:
            print(f"resuming {out_dir} after epoch {start_epoch}")

    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world_size > 1 else None
    net = ddp or model
    net = torch.compile(net) if config.train.compile else net
    steps_per_epoch, accumulation = sampler.steps_per_epoch, sampler.accumulation_steps
    writer = SummaryWriter(out_dir / "tensorboard", purge_step=start_epoch * steps_per_epoch) if is_main else None
    if is_main:
        print(f"{config.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M parameters, "
              f"{len(train_set)} train / {len(val_set)} validation samples, device {device} × {world_size}, "
              f"precision {amp_dtype or torch.float32}, batch {config.train.batch_size} = {world_size} process(es) "
              f"× {accumulation} accumulation step(s) × {sampler.micro_batch_size}")

    for epoch in range(start_epoch, config.train.epochs):
        model.train()
        sampler.set_epoch(epoch)
        batches = iter(train_loader)
        progress = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.train.epochs}", leave=False,
                        dynamic_ncols=True, disable=not is_main)
        started = time.perf_counter()
        for step in progress:
            global_step = epoch * steps_per_epoch + step
            losses = torch.zeros(len(criterion.terms) + 1, device=device)  # total and each term, summed
            for micro_step in range(accumulation):
                batch = next(batches)
                inputs = tuple(t.contiguous(memory_format=memory_format) if t.dim() == 4 else t
                               for t in model_inputs(batch, device))
                gt = batch["gt"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
                # gradients are all-reduced across processes only on the last micro-step
                last = micro_step == accumulation - 1
                with ddp.no_sync() if ddp is not None and not last else contextlib.nullcontext():
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        output = net(*inputs, return_global=True) if criterion.needs_global_feature else net(*inputs)
                        output, global_feature = output if criterion.needs_global_feature else (output, None)
                        loss, parts = criterion(output.float(), gt, inputs[0], global_feature)  # terms choose fp32
                    scaler.scale(loss / accumulation).backward()
                losses += torch.stack([loss.detach(), *(p.detach() for p in parts.values())])
            if world_size > 1:
                dist.all_reduce(losses)
            losses = (losses / (accumulation * world_size)).tolist()  # means over the global batch's micro-batches
            loss_value = losses[0]

            if math.isfinite(loss_value):
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(model)
            else:  # a diverging step must not poison the weights
                skipped += 1
                if is_main:
                    writer.add_scalar("train/skipped_steps", skipped, global_step)
                    tqdm.write(f"step {global_step}: non-finite loss, step skipped ({skipped} so far)")
                if skipped > config.train.max_skipped_steps:
                    raise RuntimeError(f"{skipped} steps had a non-finite loss (train.max_skipped_steps is "
                                       f"{config.train.max_skipped_steps}): the run diverged; lower train.lr or try "
                                       f"train.amp=bf16, and resume from {out_dir / 'last.pt'}")
            optimizer.zero_grad(set_to_none=True)

            if is_main:
                writer.add_scalar("train/loss", loss_value, global_step)
                for name, value in zip(criterion.terms, losses[1:]):
                    writer.add_scalar(f"train/loss_{name}", value, global_step)
                progress.set_postfix(loss=f"{loss_value:.4f}")
        scheduler.step()
        finished = epoch + 1
        if is_main:
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], finished)
            writer.add_scalar("train/images_per_second",
                              steps_per_epoch * config.train.batch_size / (time.perf_counter() - started), finished)
        if finished % config.train.eval_every and finished != config.train.epochs:
            continue
        if not is_main:
            dist.barrier()  # wait while rank 0 validates and saves
            continue

        records = list(evaluate(model, val_loader, device, amp_dtype))
        metrics = summarize(records)
        if ema is not None:
            metrics |= {f"ema_{k}": v for k, v in summarize(list(evaluate(ema.module, val_loader, device, amp_dtype))).items()}
        score = metrics["ema_psnr" if ema is not None else "psnr"]  # the weights best.pt is judged by
        for name in ("psnr", "ssim", "ema_psnr", "ema_ssim"):
            if name in metrics:
                writer.add_scalar(f"val/{name}", metrics[name], finished)
        for i, record in enumerate(records[:config.log_images]):
            writer.add_images(f"val/{i}_hazy_output_gt", torch.stack([record["hazy"], record["output"], record["gt"]]), finished)
        is_best = score > best_psnr
        best_psnr = max(best_psnr, score)
        history.append({"epoch": finished, **metrics, "best": is_best})
        (out_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        writer.flush()  # logs on disk always cover what the checkpoint covers
        tqdm.write(f"epoch {finished}: validation PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}"
                   + (f", EMA {metrics['ema_psnr']:.2f} dB" if ema is not None else "")
                   + f" (hazy input {metrics['hazy_psnr']:.2f} dB){'  [best]' if is_best else ''}")

        checkpoint = {"model_name": config.model, "model_args": model_args, "model": model.state_dict(),
                      "config": config.to_dict(), "epoch": finished, "metrics": metrics, "best_psnr": best_psnr,
                      "history": history, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "scaler": scaler.state_dict(), "loss_state": criterion.running_state(), "rng": rng_state(),
                      "skipped_steps": skipped}
        if ema is not None:
            checkpoint |= {"ema": ema.module.state_dict(), "ema_updates": int(ema.n_averaged)}
        if is_best:
            save_checkpoint(out_dir / "best.pt", checkpoint)
        save_checkpoint(out_dir / "last.pt", checkpoint)
        if world_size > 1:
            dist.barrier()
    if is_main:
        writer.close()
    if world_size > 1:
        dist.destroy_process_group()
    return history


def main(argv=None) -> None:
    args = parse_args(argv)
    train(load_config(args.config, args.overrides), resume=args.resume)


if __name__ == "__main__":
    run_reporting_user_errors(main)
