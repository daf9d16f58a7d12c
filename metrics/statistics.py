"""Comparing methods honestly: paired differences over the same test images with a bootstrap confidence
interval and a Wilcoxon signed-rank test, and several runs (seeds) of one method as mean ± std.

Papers in this field report single runs separated by 0.1 dB; whether such a gap is more than the spread between
images (or between seeds) is what these numbers say.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PairedDifference:
    images: int
    mean_a: float
    mean_b: float
    difference: float   # mean of b − a over the images
    ci_low: float       # bootstrap confidence interval of that mean (BCa)
    ci_high: float
    p_value: float      # Wilcoxon signed-rank test of the per-image differences (1.0 when all are zero)

    @property
    def significant(self) -> bool:
        """The interval excludes 0 and p < 0.05 (the interval's confidence level is the caller's choice)."""
        return self.p_value < 0.05 and not self.ci_low <= 0.0 <= self.ci_high


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, resamples: int = 9999,
                      seed: int = 0) -> PairedDifference:
    """b − a over paired per-image scores (same images, same order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two equally long lists of at least 2 paired scores, got {a.shape} and {b.shape}")
    d = b - a
    if np.all(d == d[0]):  # no spread: the bootstrap has nothing to resample
        low = high = float(d[0])
    else:
        interval = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=resamples, method="BCa",
                                   rng=np.random.default_rng(seed)).confidence_interval
        low, high = float(interval.low), float(interval.high)
    p_value = 1.0 if np.all(d == 0) else float(stats.wilcoxon(d).pvalue)
    return PairedDifference(len(d), float(a.mean()), float(b.mean()), float(d.mean()), low, high, p_value)


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single run)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
