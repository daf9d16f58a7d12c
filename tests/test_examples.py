"""The example notebook, the ONNX export and the training-curve plot, run end to end."""
import base64
import io
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from inference import dehaze
from models import load_model
from utils.pictures import CAPTION_HEIGHT, GAP

from .conftest import LABELS_PRIOR, load_script, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_example_notebook_executes(real_hazy, tmp_path, monkeypatch):
    photo = tmp_path / "photo.png"
    Image.open(real_hazy / "canyon.png").convert("RGB").resize((200, 150)).save(photo)
    checkpoint = write_checkpoint(tmp_path / "mixcl-t.pt", "mixcl-t", {"num_labels": 2}, LABELS_PRIOR)  # no CLIP weights needed
    monkeypatch.setenv("MIXCL_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("MIXCL_PHOTO", str(photo))
    notebook = nbformat.read(ROOT / "examples" / "dehaze_a_photo.ipynb", as_version=4)
    elsewhere = tmp_path / "elsewhere"  # not the repository: the notebook must not depend on where it runs
    elsewhere.mkdir()
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(elsewhere)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert "mixcl-t: " in text and "dehazed 200×150" in text
    # the comparison displayed by the last cell: the photo, then what `dehaze` makes of it in this process
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(outputs[-1]["data"]["image/png"]))).convert("RGB"))
    hazy = np.asarray(Image.open(photo).convert("RGB"))
    clear = dehaze(load_model(tmp_path / "mixcl-t.pt"), hazy, label="outdoor")
    assert picture.shape == (150 + CAPTION_HEIGHT, 2 * 200 + GAP, 3)
    assert np.array_equal(picture[:150, :200], hazy)
    difference = np.abs(picture[:150, 200 + GAP:].astype(int) - clear).max()
    # measured 0 (AVX-512 and AVX2): the kernel and this process agree; the photo itself is 15 levels away on average
    assert difference <= 1, difference






def test_training_curves_plot_what_the_run_logged(tmp_path):
    plot_training = load_script("plot_training")
    history = [{"epoch": e, "psnr": 15.0 + e, "ssim": 0.5 + e / 100, "hazy_psnr": 14.0, "hazy_ssim": 0.4,
                "best": e != 2} for e in (1, 2, 3)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    with SummaryWriter(tmp_path / "tensorboard") as writer:
        for step in range(40):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    figure = plot_training.plot_training(tmp_path)
    loss_axes, psnr_axes, _ = figure.axes
    steps, losses = loss_axes.lines[0].get_data()
    assert np.array_equal(steps, np.arange(40)) and np.allclose(losses, 1.0 / np.arange(1, 41))
    epochs, psnrs = psnr_axes.lines[0].get_data()
    assert list(epochs) == [1, 2, 3] and list(psnrs) == [16.0, 17.0, 18.0]
    assert psnr_axes.lines[1].get_ydata()[0] == 14.0        # the hazy input's line
    assert list(psnr_axes.lines[2].get_data()) == [3, 18.0]  # best.pt: the last best epoch
    out = plot_training.main([str(tmp_path)])
    assert out == tmp_path / "curves.png" and Image.open(out).size == (1800, 480)
    with pytest.raises(SystemExit, match="history.jsonl: no such file"):
        plot_training.main([str(tmp_path / "nothing")])


def test_moving_average():
    plot_training = load_script("plot_training")
    assert np.allclose(plot_training.moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
