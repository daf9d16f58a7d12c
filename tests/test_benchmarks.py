"""The benchmark scripts' code paths, run at toy sizes on the CPU so that they cannot rot (their figures mean nothing here)."""
import pytest
import torch

from benchmarks import benchmark_no_reference, gpu_suite
from benchmarks.benchmark_models import measure_in_fresh_process
from benchmarks.benchmark_training import step_batch
from models import build_model

torch_compile = torch.compile


def test_gpu_suite_smoke_runs_every_path_and_the_paths_agree(capsys):
    results = gpu_suite.main(["--smoke"])
    sizes = gpu_suite.suite_sizes(smoke=True)
    # The first loss of the plain fp32 step, recomputed here: the L1 loss of the seed-0 network (train mode, as
    # the step runs it) on the fixed batch.
    torch.manual_seed(0)
    model = build_model(sizes["train_model"]).train()
    batch = step_batch(model, sizes["train_batch"], sizes["train_size"])
    with torch.no_grad():
        expected = (model(batch["hazy"], batch["prior"]) - batch["gt"]).abs().mean().item()
    losses = {key: r["first_loss"] for key, r in results["training"].items()}
    assert len(losses) == 12 and losses["off", "eager"] == pytest.approx(expected, rel=1e-6)
    # fp16 runs fp32 on the CPU: every non-bf16 row computes the same loss up to the order of float32 sums
    assert all(abs(v - expected) <= 1e-5 * expected for (amp, _), v in losses.items() if amp != "bf16")
    assert all(abs(v - expected) <= 1e-2 * expected for (amp, _), v in losses.items() if amp == "bf16")
    # inference against amp off in the default format: the fp32 rows (off, and fp16 on the CPU) are the same
    # computation, bf16 is rounded
    for (name, _, amp, channels_last), r in results["inference"].items():
        if amp != "bf16" and not channels_last:
            assert r["difference"] == 0, (name, amp)
        assert r["difference"] <= {"off": 1e-5, "fp16": 1e-5, "bf16": 5e-2}[amp], (name, amp, channels_last, r)
    assert len(results["inference"]) == 4 * 3 * 2
    assert results["largest"] == {"off": 128, "fp16": 128}  # the top of the smoke search range
    ddp = results["ddp"]
    assert ddp["ddp"] and ddp["first_loss"] == pytest.approx(ddp["plain"]["first_loss"], rel=1e-6)
    assert ddp["plain"]["first_loss"] == pytest.approx(expected, rel=1e-6)
    assert "| bf16 | compile + channels-last |" in capsys.readouterr().out
    assert torch.compile is torch_compile  # the smoke run's graph-capture-only compile did not outlive it


def test_largest_side_search_finds_the_boundary():
    assert gpu_suite.largest_side(lambda side: side <= 1000, 256, 16384) == 960
    assert gpu_suite.largest_side(lambda side: side * side <= 4096**2, 256, 16384) == 4096
    assert gpu_suite.largest_side(lambda side: True, 256, 1000) == 960
    assert gpu_suite.largest_side(lambda side: False, 256, 1024) == 0



def _fails(message):
    raise ValueError(message)



def test_a_failing_measurement_process_is_reported_not_waited_on():
    with pytest.raises(RuntimeError, match=r"(?s)_fails\('no GPU here',\) failed:.*ValueError: no GPU here"):
        measure_in_fresh_process(_fails, "no GPU here")


def test_no_reference_benchmark_times_every_measure(capsys):
    seconds = benchmark_no_reference.main(["--megapixels", "0.05", "--rounds", "1"])
    assert set(seconds) == {"fade", "piqe", "entropy", "niqe", "brisque", "all five"}
    assert "| FADE |" in capsys.readouterr().out
