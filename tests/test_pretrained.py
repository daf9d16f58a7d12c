"""Model folders for the Hugging Face Hub: exported from any checkpoint, loaded from a folder or a repository id by
every script, the official networks reproduced through them, the model card telling the run's scores."""
import json
import re
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

import predict
import test as test_script
import train
from inference import dehaze
from models import build_model, from_pretrained, load_model
from utils.checkpoint import CheckpointError
from utils.cli import run_reporting_user_errors
from utils.image import read_image

from .conftest import LABELS_PRIOR, load_script, tiny_config, write_checkpoint
from .test_datasets import make_pairs

export_pretrained = load_script("export_pretrained")


def export(*argv) -> Path:
    return export_pretrained.main([str(a) for a in argv])


@pytest.mark.parametrize(("vector", "model"), [("mixdehazenet_t_official.pt", "mixdehazenet-t"), ("mixcl_t_seed.pt", "mixcl-t")])
def test_a_released_network_exported_and_loaded_elsewhere_reproduces_its_output(vector, model, vectors_dir, tmp_path,
                                                                                monkeypatch):
    folder = export("--checkpoint", vectors_dir / vector, "--model", model, tmp_path / "exported" / model)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]  # nothing else
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nothing is read relative to the repository or the export's working folder
    net = from_pretrained(Path("..") / "exported" / model)
    reference = torch.load(vectors_dir / vector, weights_only=True)
    inputs = (reference["input"],) + ((reference["text"],) if reference.get("text") is not None else ())
    with torch.no_grad():
        output = net(*inputs)
    assert not net.training and (output - reference["output"]).abs().max().item() <= 1e-5
    config = json.loads((folder / "config.json").read_text())
    assert config["model_name"] == model and ("prior" in config["model_args"]) == (model == "mixcl-t")


def demo_run_and_its_test(tmp_path: Path) -> Path:
    """What `bash train.sh` makes, at toy size: a MixCL run on synthetic haze, then test.py beside it."""
    config = tiny_config(tmp_path / "run", "mixcl-t", prior=LABELS_PRIOR)
    train.train(config)
    test_script.main(["--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", "synthetic",
                      "--out", str(tmp_path / "run" / "test"), "--no-images"])
    return tmp_path / "run" / "best.pt"


def card_rows(card: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for line in card.splitlines() if line.startswith("| ") and not line.startswith("| images")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}


def test_a_demo_run_exports_with_its_scores_and_predicts_the_same_images(tmp_path):
    best = demo_run_and_its_test(tmp_path)
    folder = export("--checkpoint", best, tmp_path / "mixcl-t-demo")
    summary = json.loads((tmp_path / "run" / "test" / "summary.json").read_text())
    rows = card_rows((folder / "README.md").read_text())
    for subset, scores in [("all", summary), *summary["by_domain"].items()]:
        assert rows[subset] == [str(scores["images"]), f"{scores['psnr']:.2f}", f"{scores['ssim']:.4f}",
                                f"{scores['hazy_psnr']:.2f}", f"{scores['hazy_ssim']:.4f}"], subset
    assert "- 1 epochs, batch 4, AdamW lr 0.001" in (folder / "README.md").read_text()  # the recipe, from the config
    assert "- language prior: labels" in (folder / "README.md").read_text()
    last = export("--checkpoint", tmp_path / "run" / "last.pt", tmp_path / "mixcl-t-last")  # test.py scored best.pt
    assert "No test results were exported with it." in (last / "README.md").read_text()

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)).save(photos / "p.png")
    written = {}
    for name, checkpoint in (("pt", best), ("folder", folder)):
        (written[name],) = predict.main([str(photos), "--checkpoint", str(checkpoint), "--label", "outdoor",
                                         "--out", str(tmp_path / name)])
    assert np.array_equal(read_image(written["pt"]), read_image(written["folder"]))


def test_push_uploads_that_very_folder_in_one_call(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo, **kwargs: calls.append(("create_repo", repo, kwargs)))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **kwargs: calls.append(("upload_folder", kwargs)))
    folder = export("--checkpoint", write_checkpoint(tmp_path / "net.pt"), tmp_path / "out", "--push", "someone/dehazer")
    uploads = [c for c in calls if c[0] == "upload_folder"]
    assert len(uploads) == 1 and uploads[0][1]["repo_id"] == "someone/dehazer" and uploads[0][1]["folder_path"] == folder
    assert sorted(uploads[0][1]["allow_patterns"]) == ["README.md", "config.json", "model.safetensors"]
    assert calls[0] == ("create_repo", "someone/dehazer", {"exist_ok": True})
    assert 'from_pretrained("someone/dehazer")' in (folder / "README.md").read_text()  # the card says how to load it
    calls.clear()
    export("--checkpoint", folder, folder, "--push", "someone/dehazer")  # an exported folder, pushed again as it is
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"] and calls[1][1]["folder_path"] == folder
    with pytest.raises(SystemExit, match=r"--push 'dehazer': a Hugging Face repository id is ORG/NAME"):
        run_reporting_user_errors(export_pretrained.main, ["--checkpoint", str(tmp_path / "net.pt"), str(tmp_path / "x"),
                                                           "--push", "dehazer"])
    assert not (tmp_path / "x").exists()


