"""The six settings the releases train on, end to end on this machine: an original download in miniature →
scripts/prepare_data.py → train.py with the released config (2 epochs, small crops; the L1 loss alone, but for one
run through train.sh with the whole released loss and random ResNet-152 weights) → test.py on the test split."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

import test as test_script
import train
from datasets.prepare import prepare
from utils.config import load_config
from utils.image import read_image

from .conftest import REPO
from .test_prepare_data import write


def archive(root, benchmark):
    """A download of `benchmark` in its original layout with a few scenes, images of 72×68."""
    files = {
        "ITS": [f"ITS_v2/{kind}" for i in range(1, 5)
                for kind in (f"clear/{i}.png", f"hazy/{i}_1_0.9.png", f"hazy/{i}_2_0.8.png")],
        "SOTS-indoor": [f"SOTS/indoor/{kind}" for i in (1400, 1401)
                        for kind in (f"gt/{i}.png", f"hazy/{i}_1.png", f"hazy/{i}_2.png")],
        "OTS": [f"OTS/{kind}" for i in range(1, 5) for kind in (f"clear/{i:04d}.jpg", f"haze/{i:04d}_0.8_0.04.jpg")],
        "SOTS-outdoor": [f"SOTS/outdoor/{kind}" for i in (1, 2) for kind in (f"gt/{i:04d}.png", f"hazy/{i:04d}_0.8_0.2.jpg")],
        "RESIDE-6K": [f"RESIDE-6K/{split}/{kind}/{i}.png" for split, n in (("train", 4), ("test", 2)) for i in range(n)
                      for kind in ("GT", "hazy")],
        "Haze4K": [f"Haze4K/{split}/{kind}" for split, n in (("train", 4), ("test", 2)) for i in range(1, n + 1)
                   for kind in (f"gt/{i}.png", f"haze/{i}_0.8_1.2.png")],
        "Dense-Haze": [f"Dense_Haze/{kind}" for i in (1, 51) for kind in (f"GT/{i:02d}_GT.png", f"hazy/{i:02d}_hazy.png")],
        "NH-HAZE": [f"NH-HAZE/{kind}" for i in (1, 2, 3, 4, 51, 52) for kind in (f"{i:02d}_GT.png", f"{i:02d}_hazy.png")],
    }[benchmark]
    for i, name in enumerate(files):
        write(root / name, seed=i)
    return root


# setting → (config, the downloads it is prepared from, overrides beside the 2 epochs and the output folder)
SETTINGS = {
    "indoor": ("configs/indoor/mixdehazenet-t.yaml", ("ITS", "SOTS-indoor"), ["data.crop_size=64", "train.batch_size=2"]),
    "outdoor": ("configs/outdoor/mixdehazenet-t.yaml", ("OTS", "SOTS-outdoor"),
                ["data.crop_size=64", "train.batch_size=2", "train.eval_every_steps=1"]),
    "reside6k": ("configs/reside6k/mixdehazenet-t.yaml", ("RESIDE-6K",), ["data.crop_size=64", "train.batch_size=2"]),
    "haze4k": ("configs/haze4k/mixdehazenet-t.yaml", ("Haze4K",), ["data.crop_size=64", "train.batch_size=2"]),
    # a crop that is no multiple of 4, as the released 350-pixel one
    "densehaze": ("configs/densehaze/mixdehazenet-s.yaml", ("Dense-Haze",), ["data.crop_size=66", "train.batch_size=1"]),
    "nhhaze": ("configs/nhhaze/mixdehazenet-s.yaml", ("NH-HAZE",), ["data.crop_size=64", "train.batch_size=2"]),
}


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """ImageNet ResNet-152 weights cannot be downloaded here: random ones where torchvision keeps its downloads."""
    home = tmp_path_factory.mktemp("torch")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet152().state_dict(), home / "hub" / "checkpoints" / "resnet152-394f9c45.pth")
    return home


def prepared(tmp_path, setting):
    data = tmp_path / "data"
    for benchmark in SETTINGS[setting][1]:
        prepare(benchmark, archive(tmp_path / benchmark, benchmark), data, crop=None)
    return data


def psnr_of_hazy_images(test_split) -> float:
    """The hazy inputs' PSNR against their clear images, computed here from the files (the protocol's formula)."""
    values = []
    for name in sorted(os.listdir(test_split / "GT")):
        hazy, clear = read_image(test_split / "hazy" / name), read_image(test_split / "GT" / name)
        values.append(10 * np.log10(1 / np.mean((hazy.astype(np.float64) - clear) ** 2)))
    return float(np.mean(values))


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s != "indoor"])
def test_each_setting_prepares_trains_and_tests(tmp_path, setting):
    config, _, overrides = SETTINGS[setting]
    data, run = prepared(tmp_path, setting), tmp_path / "run"
    history = train.train(load_config(config, [f"data.root={data}", f"out_dir={run}", "train.epochs=2", "loss=[{name: l1}]",
                                               "train.compile=false", "data.num_workers=0", *overrides]))
    assert history[-1]["epoch"] == 2 and (run / "best.pt").is_file()
    summary = test_script.main(["--checkpoint", str(run / "best.pt"), "--data", str(data / "test"), "--out",
                                str(tmp_path / "test"), "--no-images"])
    assert summary["images"] == len(os.listdir(data / "test" / "GT"))
    assert summary["hazy_psnr"] == pytest.approx(psnr_of_hazy_images(data / "test"), abs=1e-4)


def test_train_sh_runs_the_indoor_recipe_on_a_prepared_download(tmp_path, torch_home):
    """As a user would: bash train.sh CONFIG data.root=..., then test.py, in fresh processes."""
    data, run = prepared(tmp_path, "indoor"), tmp_path / "run"
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    command = ["bash", str(REPO / "train.sh"), "configs/indoor/mixdehazenet-t.yaml", f"data.root={data}",
               f"out_dir={run}", "train.epochs=2", "train.compile=false", "data.num_workers=0", *SETTINGS["indoor"][2]]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"python test.py --checkpoint {run / 'best.pt'} --data {data / 'test'}" in done.stdout
    tested = subprocess.run([sys.executable, "test.py", "--checkpoint", str(run / "best.pt"), "--data", str(data / "test"),
                             "--out", str(tmp_path / "test")], capture_output=True, text=True, cwd=REPO, env=env)
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert "(4 images, precision fp32)" in tested.stdout
