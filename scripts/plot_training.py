"""Plot a run's training curves: training loss (TensorBoard logs), validation PSNR and SSIM (history.jsonl).

    python scripts/plot_training.py runs/reside6k/mixcl-s            # writes runs/reside6k/mixcl-s/curves.png
    python scripts/plot_training.py runs/demo/mixcl-t --out curves.svg
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on a headless GPU box
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from utils.cli import script_parser
from utils.paths import unreadable_file


def read_history(run: Path) -> list[dict]:
    path = run / "history.jsonl"
    if problem := unreadable_file(path):
        raise FileNotFoundError(f"{path}: {problem}: is {run} a training run directory (the config's out_dir)?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_losses(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of train/loss; empty when the run has no TensorBoard logs."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    if "train/loss" not in events.Tags()["scalars"]:
        return np.array([]), np.array([])
    scalars = events.Scalars("train/loss")
    return np.array([s.step for s in scalars]), np.array([s.value for s in scalars])


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (shorter at the start), for a readable loss curve."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(len(values)) + 1 - counts]) / counts


def plot_training(run: Path) -> plt.Figure:
    history = read_history(run)
    steps, losses = read_losses(run)
    epochs = [h["epoch"] for h in history]
    figure, (loss_axes, psnr_axes, ssim_axes) = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)

    if len(losses):
        loss_axes.plot(steps, losses, color="0.75", linewidth=0.8, label="per step")
        loss_axes.plot(steps, moving_average(losses, max(1, len(losses) // 50)), color="C0", label="moving average")
        loss_axes.set_yscale("log")
        loss_axes.legend()
    loss_axes.set(title="training loss", xlabel="step")

    for axes, metric, unit in ((psnr_axes, "psnr", " (dB)"), (ssim_axes, "ssim", "")):
        axes.plot(epochs, [h[metric] for h in history], "o-", color="C1", label="output")
        if all(f"ema_{metric}" in h for h in history):
            axes.plot(epochs, [h[f"ema_{metric}"] for h in history], "s--", color="C2", label="EMA weights")
        axes.axhline(history[0][f"hazy_{metric}"], color="0.5", linestyle=":", label="hazy input")
        best = [h for h in history if h.get("best")]
        if best:  # best.pt holds the EMA weights when the run kept them
            key = f"ema_{metric}" if f"ema_{metric}" in best[-1] else metric
            axes.plot(best[-1]["epoch"], best[-1][key], "*", color="C3", markersize=14, label="best.pt")
        axes.set(title=f"validation {metric.upper()}", xlabel="epoch", ylabel=metric.upper() + unit)
        axes.legend()
    figure.suptitle(str(run))
    return figure


def main(argv=None) -> Path:
    parser = script_parser(__doc__)
    parser.add_argument("run", type=Path, help="a training run directory (the config's out_dir)")
    parser.add_argument("--out", type=Path, help="image file to write (default: <run>/curves.png)")
    args = parser.parse_args(argv)
    out = args.out or args.run / "curves.png"
    try:
        figure = plot_training(args.run)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    figure.savefig(out, dpi=120)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
