"""Model folders for the Hugging Face Hub: exported from any checkpoint, loaded from a folder or a repository id by
every script, the official networks reproduced through them, the model card telling the run's scores."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from torch.nn.modules.module import register_module_parameter_registration_hook

import predict
import test as test_script
import train
from inference import dehaze
from models import build_model, from_pretrained, load_model
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.cli import run_reporting_user_errors
from utils.image import read_image
from utils.paths import LOCK_FILE

from .conftest import LABELS_PRIOR, REPO, load_script, tiny_config, write_checkpoint
from .local_hub import LocalHub
from .test_datasets import make_pairs

export_pretrained = load_script("export_pretrained")
ROOT = REPO


def export(*argv) -> Path:
    return export_pretrained.main([str(a) for a in argv])


@pytest.mark.parametrize(("vector", "model"), [("mixdehazenet_t_official.pt", "mixdehazenet-t"), ("mixcl_t_seed.pt", "mixcl-t")])
def test_a_released_network_exported_and_loaded_elsewhere_reproduces_its_output(vector, model, vectors_dir, tmp_path,
                                                                                monkeypatch):
    folder = export("--checkpoint", vectors_dir / vector, "--model", model, tmp_path / "exported" / model)
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE, "README.md", "config.json", "model.safetensors"]
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


def test_push_refuses_a_repository_id_that_is_not_org_slash_name_before_exporting(tmp_path):
    with pytest.raises(SystemExit, match=r"--push 'dehazer': a Hugging Face repository id is ORG/NAME"):
        run_reporting_user_errors(export_pretrained.main, ["--checkpoint", str(write_checkpoint(tmp_path / "net.pt")),
                                                           str(tmp_path / "x"), "--push", "dehazer"])
    assert not (tmp_path / "x").exists()


# --- the Hugging Face hub, for real: huggingface_hub against a server on 127.0.0.1 (tests/local_hub.py) ----------------

HUB_CLIENT = """
import json, os, sys, torch
from utils.cli import run_reporting_user_errors
from tests.conftest import load_script
from models import load_model
export = load_script("export_pretrained").main
answers = []
for kind, argv, token in json.loads(sys.argv[1]):
    os.environ.pop("HF_TOKEN", None)
    os.environ.update({"HF_TOKEN": token} if token else {})
    try:
        if kind == "push":
            run_reporting_user_errors(export, argv)
        else:
            net = run_reporting_user_errors(load_model, argv[0])
            if argv[1:]:
                torch.save(net.state_dict(), argv[1])
        answers.append("done")
    except SystemExit as stop:
        answers.append(stop.code)
