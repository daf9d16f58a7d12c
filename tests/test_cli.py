"""What every script shares: the model list of --help, --help before PyTorch loads, output names, torch.hub."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import list_models, load_model
from utils.cli import UserError, model_names, output_paths, run_name
from utils.precision import autocast_dtype

from .conftest import write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["train.py", "test.py", "predict.py", "evaluate_real.py",
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
