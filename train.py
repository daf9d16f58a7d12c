"""Train a dehazing network.

    python train.py configs/reside6k/mixcl-s.yaml                              # the released RESIDE-6K recipe
    python train.py configs/reside6k/mixcl-s.yaml data.root=/data/RESIDE-6K train.micro_batch_size=8
    python train.py configs/reside6k/mixcl-s.yaml --resume                     # continue from <out_dir>/last.pt
    python train.py configs/reside6k/mixcl-s.yaml --resume train.lr=5e-5       # ... with a lower learning rate
    torchrun --standalone --nproc_per_node=4 --max-restarts=3 train.py configs/reside6k/mixcl-s.yaml  # train.sh

Writes to the config's out_dir: last.pt and best.pt (atomically), history.jsonl (one line per validation)
and TensorBoard logs under tensorboard/. The run owns its out_dir while it lasts: a second run into it stops at
once. Under torchrun only rank 0 writes and prints, and workers torchrun restarts after a failure (--max-restarts)
continue their job's last.pt by themselves. A resumed run may change train.lr, train.epochs and
train.max_skipped_steps; the rest of the config must be the checkpoint's.
"""
from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from pathlib import Path

from tqdm import tqdm

from utils.cli import run_reporting_user_errors, script_parser
from utils.config import Config, load_config
from utils.paths import OutputFolder


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("config", type=Path, help="YAML config (configs/<experiment>/<model>.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=2e-4 data.root=/data")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    return parser.parse_args(argv)


def train(config: Config, resume: bool = False) -> list[dict]:
    """Run (or resume) training; return the validation history, one dict per evaluation."""
    # PyTorch and the project load here rather than at the top, so that `train.py --help` answers at once
    import engine
    from losses import build_loss
    from utils.cpu_memory import keep_freed_memory

    # Set-up. Everything that can be wrong is found before the first step: the config, the output folder (this
    # run's alone), the loss's ImageNet weights, every data file; then the network and its optimisation.
    engine.check_config(config)
    out_dir = Path(config.out_dir)
    process = engine.start_process(config.train.seed)
    with OutputFolder(out_dir, "out_dir") if process.is_main else contextlib.nullcontext():
        resume = resume or restarted(process, out_dir)
        check_resumable(out_dir, resume)
        if process.device.type == "cpu" and config.train.keep_freed_cpu_memory:
            keep_freed_memory()  # process-wide: glibc keeps freed memory for the next step (utils/cpu_memory.py)
        criterion = build_loss(config.loss).to(process.device)
        data = engine.prepare_data(config, process)
        run = engine.build_run(config, criterion, data.model_args, process, data.steps_per_epoch)
        if resume and (changed := engine.restore_run(run, out_dir / "last.pt")):
            print("resuming with " + ", ".join(f"{key} = {getattr(config.train, key.split('.')[1])}" for key in changed))
        log = engine.TrainingLog(out_dir, run, data)
        log.started()

        for epoch in range(run.epoch, config.train.epochs):
            run.model.train()
            started, first_step = time.perf_counter(), run.step
            batches = tqdm(data.batches(epoch, run.step), initial=run.step, total=data.steps_per_epoch, leave=False,
                           desc=f"epoch {epoch + 1}/{config.train.epochs}", dynamic_ncols=True, disable=not process.is_main)
            for micro_batches in batches:
                losses = engine.train_step(run, micro_batches)
                log.step(epoch * data.steps_per_epoch + run.step, losses)
                run.step += 1
                batches.set_postfix(loss=f"{losses[0]:.4f}")
                if validation_due_within_epoch(run, data.steps_per_epoch):
                    validate_and_save(run, data, log, out_dir)  # within a long epoch: resumable from this step
                    run.model.train()
            run.scheduler.step()
            run.epoch, run.step = epoch + 1, 0
            log.epoch((data.steps_per_epoch - first_step) * config.train.batch_size / (time.perf_counter() - started))
            if run.epoch % config.train.eval_every == 0 or run.epoch == config.train.epochs:
                validate_and_save(run, data, log, out_dir)
        log.close()
    engine.finish_process(process)
    if process.is_main:
        report_where_the_results_are(run.history, config)
    return run.history


def validation_due_within_epoch(run, steps_per_epoch: int) -> bool:
    """train.eval_every_steps: every so many steps, but not at an epoch's end (the epoch's own validation)."""
    every = run.config.train.eval_every_steps
    return every > 0 and run.step % every == 0 and run.step < steps_per_epoch


def validate_and_save(run, data, log, out_dir: Path) -> None:
    """Rank 0 validates and writes best.pt / last.pt while the other processes wait."""
    import engine

    if run.process.is_main:
        metrics, records = engine.validate(run, data.val_loader)
        log.validation(metrics, records)
        engine.save_checkpoints(run, out_dir)
    run.process.barrier()


def restarted(process, out_dir: Path) -> bool:
    """Whether this is a worker torchrun restarted after a failure, whose job goes on from its own last.pt."""
    import engine

    if not engine.restarted_after_checkpoint(process, out_dir / "last.pt"):
        return False
    if process.is_main:
        print(f"torchrun restart {process.restarts}: continuing from {out_dir / 'last.pt'}")
    return True


def check_resumable(out_dir: Path, resume: bool) -> None:
    if resume != (out_dir / "last.pt").exists():
        raise (FileNotFoundError(f"{out_dir / 'last.pt'} does not exist: nothing to resume") if resume else
               FileExistsError(f"{out_dir / 'last.pt'} exists: pass --resume to continue it, or choose another out_dir"))


def interrupted(args: argparse.Namespace, out_dir: Path) -> str:
    """One line for Ctrl-C: what the run kept, and the command that continues this very run (its config and every
    override it was started with, quoted for a shell)."""
    from utils.checkpoint import load_checkpoint

    if not (out_dir / "last.pt").is_file():
        return f"interrupted before the first checkpoint: nothing of this run was kept in {out_dir}"
    checkpoint = load_checkpoint(out_dir / "last.pt")
    step = f", step {checkpoint['step']} of epoch {checkpoint['epoch'] + 1}" if checkpoint.get("step") else ""
    command = shlex.join(["python", "train.py", str(args.config), *args.overrides, "--resume"])
    return f"interrupted: {out_dir / 'last.pt'} holds epoch {checkpoint['epoch']}{step}; continue with: {command}"


def report_where_the_results_are(history: list[dict], config: Config) -> None:
    best = max((h for h in history if h["best"]), key=lambda h: h["epoch"])
    score = f"{best.get('ema_psnr', best['psnr']):.2f} dB"
    out_dir, data = Path(config.out_dir), config.data
    test_data = "synthetic" if data.dataset == "synthetic" else Path(data.root) / data.test_split
    print(f"best.pt: epoch {best['epoch']}, validation PSNR {score} → {out_dir / 'best.pt'}\nNext:\n"
          f"  python test.py --checkpoint {out_dir / 'best.pt'} --data {test_data}\n"
          f"  python predict.py --checkpoint {out_dir / 'best.pt'} <your photos>\n"
          f"  tensorboard --logdir {out_dir / 'tensorboard'}")


def main(argv=None) -> None:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    try:
        train(config, resume=args.resume)
    except KeyboardInterrupt:
        print(interrupted(args, Path(config.out_dir)), file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    run_reporting_user_errors(main)
