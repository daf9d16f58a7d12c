"""The benchmark scripts' code paths, run at toy sizes on the CPU so that they cannot rot (their figures mean nothing here)."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarks import benchmark_no_reference, benchmark_recipe, gpu_suite
from benchmarks.benchmark_models import measure_in_fresh_process
from benchmarks.benchmark_training import step_batch
from losses import ContrastiveRegularization
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


@pytest.fixture(scope="module")
def recipe_smoke(tmp_path_factory) -> tuple[Path, dict]:
    """Both models, our train.py and the released one (its files kept in tests/reference)."""
    work = tmp_path_factory.mktemp("recipe")
    return work, benchmark_recipe.main(["--smoke", "--workdir", str(work)])


def test_recipe_smoke_runs_train_py_from_the_fixed_batches(recipe_smoke):
    """Our train.py ran both recipes; the loss it recorded first is the recipe's loss (L1 + 0.1 × the released
    regulariser) of the saved initial network on the first fixed batch, recomputed here."""
    work, results = recipe_smoke
    probe = torch.load(work / "probes.pt", weights_only=True)[0]
    regulariser = ContrastiveRegularization("resnet152", weights_file=benchmark_recipe.resnet152_file(work),
                                            as_released=True)
    for name in ("mixcl-s", "mixdehazenet-s"):
        (ours,) = results[name, "ours"]
        model = build_model(name).train()
        model.load_state_dict(torch.load(work / f"{name}-initial.pt", weights_only=True))
        with torch.no_grad():
            output = model(probe["hazy"], probe["text"]) if model.takes_prior else model(probe["hazy"])
            expected = F.l1_loss(output, probe["gt"]) + 0.1 * regulariser(output, probe["gt"], probe["hazy"])
        assert ours["losses"][0] == pytest.approx(expected.item(), rel=1e-5), name
        # the parts of a step are disjoint spans of it: what is left over cannot be negative
        assert set(ours["split"]) == set(benchmark_recipe.SPLIT) and min(ours["split"].values()) >= 0


def test_recipe_smoke_released_code_starts_from_our_losses(recipe_smoke):
    """The released train.py, given our initial weights and the same first batch, computes the same first loss."""
    _, results = recipe_smoke
    for name in benchmark_recipe.RECIPES:
        (ours,), (released,) = results[name, "ours"], results[name, "released"]
        # measured 3e-6 (fp32): rounding in two codes' networks, amplified by the regulariser's batch statistics
        assert released["losses"][0] == pytest.approx(ours["losses"][0], rel=1e-4), name
        assert min(released["split"].values()) >= 0
