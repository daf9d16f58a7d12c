"""Scoring a network on paired data: the protocol loop shared by validation (train.py) and test.py."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from metrics import psnr, ssim
from utils.image import to_unit_range


def model_inputs(batch: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(hazy,) for plain backbones, (hazy, prior) when the data carries a language prior (MixCL)."""
    keys = ("hazy", "prior") if "prior" in batch else ("hazy",)
    return tuple(batch[k].to(device, non_blocking=True) for k in keys)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp_dtype: torch.dtype | None = None,
             forward: Callable[..., torch.Tensor] | None = None) -> Iterator[dict]:
    """Yield one record per image: name, psnr, ssim, hazy_psnr, hazy_ssim, the [0, 1] images, and the
    image's `domain` when the data carries one. `forward(hazy, *prior)` replaces the plain call of `model`
    under autocast (test.py passes a Dehazer's, which can tile)."""
    model.eval()
    for batch in loader:
        inputs = model_inputs(batch, device)
        if forward is not None:
            output = to_unit_range(forward(*inputs))
        else:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                output = to_unit_range(model(*inputs).float())
        hazy, gt = to_unit_range(inputs[0]), to_unit_range(batch["gt"].to(device))
        scores = {"psnr": psnr(output, gt), "ssim": ssim(output, gt), "hazy_psnr": psnr(hazy, gt), "hazy_ssim": ssim(hazy, gt)}
        for i, name in enumerate(batch["name"]):
            domain = {"domain": batch["domain"][i]} if "domain" in batch else {}
            yield {"name": name, **domain, **{k: v[i].item() for k, v in scores.items()},
                   "hazy": hazy[i], "output": output[i], "gt": gt[i]}


def summarize(records: list[dict]) -> dict[str, float]:
    """Mean of each score over images (the protocol averages per image)."""
    keys = ("psnr", "ssim", "hazy_psnr", "hazy_ssim")
    return {k: sum(r[k] for r in records) / len(records) for k in keys} | {"images": len(records)}


def summarize_by_domain(records: list[dict]) -> dict[str, dict[str, float]]:
    """`summarize` over the records of each domain, domains in sorted order (empty when none is known)."""
    domains = sorted({r["domain"] for r in records if "domain" in r})
    return {d: summarize([r for r in records if r.get("domain") == d]) for d in domains}
