"""Train a dehazing network.

    python train.py configs/reside6k/mixdehazenet-t.yaml                    # RESIDE-6K recipe
    python train.py configs/reside6k/mixdehazenet-t.yaml data.root=/data/RESIDE-6K train.batch_size=8
    python train.py configs/reside6k/mixdehazenet-t.yaml --resume            # continue from <out_dir>/last.pt

Writes to the config's out_dir: last.pt and best.pt (atomically), history.jsonl (one line per
validation) and TensorBoard logs under tensorboard/.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from datasets import SeededSampler, attach_prior, build_training_sets
from models import build_model
from models.clip_prior import MissingWeightsError
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.config import Config, ConfigError, load_config
from utils.evaluation import evaluate, model_inputs, summarize
from utils.losses import build_loss


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML config (configs/<experiment>/<model>.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=2e-4 data.root=/data")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    return parser.parse_args(argv)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision only on CUDA; the CPU trains in fp32."""
    if device.type != "cuda" or amp == "off":
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


def train(config: Config, resume: bool = False) -> list[dict]:
    """Run (or resume) training; return the validation history, one dict per evaluation."""
    out_dir = Path(config.out_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp_dtype = autocast_dtype(config.train.amp, device)
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)
    torch.backends.cudnn.benchmark = True

    # Data first: every file is checked (and the language prior computed) before the first step.
    train_set, val_set = build_training_sets(config.data)
    model_args = dict(config.model_args)
    if config.prior.mode != "none":
        try:
            (train_set, val_set), prior_args = attach_prior(config.prior, [train_set, val_set], device)
        except MissingWeightsError as e:
            if not config.prior.fallback_to_labels:
                raise
            print(f"{e}\nContinuing with the `labels` prior (each synthetic photo's known domain) instead of CLIP.")
            config.prior.mode = "labels"
            (train_set, val_set), prior_args = attach_prior(config.prior, [train_set, val_set], device)
        model_args |= prior_args
    sampler = SeededSampler(len(train_set), config.train.seed)
    loader_options = dict(num_workers=config.data.num_workers, pin_memory=device.type == "cuda",
                          persistent_workers=config.data.num_workers > 0)
    train_loader = DataLoader(train_set, config.train.batch_size, sampler=sampler, drop_last=True, **loader_options)
    val_loader = DataLoader(val_set, config.train.batch_size, **loader_options)
    if len(train_loader) == 0:
        raise ConfigError(f"train.batch_size {config.train.batch_size} exceeds the {len(train_set)} training samples")

    model = build_model(config.model, **model_args).to(device)
    criterion = build_loss(config.loss).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.train.epochs, eta_min=config.train.lr * config.train.min_lr_ratio)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start_epoch, best_psnr, history = 0, -math.inf, []
    if resume:
        checkpoint = load_checkpoint(out_dir / "last.pt")
        if checkpoint["config"] != config.to_dict():
            changed = sorted(k for k in config.to_dict() if checkpoint["config"].get(k) != config.to_dict()[k])
            raise ConfigError(f"cannot resume {out_dir / 'last.pt'}: config differs in {', '.join(changed)}")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        set_rng_state(checkpoint["rng"])
        start_epoch, best_psnr, history = checkpoint["epoch"], checkpoint["best_psnr"], checkpoint["history"]
        print(f"resuming {out_dir} after epoch {start_epoch}")
    elif (out_dir / "last.pt").exists():
        raise FileExistsError(f"{out_dir / 'last.pt'} exists: pass --resume to continue it, or choose another out_dir")

    steps_per_epoch = len(train_loader)
    writer = SummaryWriter(out_dir / "tensorboard", purge_step=start_epoch * steps_per_epoch)
    print(f"{config.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M parameters, "
          f"{len(train_set)} train / {len(val_set)} validation samples, device {device}, "
          f"precision {amp_dtype or torch.float32}")

    for epoch in range(start_epoch, config.train.epochs):
        model.train()
        sampler.set_epoch(epoch)
        progress = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.train.epochs}", leave=False, dynamic_ncols=True)
        started = time.perf_counter()
        for step, batch in enumerate(progress, start=epoch * steps_per_epoch):
            inputs = model_inputs(batch, device)
            gt = batch["gt"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                output = model(*inputs)
            loss, parts = criterion(output.float(), gt, inputs[0])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

            loss_value = loss.item()
            writer.add_scalar("train/loss", loss_value, step)
            for name, value in parts.items():
                writer.add_scalar(f"train/loss_{name}", value.item(), step)
            progress.set_postfix(loss=f"{loss_value:.4f}")
        writer.add_scalar("train/lr", scheduler.get_last_lr()[0], epoch + 1)
        writer.add_scalar("train/images_per_second", steps_per_epoch * config.train.batch_size / (time.perf_counter() - started), epoch + 1)
        scheduler.step()

        finished = epoch + 1
        is_last = finished == config.train.epochs
        if finished % config.train.eval_every and not is_last:
            continue
        records = list(evaluate(model, val_loader, device, amp_dtype))
        metrics = summarize(records)
        for name in ("psnr", "ssim"):
            writer.add_scalar(f"val/{name}", metrics[name], finished)
        for i, record in enumerate(records[:config.log_images]):
            writer.add_images(f"val/{i}_hazy_output_gt", torch.stack([record["hazy"], record["output"], record["gt"]]), finished)
        is_best = metrics["psnr"] > best_psnr
        best_psnr = max(best_psnr, metrics["psnr"])
        history.append({"epoch": finished, **metrics, "best": is_best})
        (out_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        writer.flush()  # logs on disk always cover what the checkpoint covers
        tqdm.write(f"epoch {finished}: validation PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} "
                   f"(hazy input {metrics['hazy_psnr']:.2f} dB){'  [best]' if is_best else ''}")

        checkpoint = {"model_name": config.model, "model_args": model_args, "model": model.state_dict(), "config": config.to_dict(),
                      "epoch": finished, "metrics": metrics, "best_psnr": best_psnr, "history": history,
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "scaler": scaler.state_dict(), "rng": rng_state()}
        if is_best:
            save_checkpoint(out_dir / "best.pt", checkpoint)
        save_checkpoint(out_dir / "last.pt", checkpoint)
    writer.close()
    return history


def main(argv=None) -> None:
    args = parse_args(argv)
    train(load_config(args.config, args.overrides), resume=args.resume)


if __name__ == "__main__":
    main()
