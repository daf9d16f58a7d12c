"""Reporting results: comparing two methods (scripts/compare_results.py), summarising runs (scripts/summarize_runs.py),
counting model cost (scripts/model_cost.py)."""
import csv
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from metrics.statistics import paired_difference
from models import build_model
from models.cost import model_cost
from utils.config import ConfigError

from .conftest import load_script


def write_per_image(path, names, psnr, ssim, domains):
    """A per_image.csv as test.py writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["name", "domain", "psnr", "ssim", "hazy_psnr", "hazy_ssim"])
        writer.writeheader()
        for row in zip(names, domains, psnr, ssim):
            writer.writerow(dict(zip(("name", "domain", "psnr", "ssim"), row)) | {"hazy_psnr": 12.0, "hazy_ssim": 0.6})
    return path


@pytest.fixture
def planted(tmp_path):
    """A: 300 images (150 indoor, 150 outdoor). B: +0.30 dB and +0.004 SSIM on indoor images, nothing on outdoor,
    plus per-image noise (σ 0.2 dB, 0.002)."""
    rng = np.random.default_rng(7)
    names = [f"{i:04d}.png" for i in range(300)]
    domains = ["indoor" if i < 150 else "outdoor" for i in range(300)]
    indoor = np.array([d == "indoor" for d in domains])
    psnr_a, ssim_a = rng.normal(30, 3, 300), rng.uniform(0.90, 0.99, 300)
    psnr_b = psnr_a + 0.30 * indoor + rng.normal(0, 0.2, 300)
    ssim_b = ssim_a + 0.004 * indoor + rng.normal(0, 0.002, 300)
    a = write_per_image(tmp_path / "a" / "per_image.csv", names, psnr_a, ssim_a, domains)
    b = write_per_image(tmp_path / "b" / "per_image.csv", names, psnr_b, ssim_b, domains)
    return a, b


def test_a_planted_difference_is_recovered_inside_its_interval(planted, tmp_path, capsys):
    a, b = planted
    rows = load_script("compare_results").main([str(a), str(b), "--json", str(tmp_path / "table.json")])
    table = {(r["metric"], r["subset"]): r for r in rows}
    # planted: overall +0.15 dB (half the images), indoor +0.30, outdoor 0
    for (metric, subset), planted_difference in {("psnr", "all"): 0.15, ("psnr", "indoor"): 0.30, ("psnr", "outdoor"): 0.0,
                                                  ("ssim", "indoor"): 0.004, ("ssim", "outdoor"): 0.0}.items():
        row = table[metric, subset]
        assert row["ci_low"] < planted_difference < row["ci_high"], (metric, subset, row)
    assert table["psnr", "indoor"]["significant"] and table["psnr", "indoor"]["p_value"] < 1e-10
    assert table["ssim", "indoor"]["significant"]
    assert not table["psnr", "outdoor"]["significant"] and not table["ssim", "outdoor"]["significant"]
    assert table["psnr", "indoor"]["images"] == 150
    assert json.loads((tmp_path / "table.json").read_text()) == rows
    printed = capsys.readouterr().out
    assert "PSNR indoor" in printed and "significant" in printed.split("PSNR indoor")[1].splitlines()[0]


def test_identical_results_show_no_difference(planted):
    a, _ = planted
    for row in load_script("compare_results").main([str(a), str(a)]):
        assert (row["difference"], row["ci_low"], row["ci_high"], row["p_value"]) == (0.0, 0.0, 0.0, 1.0)
        assert not row["significant"]


def test_interval_and_p_value_match_scipy_on_known_differences():
    # differences 1..10: mean 5.5; the exact two-sided Wilcoxon p for 10 positive ranks is 2/2^10
    result = paired_difference(np.zeros(10), np.arange(1.0, 11.0))
    assert result.difference == 5.5 and result.p_value == pytest.approx(2 / 2 ** 10)
    assert 3.5 < result.ci_low < 5.5 < result.ci_high < 7.5


def test_files_of_different_images_are_refused(planted, tmp_path):
    a, _ = planted
    other = write_per_image(tmp_path / "c.csv", ["x.png", "y.png"], [30, 31], [0.9, 0.9], ["indoor", "indoor"])
    with pytest.raises(ConfigError, match="score different images: 300 only in A"):
        load_script("compare_results").main([str(a), str(other)])


def test_runs_are_summarised_as_mean_and_standard_deviation(tmp_path, capsys):
    paths = []
    for seed, (psnr, indoor) in enumerate([(30.0, 31.0), (30.4, 31.6), (30.2, 31.2)]):
        summary = {"images": 10, "psnr": psnr, "ssim": 0.95, "by_domain": {"indoor": {"images": 5, "psnr": indoor, "ssim": 0.96}}}
        paths.append(tmp_path / f"seed{seed}.json")
        paths[-1].write_text(json.dumps(summary))
    table = load_script("summarize_runs").main([str(p) for p in paths])
    assert table["all"]["psnr"] == pytest.approx((30.2, 0.2))  # sample std of 30.0, 30.4, 30.2
    assert table["indoor"]["psnr"] == pytest.approx((31.266667, 0.305505), abs=1e-6)
    assert table["all"]["ssim"] == pytest.approx((0.95, 0.0), abs=1e-12)  # three equal values: no spread
    assert "all        PSNR 30.20 ± 0.20 dB" in capsys.readouterr().out


@pytest.mark.parametrize("size", [(64, 80), (256, 256)])
def test_model_cost_counts_every_convolution(size):
    """scripts/model_cost.py against an independent count: a forward hook on every convolution adds
    out_channels · in_channels/groups · kh · kw MACs per output pixel. At 256×256 this is the README's 14.56G."""
    counted = []

    def hook(module, inputs, output):
        counted.append(output.shape[-2] * output.shape[-1] * module.out_channels * module.weight[0].numel())
    model = build_model("mixdehazenet-t").eval()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, *size))
    assert model_cost("mixdehazenet-t", size) == (sum(p.numel() for p in model.parameters()), sum(counted))
    if size == (256, 256):
        assert f"{sum(counted) / 1e9:.2f}G" == "14.56G"
