"""scripts/prepare_data.py: each benchmark's original layout, made by these tests in miniature (the file and folder
names of the real archives), turned into pairs; the refusals; re-runs; the published counts."""
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets import validate_paired_folder
from datasets.prepare import LAYOUTS, PrepareError, counts_verdict, prepare, report_path
from utils.image import read_image

from .conftest import REPO, load_script

SIZE = (72, 68)  # width, height: above the 64-pixel crops the end-to-end runs train with


def write(path: Path, size=SIZE, seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


# Each benchmark's archive in miniature, as its download unpacks (the top folder's name varies and does not matter):
# the pairs it makes, {split: {pair name: (hazy file, clear file)}}, and files it does not use.
def _pairs(split, pairs):
    return {split: {name: (hazy, clear) for name, hazy, clear in pairs}}


MINIATURES = {
    "ITS": (_pairs("train", [("1_1_0.90179.png", "ITS_v2/hazy/1_1_0.90179.png", "ITS_v2/clear/1.png"),
                             ("1_10_0.98796.png", "ITS_v2/hazy/1_10_0.98796.png", "ITS_v2/clear/1.png"),
                             ("2_1_0.99082.png", "ITS_v2/hazy/2_1_0.99082.png", "ITS_v2/clear/2.png")]),
            ["ITS_v2/trans/1_1.png", "ITS_v2/trans/2_1.png"]),
    "OTS": (_pairs("train", [(f"{scene}_{haze}.jpg", f"OTS_ALPHA/haze/OTS/{scene}_{haze}.jpg",
                              f"OTS_ALPHA/clear/clear_images/{scene}.jpg")
                             for scene, haze in (("0005", "0.8_0.04"), ("0005", "1_0.2"), ("0008", "0.85_0.1"))]),
            []),
    "SOTS-indoor": (_pairs("test", [("1400_1.png", "SOTS/indoor/hazy/1400_1.png", "SOTS/indoor/gt/1400.png"),
                                    ("1400_10.png", "SOTS/indoor/hazy/1400_10.png", "SOTS/indoor/gt/1400.png")]),
                    ["SOTS/outdoor/gt/0001.png", "SOTS/outdoor/hazy/0001_0.8_0.2.jpg"]),
    "SOTS-outdoor": (_pairs("test", [("0001_0.8_0.2.jpg", "SOTS/outdoor/hazy/0001_0.8_0.2.jpg", "SOTS/outdoor/gt/0001.png"),
                                     ("0051_0.9_0.16.jpg", "SOTS/outdoor/hazy/0051_0.9_0.16.jpg", "SOTS/outdoor/gt/0051.png"),
                                     ("0051_1_0.08.jpg", "SOTS/outdoor/hazy/0051_1_0.08.jpg", "SOTS/outdoor/gt/0051.png")]),
                     ["SOTS/indoor/gt/1400.png", "SOTS/indoor/hazy/1400_1.png"]),
    "RESIDE-6K": (_pairs("train", [(n, f"RESIDE-6K/train/hazy/{n}", f"RESIDE-6K/train/GT/{n}")
                                   for n in ("1_1.png", "0005_0.8_0.04.jpg")])
                  | _pairs("test", [("0001_0.8_0.2.jpg", "RESIDE-6K/test/hazy/0001_0.8_0.2.jpg",
                                    "RESIDE-6K/test/GT/0001_0.8_0.2.jpg")]),
                  []),
    "Haze4K": (_pairs("train", [("1_0.68_0.66.png", "Haze4K/train/haze/1_0.68_0.66.png", "Haze4K/train/gt/1.png"),
                                ("2_0.59_1.95.png", "Haze4K/train/haze/2_0.59_1.95.png", "Haze4K/train/gt/2.png")])
               | _pairs("test", [("1_0.89_1.56.png", "Haze4K/test/haze/1_0.89_1.56.png", "Haze4K/test/gt/1.png")]),
               ["Haze4K/train/trans/1.png"]),
    "Dense-Haze": (_pairs("train", [(f"{i}.png", f"Dense_Haze_NTIRE19/hazy/{i}_hazy.png", f"Dense_Haze_NTIRE19/GT/{i}_GT.png")
                                    for i in ("01", "02")])
                   | _pairs("test", [("51.png", "Dense_Haze_NTIRE19/hazy/51_hazy.png", "Dense_Haze_NTIRE19/GT/51_GT.png")]),
                   []),
    "NH-HAZE": (_pairs("train", [(f"{i}.png", f"NH-HAZE/{i}_hazy.png", f"NH-HAZE/{i}_GT.png") for i in ("01", "02")])
                | _pairs("test", [("55.png", "NH-HAZE/55_hazy.png", "NH-HAZE/55_GT.png")]),
                []),
    "O-HAZE": (_pairs("train", [("01.jpg", "O-HAZE/# O-HAZY NTIRE 2018/hazy/01_outdoor_hazy.jpg",
                                 "O-HAZE/# O-HAZY NTIRE 2018/GT/01_outdoor_GT.jpg")])
               | _pairs("test", [("45.jpg", "O-HAZE/# O-HAZY NTIRE 2018/hazy/45_outdoor_hazy.jpg",
                                  "O-HAZE/# O-HAZY NTIRE 2018/GT/45_outdoor_GT.jpg")]),
               []),
    "I-HAZE": (_pairs("train", [("01.jpg", "I-HAZE/# I-HAZY NTIRE 2018/hazy/01_indoor_hazy.jpg",
                                 "I-HAZE/# I-HAZY NTIRE 2018/GT/01_indoor_GT.jpg")])
               | _pairs("test", [("31.jpg", "I-HAZE/# I-HAZY NTIRE 2018/hazy/31_indoor_hazy.jpg",
                                  "I-HAZE/# I-HAZY NTIRE 2018/GT/31_indoor_GT.jpg")]),
               []),
}


def miniature(root: Path, benchmark: str, size=SIZE) -> Path:
    pairs, other = MINIATURES[benchmark]
    files = sorted({f for split in pairs.values() for hazy_clear in split.values() for f in hazy_clear} | set(other))
    for i, name in enumerate(files):
        write(root / name, size, seed=i)
    return root


def test_the_script_knows_every_layout():
    assert set(load_script("prepare_data").BENCHMARKS) == set(LAYOUTS) and len(LAYOUTS) == 10
    assert set(MINIATURES) == set(LAYOUTS)


@pytest.mark.parametrize("benchmark", sorted(MINIATURES))
def test_each_original_layout_makes_one_pair_per_hazy_image(tmp_path, benchmark):
    source = miniature(tmp_path / "download", benchmark)
    out = tmp_path / "data"
    plan, new = prepare(benchmark, source, out, crop=64)
    expected = MINIATURES[benchmark][0]
    assert {s: sorted(p.name for p in plan.pairs if p.split == s) for s in expected} == {
        s: sorted(names) for s, names in expected.items()}
    assert plan.left_out == [] and new == 2 * sum(map(len, expected.values()))
    for split, pairs in expected.items():
        assert validate_paired_folder(out / split) == sorted(pairs)
        for name, (hazy, clear) in pairs.items():
            assert os.path.samefile(out / split / "hazy" / name, source / hazy), name
            assert os.path.samefile(out / split / "GT" / name, source / clear), name
            assert os.stat(out / split / "GT" / name).st_nlink > 1  # a hard link, not a copy


def test_the_several_hazy_images_of_one_clear_image_share_its_file(tmp_path):
    source = miniature(tmp_path / "download", "ITS")
    prepare("ITS", source, tmp_path / "data", crop=64)
    gt = tmp_path / "data" / "train" / "GT"
    assert os.path.samefile(gt / "1_1_0.90179.png", gt / "1_10_0.98796.png")
    assert not os.path.samefile(gt / "1_1_0.90179.png", gt / "2_1_0.99082.png")


def test_what_cannot_be_paired_is_left_out_and_listed_with_its_reason(tmp_path):
    root = tmp_path / "ITS"
    for i, name in enumerate(["clear/1.png", "clear/4.png", "hazy/1_1_0.9.png", "hazy/3_1_0.9.png"]):
        write(root / name, seed=i)
    write(root / "clear/5.png", (64, 60))
    write(root / "hazy/5_1_0.8.png", (64, 60))
    write(root / "clear/6.png", SIZE)
    write(root / "hazy/6_1_0.8.png", (71, 68))
    plan, _ = prepare("ITS", root, tmp_path / "data", crop=64)
    assert [p.name for p in plan.pairs] == ["1_1_0.9.png"]
    assert plan.left_out == [
        f"{root}/hazy/3_1_0.9.png: no clear image of scene 3 in the train split",
        f"{root}/clear/4.png: a clear image without hazy images",
        f"{root}/hazy/5_1_0.8.png: 64×60 is smaller than the 64×64 training crop",
        f"{root}/hazy/6_1_0.8.png: 71×68, its clear image {root}/clear/6.png 72×68"]
    text = report_path("ITS", tmp_path / "data").read_text()
    assert all(line in text for line in plan.left_out) and "4 images left out" in text
    assert "  4 train hazy images, NOT a published count (RESIDE-Standard ITS 13,990 train)\n" in text


def test_a_clear_image_with_a_border_is_cropped_to_its_hazy_images(tmp_path):
    """Some SOTS-indoor downloads store the clear images at 640×480 and the hazy ones at 620×460: the clear image is
    cut by 10 pixels on every side (as FFA-Net's loader does), written once as a PNG."""
    root = tmp_path / "SOTS"
    clear = write(root / "indoor/gt/1400.png", (52, 42))
    for k in (1, 2):
        write(root / f"indoor/hazy/1400_{k}.png", (32, 22), seed=k)
    prepare("SOTS-indoor", root, tmp_path / "data", crop=None)
    gt = tmp_path / "data" / "test" / "GT"
    assert np.array_equal(read_image(gt / "1400_1.png"), read_image(clear)[10:32, 10:42])
    assert os.path.samefile(gt / "1400_1.png", gt / "1400_2.png")
    assert validate_paired_folder(tmp_path / "data" / "test") == ["1400_1.png", "1400_2.png"]


def test_a_second_run_changes_nothing(tmp_path):
    source, out = miniature(tmp_path / "download", "Dense-Haze"), tmp_path / "data"
    prepare("Dense-Haze", source, out, crop=64)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")}
    plan, new = prepare("Dense-Haze", source, out, crop=64)
    assert new == 0 and plan.left_out == []
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")} == before


def test_an_entry_that_is_another_file_is_kept_and_listed(tmp_path):
    source, out = miniature(tmp_path / "download", "NH-HAZE"), tmp_path / "data"
    mine = write(out / "train" / "GT" / "01.png", seed=99)
    mine_bytes = mine.read_bytes()
    plan, _ = prepare("NH-HAZE", source, out, crop=64)
    assert mine.read_bytes() == mine_bytes
    assert plan.left_out == [f"{mine} exists and is another file than {source}/NH-HAZE/01_GT.png: left as it is"]


def test_already_packaged_folders_are_checked_in_place(tmp_path):
    """DehazeFormer's packaging, the releases' advice, is accepted as it is: with SOURCE = OUT nothing is written."""
    root = miniature(tmp_path, "RESIDE-6K") / "RESIDE-6K"
    write(root / "train" / "hazy" / "2_1.png")
    plan, new = prepare("RESIDE-6K", root, root, crop=64)
    assert new == 0 and len(plan.pairs) == 3
    assert plan.left_out == [f"{root}/train/hazy/2_1.png: no clear image {root}/train/GT/2_1.png"]
    with pytest.raises(PrepareError, match="RESIDE-6K comes only as DehazeFormer's packaging"):
        prepare("RESIDE-6K", tmp_path / "RESIDE-6K" / "train", tmp_path / "out", crop=64)


def test_across_file_systems_the_pairs_are_symbolic_links(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    source = Path(os.environ.get("TMPDIR_SHM", shm)) / f"prepare-test-{os.getpid()}"
    try:
        miniature(source, "I-HAZE")
        prepare("I-HAZE", source, tmp_path / "data", crop=64)
        entry = tmp_path / "data" / "test" / "GT" / "31.jpg"
        assert entry.is_symlink() and os.path.samefile(entry, source / "I-HAZE/# I-HAZY NTIRE 2018/GT/31_indoor_GT.jpg")
    finally:
        subprocess.run(["rm", "-rf", str(source)], check=True)


def full_tree(root: Path, clear: list[str], hazy: list[str]) -> Path:
    """Thousands of entries cheaply: every clear image and every hazy image is a hard link to one small file."""
    clear_file, hazy_file = write(root / ".clear.png", (8, 8)), write(root / ".hazy.png", (8, 8), seed=1)
    hazy_file = hazy_file.rename(hazy_file.with_suffix(".jpg")) if hazy[0].endswith(".jpg") else hazy_file
    for names, file in ((clear, clear_file), (hazy, hazy_file)):
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(file, root / name)
    return root


def published_trees() -> dict:
    """Archives of each benchmark's published size, by its naming rule: (clear images, hazy images)."""
    return {
        "ITS": ([f"clear/{i}.png" for i in range(1, 1400)],
                [f"hazy/{i}_{k}_0.9.png" for i in range(1, 1400) for k in range(1, 11)]),
        "SOTS-indoor": ([f"indoor/gt/{i}.png" for i in range(1400, 1450)],
                        [f"indoor/hazy/{i}_{k}.png" for i in range(1400, 1450) for k in range(1, 11)]),
        "Haze4K": ([f"{s}/gt/{i}.png" for s, n in (("train", 3000), ("test", 1000)) for i in range(1, n + 1)],
                   [f"{s}/haze/{i}_0.8_1.2.png" for s, n in (("train", 3000), ("test", 1000)) for i in range(1, n + 1)]),
        "Dense-Haze": ([f"GT/{i:02d}_GT.png" for i in range(1, 56)], [f"hazy/{i:02d}_hazy.png" for i in range(1, 56)]),
        "NH-HAZE": ([f"{i:02d}_GT.png" for i in range(1, 56)], [f"{i:02d}_hazy.png" for i in range(1, 56)]),
        "O-HAZE": ([f"GT/{i:02d}_outdoor_GT.jpg" for i in range(1, 46)],
                   [f"hazy/{i:02d}_outdoor_hazy.jpg" for i in range(1, 46)]),
        "I-HAZE": ([f"GT/{i:02d}_indoor_GT.jpg" for i in range(1, 36)],
                   [f"hazy/{i:02d}_indoor_hazy.jpg" for i in range(1, 36)]),
    }


@pytest.mark.parametrize("benchmark", sorted(published_trees()))
def test_an_archive_of_the_published_size_is_recognised_as_such(tmp_path, benchmark):
    clear, hazy = published_trees()[benchmark]
    plan, _ = prepare(benchmark, full_tree(tmp_path / "download", clear, hazy), tmp_path / "data", crop=None)
    assert len(plan.pairs) == len(hazy) and plan.left_out == []
    (version,) = LAYOUTS[benchmark].published
    assert counts_verdict(LAYOUTS[benchmark], plan.found).endswith(f"the published count of {version}")


def test_sots_outdoor_has_500_hazy_images_of_492_clear_ones(tmp_path):
    """Eight SOTS-outdoor scenes have two hazy versions: 500 pairs from 492 clear images."""
    scenes = [f"{i:04d}" for i in range(1, 493)]
    hazy = [f"outdoor/hazy/{s}_0.8_0.2.jpg" for s in scenes] + [f"outdoor/hazy/{s}_1_0.08.jpg" for s in scenes[:8]]
    root = tmp_path / "SOTS"
    clear_file, hazy_file = write(root / ".c.png", (8, 8)), write(root / ".h.jpg", (8, 8), seed=1)
    for names, file in (([f"outdoor/gt/{s}.png" for s in scenes], clear_file), (hazy, hazy_file)):
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(file, root / name)
    plan, _ = prepare("SOTS-outdoor", root, tmp_path / "data", crop=None)
    assert len(plan.pairs) == 500 and len(plan.clear_images) == 492 and plan.left_out == []
    report = report_path("SOTS-outdoor", tmp_path / "data").read_text()
    assert "500 test hazy images: the published count of RESIDE SOTS outdoor" in report


def test_the_two_ots_versions_are_told_apart_by_their_counts():
    ots = LAYOUTS["OTS"]
    assert counts_verdict(ots, Counter(train=313950)).endswith("the published count of RESIDE-Standard OTS (v0)")
    assert counts_verdict(ots, Counter(train=72135)).endswith("the published count of RESIDE-β OTS")
    other = counts_verdict(ots, Counter(train=296695))
    assert "NOT a published count (RESIDE-Standard OTS (v0) 313,950 train; RESIDE-β OTS 72,135 train)" in other
    assert "leaves out the OTS images smaller than its 256-pixel crop" in other
    o_haze, i_haze = LAYOUTS["O-HAZE"], LAYOUTS["I-HAZE"]
    assert counts_verdict(o_haze, Counter(train=40, test=5)).endswith("NTIRE 2018 O-HAZE")
    assert counts_verdict(i_haze, Counter(train=30, test=5)).endswith("NTIRE 2018 I-HAZE")


def test_the_command_line(tmp_path):
    source = miniature(tmp_path / "download", "Haze4K")
    command = [sys.executable, str(REPO / "scripts" / "prepare_data.py"), "Haze4K", str(source), str(tmp_path / "data"),
               "--crop", "64"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "train: 2 pairs" in done.stdout and "test: 1 pairs" in done.stdout
    assert "6 new links or files, 0 there already; the whole report: " in done.stdout
    bad = subprocess.run(command[:3] + [str(tmp_path / "nowhere"), str(tmp_path / "data")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such folder"