def test_a_hub_repository_in_the_cache_loads_offline_and_an_uncached_one_fails_at_once(tmp_path, monkeypatch):
    folder = export("--checkpoint", write_checkpoint(tmp_path / "net.pt"), tmp_path / "out")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name, **kwargs: str(folder / name) if repo == "someone/dehazer" else None)
    net = load_model("someone/dehazer")  # huggingface_hub's cache answers; the hub is unreachable in the tests
    expected = load_model(tmp_path / "net.pt").state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())
    with pytest.raises(CheckpointError, match=r"^someone/other: neither a file nor a folder here, and as a Hugging Face "
                                              r"repository it is not in the cache and the hub cannot be reached$"):
        load_model("someone/other")


def bad_folder(tmp_path: Path, damage) -> Path:
    folder = export("--checkpoint", write_checkpoint(tmp_path / "net.pt"), tmp_path / "folder")
    damage(folder)
    return folder


def non_finite_weights(folder: Path) -> None:
    weights = safetensors.torch.load_file(str(folder / "model.safetensors"))
    weights["stem.weight"][0, 0, 0, 0] = float("nan")
    safetensors.torch.save_file(weights, str(folder / "model.safetensors"))


BAD_FOLDERS = {
    "no config.json": (lambda f: (f / "config.json").unlink(), r"folder is a folder without config.json"),
    "an unknown model": (lambda f: (f / "config.json").write_text((f / "config.json").read_text().replace(
        '"mixdehazenet-t"', '"dehazeformer-b"')),
        r"folder/config.json names no model this project knows \(model_name 'dehazeformer-b'"),
    "weights of another network": (lambda f: safetensors.torch.save_file(build_model("ka-net-tiny").state_dict(),
                                                                         str(f / "model.safetensors")),
                                   r"folder/model.safetensors does not hold 'mixdehazenet-t' weights"),
    "non-finite weights": (non_finite_weights, r"folder/model.safetensors holds non-finite weights"),
    "damaged weights": (lambda f: (f / "model.safetensors").write_bytes(b"garbage"),
                        r"folder/model.safetensors: cannot be read as safetensors weights"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_a_bad_model_folder_is_named_in_one_line_before_any_work(case, tmp_path):
    damage, expected = BAD_FOLDERS[case]
    folder = bad_folder(tmp_path, damage)
    with pytest.raises(SystemExit) as stop:
        run_reporting_user_errors(test_script.main, ["--checkpoint", str(folder), "--data", str(make_pairs(tmp_path / "t", 1)),
                                                     "--out", str(tmp_path / "results")])
    message = stop.value.code
    assert message.startswith("error: ") and "\n" not in message and re.search(expected, message), message
    assert not (tmp_path / "results").exists()  # nothing done, nothing left behind


def test_an_export_never_overwrites_a_model_folder(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "net.pt")
    folder = export("--checkpoint", checkpoint, tmp_path / "out")
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds config.json, model.safetensors, README.md"):
        export("--checkpoint", write_checkpoint(tmp_path / "other.pt"), folder)
    assert (folder / "model.safetensors").read_bytes() == before


def test_a_clip_prior_network_with_recorded_class_features_takes_a_given_class_without_clip(tmp_path):
    features = torch.nn.functional.normalize(torch.randn(2, 512), dim=-1)
    prior = {"mode": "clip", "clip_pretrained": str(tmp_path / "absent.bin"), "text_features": features.tolist()}
    net = build_model("mixcl-t", prior=prior).eval()
    folder = export("--checkpoint", write_checkpoint(tmp_path / "net.pt", "mixcl-t", net=net, model_args={"prior": prior}),
                    tmp_path / "out")
    loaded = from_pretrained(folder)
    photo = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(photo.transpose(2, 0, 1).copy())[None] / 255 * 2 - 1
    with torch.no_grad():
        expected = (net(x, features[1:2]).clamp(-1, 1)[0] * 0.5 + 0.5).permute(1, 2, 0).numpy()
    output = dehaze(loaded, photo, label="outdoor", amp="off")  # CLIP's weights are absent: the recorded features serve
    assert np.abs(output.astype(float) / 255 - expected).max() <= 0.5 / 255 + 1e-5
    shutil.rmtree(folder)