print(json.dumps(answers))
"""


def hub_client(endpoint: str, home: Path, requests: list) -> list[str]:
    """What each request answers (\"done\", or the one-line error its script ends with), made in one process whose
    huggingface_hub talks to `endpoint` (HF_ENDPOINT) with its cache and login in `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {
        "HF_ENDPOINT": endpoint, "HF_HOME": str(home), "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, "-c", HUB_CLIENT, json.dumps(requests)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


HUB_FAILURES = [  # (what, repository, logged in, the cause the one line names)
    ("push", "org/status-401", True, "refused (401: the hub does not accept this machine's token"),
    ("push", "org/status-401", False, "not logged in (log in with `hf auth login`, or set HF_TOKEN)"),
    ("push", "org/status-403", True, "refused (403: this account has no access to it)"),
    ("push", "org/status-404", True, "missing (404: no such repository"),
    ("push", "org/status-500", True, "server error (500): the hub failed to answer; try again later"),
    ("fetch", "org/status-401", True, "refused (401: the hub does not accept this machine's token"),
    ("fetch", "org/status-401", False, "not logged in (log in with `hf auth login`, or set HF_TOKEN)"),
    ("fetch", "org/status-403", True, "refused (403: this account has no access to it)"),
    ("fetch", "org/status-404", True, "missing (404: no such repository, or a private one this account cannot see)"),
    # 501: the client retries 500 and 502–504 for half a minute before it gives up, with the same message
    ("fetch", "org/status-501", True, "server error (501): the hub failed to answer; try again later"),
    ("fetch", "someone/incomplete", True, "missing (404: the repository lacks the file: not a model folder of this project)"),
]


def test_push_and_fetch_through_a_hub_and_every_failure_in_one_line(tmp_path):
    checkpoint, out = write_checkpoint(tmp_path / "net.pt"), tmp_path / "exported"
    expected = load_model(checkpoint).state_dict()
    with LocalHub() as hub:
        hub.repos["someone/incomplete"] = {"README.md": b"no weights here"}
        answers = hub_client(hub.url, tmp_path / "hf", [
            ("push", ["--checkpoint", str(checkpoint), str(out), "--push", "someone/dehazer"], "hf_token"),
            ("push", ["--checkpoint", str(out), str(out), "--push", "someone/again"], "hf_token"),  # an export, pushed again
            ("fetch", ["someone/dehazer", str(tmp_path / "fetched.pt")], None),
            *[(what, (["--checkpoint", str(out), str(out), "--push", repo] if what == "push" else [repo]),
               "hf_token" if token else None) for what, repo, token, _ in HUB_FAILURES]])
    exported = {name: (out / name).read_bytes() for name in ("README.md", "config.json", "model.safetensors")}
    assert answers[:3] == ["done"] * 3 and hub.repos["someone/dehazer"] == hub.repos["someone/again"] == exported
    assert 'from_pretrained("someone/dehazer")' in exported["README.md"].decode()  # the card says how to load it
    fetched = torch.load(tmp_path / "fetched.pt")
    assert all(torch.equal(value, expected[key]) for key, value in fetched.items()) and fetched.keys() == expected.keys()
    for (what, repo, _, cause), message in zip(HUB_FAILURES, answers[3:]):
        assert isinstance(message, str) and "\n" not in message and cause in message, (what, repo, message)
        if what == "push":
            assert message.startswith(f"error: pushing to {repo} failed: ") and message.endswith(
                f"{out} is kept: push it again with python scripts/export_pretrained.py --checkpoint {out} {out} "
                f"--push {repo}"), message
        else:
            assert message.startswith(f"error: {repo}: cannot be fetched from the Hugging Face hub: "), message
    assert {name: (out / name).read_bytes() for name in exported} == exported  # the folder is kept as it was


def test_without_a_network_a_push_keeps_its_folder_and_a_cached_repository_still_loads(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "net.pt")
    folder = export("--checkpoint", checkpoint, tmp_path / "served")
    with LocalHub() as hub:  # a repository, fetched once into the cache
        hub.repos["someone/dehazer"] = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}
        assert hub_client(hub.url, tmp_path / "hf", [("fetch", ["someone/dehazer"], None)]) == ["done"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {
        "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}  # the hub is gone now
    pushed = subprocess.run([sys.executable, "scripts/export_pretrained.py", "--checkpoint", str(checkpoint),
                             str(tmp_path / "out"), "--push", "someone/new"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert pushed.returncode == 1 and pushed.stderr.count("\n") == 1, pushed.stderr
    assert re.fullmatch(rf"error: pushing to someone/new failed: no network: {hub.url} cannot be reached \(.*\)\. "
                        rf"{tmp_path / 'out'} is kept: push it again with .*\n", pushed.stderr), pushed.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_FILE, "README.md", "config.json", "model.safetensors"]
    answers = hub_client(hub.url, tmp_path / "hf", [("fetch", ["someone/dehazer", str(tmp_path / "cached.pt")], None),
                                                   ("fetch", ["someone/other"], None)])
    assert answers == ["done", "error: someone/other: neither a file nor a folder here, and as a Hugging Face repository "
                               "it is not in the cache and the hub cannot be reached"]
    cached, expected = torch.load(tmp_path / "cached.pt"), load_model(checkpoint).state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in cached.items())


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


STRANGERS = {  # a model folder whose config.json asks for another network than its weights: (model, model_args, refusal)
    "absurd widths": ("mixdehazenet-t", {"widths": [65536] * 5},
                      r"(model.safetensors|project.pt) does not hold 'mixdehazenet-t' weights as (.*folder/config.json "
                      r"describes|its model_args describe) them \(stem.weight would be 65536×3×3×3, it holds 24×3×3×3; "
                      r"\d+ more differ\)"),
    "absurd depths": ("ka-net-tiny", {"depths": [100_000] * 4},
                      r"its model_args build a network of more tensors than the 367 the file holds"),
    "a depth no file this size holds": ("ka-net-tiny", {"depths": [10**9] * 4},
                                        r"its model_args ask for 1,000,000,000, more than the [\d,]+ numbers the file's "
                                        r"weights hold"),
    "arguments of the wrong kind": ("mixdehazenet-t", {"widths": "wide"},
                                    r"mixdehazenet-t cannot be built with its model_args \(ValueError: encoder and decoder "
                                    r"widths must mirror each other, got wide\)"),
}


@pytest.mark.parametrize("case", sorted(STRANGERS))
def test_a_strangers_folder_asking_for_another_network_is_refused_before_a_tensor_is_allocated(case, tmp_path):
    model, model_args, expected = STRANGERS[case]
    folder = export("--checkpoint", write_checkpoint(tmp_path / "net.pt", model), tmp_path / "folder")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_args": model_args}))
    allocated = []  # parameters made anywhere but on the meta device, which holds shapes alone
    hook = register_module_parameter_registration_hook(
        lambda module, name, parameter: allocated.append(name) if parameter.device.type != "meta" else None)
    try:
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(folder))}/(config.json: )?{expected}$"):
            from_pretrained(folder)
        project = tmp_path / "project.pt"  # a checkpoint of this project that says the same is refused the same way
        save_checkpoint(project, load_checkpoint(tmp_path / "net.pt") | {"model_args": model_args})
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tmp_path))}/(project.pt: )?{expected}$"):
            load_model(project)
    finally:
        hook.remove()
    assert not allocated


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
