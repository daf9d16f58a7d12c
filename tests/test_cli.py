"""What every script shares: the model list of --help, --help before PyTorch loads, output names, torch.hub."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import list_models, load_model
from utils.cli import UserError, model_names, output_paths, run_name, run_reporting_user_errors
from utils.precision import autocast_dtype

from .conftest import load_script, tiny_config, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["train.py", "test.py", "predict.py", "evaluate_real.py", "app.py",
           *sorted(f"scripts/{p.name}" for p in (ROOT / "scripts").glob("*.py"))]


def test_the_model_list_of_help_is_the_registry():
    assert list(model_names()) == list_models()  # read from the @register_model constructors without PyTorch


HELP_WITHOUT_TORCH = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_answer_help_before_importing_pytorch(script):
    """--help must answer at once (BENCHMARKS.md: under a second), so it must not load PyTorch (about 2 s)."""
    result = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH, script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and result.stdout.rstrip().endswith("torch imported: False")
    if script in ("test.py", "predict.py", "evaluate_real.py"):  # the same model and inference flags everywhere
        assert "mixcl-s" in result.stdout and "--device" in result.stdout and "--tile" in result.stdout


def test_outputs_never_overwrite_inputs_or_each_other(tmp_path):
    photos = [tmp_path / "x.jpg", tmp_path / "x.png", tmp_path / "y.png"]
    out = tmp_path / "out"
    expected = {photos[0]: out / "x.jpg.png", photos[1]: out / "x.png.png", photos[2]: out / "y.png"}
    assert output_paths(photos, out, ".png") == expected
    same_names = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "b" / "c" / "x.jpg"]  # their folders tell
    assert output_paths(same_names, out, ".png") == {same_names[0]: out / "a-x.jpg.png", same_names[1]: out / "b-x.jpg.png",
                                                    same_names[2]: out / "c-x.jpg.png"}
    with pytest.raises(UserError, match=r"would overwrite input files: .*y.png \(from .*y.png\)"):
        output_paths(photos, tmp_path, ".png")  # --out is the photos' own folder


def test_outputs_are_named_after_the_run(tmp_path):
    assert run_name(Path("runs/demo/mixcl-t/best.pt")) == "mixcl-t"
    assert run_name(Path("runs/demo/mixcl-t/last.pt")) == "mixcl-t-last"
    assert run_name(Path("weights/MixDehazeNet-s.pth")) == "MixDehazeNet-s"


def test_torch_hub_loads_a_checkpoint_from_another_folder(tmp_path):
    write_checkpoint(tmp_path / "net.pt")
    x = torch.rand(1, 3, 40, 44) * 2 - 1
    torch.save(x, tmp_path / "x.pt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (f"import torch; repo = {str(ROOT)!r}; "
            f"net = torch.hub.load(repo, 'mixdehazenet_t', source='local', checkpoint={str(tmp_path / 'net.pt')!r}); "
            f"print(type(torch.hub.load(repo, 'ka_net_tiny', source='local')).__name__); "
            f"torch.save(net(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})")
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "KANet"
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt"), load_model(tmp_path / "net.pt")(x))


@pytest.mark.parametrize(("amp", "device", "dtype"), [
    ("off", "cuda", None), ("off", "cpu", None), ("fp16", "cuda", torch.float16), ("fp16", "cpu", None),
    ("bf16", "cuda", torch.bfloat16), ("bf16", "cpu", torch.bfloat16), ("auto", "cuda", None)])
def test_one_amp_rule_for_every_device(amp, device, dtype):
    """The one table training, inference, the flags and the benchmarks use: the CPU has no fast fp16, so fp16
    runs fp32 there; auto is fp32 on CUDA (on the CPU it asks the CPU: tests/test_precision.py)."""
    assert autocast_dtype(amp, device) is dtype


def test_an_unknown_amp_name_is_refused():
    with pytest.raises(ValueError, match="amp must be one of auto, off, fp16, bf16"):
        autocast_dtype("fp8", "cuda")


# --- numeric options: zero, negative, NaN and absurd values refused in one line naming the option ----------------------

def _synthesize_haze(argv):
    synthesize = load_script("synthesize_haze")
    return synthesize.main(synthesize.parse_args(argv))


def _main(module: str):
    """The main(argv) of a script: top-level, scripts/ or benchmarks/."""
    if module.startswith("benchmarks."):
        return importlib.import_module(module).main
    return load_script(module).main if (ROOT / "scripts" / f"{module}.py").exists() else importlib.import_module(module).main


PHOTO_ARGS, ONNX_ARGS = ["photos/", "--checkpoint", "net.pt"], ["--checkpoint", "net.pt", "--out", "m.onnx"]
OPTIONS = [  # (script's main, arguments before the option, option, refused values)
    ("evaluate_real", PHOTO_ARGS, "--max-side", ["0", "-5", "nan", "1e3", "100000"]),
    ("predict", PHOTO_ARGS, "--max-whole-pixels", ["0", "-1", "nan", "10000000000"]),
    ("predict", PHOTO_ARGS, "--tile", ["0", "-512", "nan", "100000"]),
    ("test", ["--checkpoint", "net.pt", "--data", "synthetic"], "--overlap", ["-1", "nan", "100000"]),
    ("evaluate_real", PHOTO_ARGS, "--overlap", ["-64", "inf"]),
    (_synthesize_haze, ["--clean", "c", "--out", "o"], "--variants", ["0", "-2", "nan", "1000000"]),
    (_synthesize_haze, ["--clean", "c", "--out", "o"], "--seed", ["-1", "nan", "1.5"]),
    ("export_onnx", ONNX_ARGS, "--check-size", ["0x10", "-5x10", "nanxnan", "100000x10", "230"]),
    ("export_onnx", ONNX_ARGS, "--tolerance", ["0", "-1e-4", "nan", "inf", "5"]),
    ("compare_results", ["a.csv", "b.csv"], "--confidence", ["0", "1", "-0.5", "nan", "95"]),
    ("model_cost", [], "--size", ["0", "-256", "nan", "100000"], ["256"]),
    ("benchmarks.benchmark_data", ["data/"], "--crop", ["0", "-256", "nan", "100000"]),
    ("benchmarks.benchmark_data", ["data/"], "--rounds", ["0", "-1", "nan", "1000000"]),
    ("benchmarks.benchmark_depthwise", [], "--batch", ["0", "-4", "nan", "1000000"]),
    ("benchmarks.benchmark_inference", [], "--sizes", ["0x256", "-1x5", "nanx1", "100000x100000"]),
    ("benchmarks.benchmark_models", [], "--train-batch", ["0", "-1", "nan", "1000000"]),
    ("benchmarks.benchmark_no_reference", [], "--megapixels", ["0", "-1", "nan", "inf", "1e6"]),
    ("benchmarks.benchmark_tiling", ["photos/", "--checkpoint", "net.pt"], "--overlap", ["-1", "nan", "1000000"]),
    ("benchmarks.benchmark_training", [], "--warmup", ["0", "-1", "nan", "1000000"]),
    ("benchmarks.prepare_predict_benchmark", ["out/"], "--size", ["0x3000", "-4000x3000", "nanx1", "100000x100000"]),
    ("benchmarks.benchmark_large_test_images", ["--random-model", "mixdehazenet-t", "--data", "d/"], "--size",
     ["0x1200", "-1600x1200", "nanx1", "100000x100000"]),
    ("prepare_data", ["ITS", "source/", "out/"], "--crop", ["-1", "nan", "1.5", "100000"]),
]


@pytest.mark.parametrize("case", OPTIONS, ids=lambda case: f"{case[0] if isinstance(case[0], str) else 'synthesize_haze'} "
                                                           f"{case[2]}")
def test_every_script_refuses_a_meaningless_number_naming_the_option(case):
    main, before, option, values, *after = case
    main = _main(main) if isinstance(main, str) else main
    for value in values:  # --option=-5x10 as a shell passes it: alone, argparse would take -5x10 for an option
        given = [option, value, *after[0]] if after else [f"{option}={value}"]
        with pytest.raises(SystemExit) as stop:
            run_reporting_user_errors(main, [*before, *given])
        message = stop.value.code
        assert isinstance(message, str) and "\n" not in message, (option, value, message)
        assert message.startswith(f"error: argument {option}: ") and value in message, (option, value, message)


@pytest.mark.parametrize(("script", "override", "expected"), [
    ("train", "data.crop_size=0", "data.crop_size must lie in [1, 65536], got 0"),
    ("train", "data.crop_size=100000", "data.crop_size must lie in [1, 65536], got 100000"),
    ("train", "train.lr=nan", "train.lr: expected a finite number, got 'nan'"),
    ("compute_clip_prior", "train.epochs=-5", "train.epochs, batch_size and eval_every must be positive")])
def test_config_overrides_are_refused_naming_the_key(script, override, expected, tmp_path):
    (tmp_path / "config.yaml").write_text(json.dumps(tiny_config(tmp_path / "run").to_dict()))
    with pytest.raises(SystemExit) as stop:
        run_reporting_user_errors(_main(script), [str(tmp_path / "config.yaml"), override])
    assert stop.value.code == f"error: {tmp_path / 'config.yaml'}: {expected}"
    assert not (tmp_path / "run").exists()


def test_an_overlap_of_half_a_tile_or_more_is_refused_before_any_photo(tmp_path):
    message = None
    with pytest.raises(SystemExit) as stop:
        run_reporting_user_errors(_main("predict"), [str(tmp_path), "--checkpoint", str(write_checkpoint(tmp_path / "n.pt")),
                                                      "--tile", "256", "--overlap", "128", "--out", str(tmp_path / "out")])
    message = stop.value.code
    assert message == "error: --overlap 128 must be less than half the tile (256 pixels)"
