"""The original downloads of the dehazing benchmarks, turned into the paired layout the training and test code read
(DehazeFormer's, which MixDehazeNet and MixCLDehazeNet use): `<out>/<split>/hazy/<name>` and `<out>/<split>/GT/<name>`.

Each archive names its images its own way; a `Layout` states the rule, and where it is written down in public code.
Every hazy image makes one pair, so the several hazy versions of one clear image (ITS: 10, OTS: 35) each get their
own: all their `GT/` entries are links to that one clear file. Links, not copies: hard links on the same file system,
symbolic links across file systems, so that 300,000 pairs cost no disk. A clear image that the archive stores larger
than its hazy images by an even border (e.g. 640×480 against 620×460) is centre-cropped to them, as FFA-Net's loader
does, into a PNG written once.

Nothing is dropped silently: a clear image without hazy versions, a hazy image whose clear image is missing, sizes
that do not match, and training images smaller than the crop are listed in the report and left out. Existing
entries are kept; one that is another file than the pair needs is never replaced, it is listed. So a second run over
a prepared folder changes nothing.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from utils.checkpoint import write_text_atomically
from utils.cli import UserError
from utils.image import IMAGE_EXTENSIONS, ImageError, image_size

from .paired import CLEAR_DIR, HAZY_DIR


class PrepareError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class Layout:
    """How a benchmark's archive names its images. `hazy` and `clear` match whole file names; their group `scene`
    names the clear image a hazy image shows, and a `tag` group of `hazy` is left out of the pair's name
    (`01_hazy.png` → `01.png`). Images count only inside a folder named in `hazy_folders` / `clear_folders` (any
    folder when empty, compared in lower case), below a folder named `subset` when set.

    Splits: `split_by` "fixed" puts every pair in `splits[0]`; "folder" takes the train/ or test/ folder above the
    image; "scene" puts the scene numbers in `test_scenes` in test and the others in train."""

    hazy: str | None                                     # None: distributed only in the paired layout
    clear: str | None
    source: str                                          # where the naming rule is written down
    published: dict[str, dict[str, int]]                 # version → split → hazy images
    hazy_folders: tuple[str, ...] = ()
    clear_folders: tuple[str, ...] = ()
    subset: str | None = None
    splits: tuple[str, ...] = ("train",)
    split_by: str = "fixed"
    test_scenes: range = range(0)
    crop: int | None = None                              # default --crop: the largest training crop of its recipes
    note: str = ""


CLEAR = ("gt", "clear", "clear_images")
RESIDE = "RESIDE (Li et al., IEEE TIP 2019); rule as FFA-Net reads it (zhilin007/FFA-Net, net/data_utils.py) and "
NTIRE = "the NTIRE challenge archives; rule as DeHamer reads them (Li-Chongyi/Dehamer, src/val_data.py, README.md)"

LAYOUTS: dict[str, Layout] = {
    "ITS": Layout(r"(?P<scene>\d+)_\d+_[\d.]+\.png", r"(?P<scene>\d+)\.png", RESIDE + "DEA-Net lists it "
                  "(cecret3350/DEA-Net, dataset/README.md): hazy 1_1_0.90179.png for clear 1.png",
                  {"RESIDE-Standard ITS": {"train": 13990}}, ("hazy",), CLEAR, crop=256),
    "OTS": Layout(r"(?P<scene>\d+)_[\d.]+_[\d.]+\.jpg", r"(?P<scene>\d+)\.jpg", RESIDE + "DEA-Net lists it: hazy "
                  "0005_0.8_0.04.jpg for clear 0005.jpg",
                  {"RESIDE-Standard OTS (v0)": {"train": 313950}, "RESIDE-β OTS": {"train": 72135}},
                  ("hazy", "haze"), CLEAR, crop=256,
                  note="DehazeFormer's RESIDE-OUT packaging, which the releases train on, leaves out the OTS images "
                       "smaller than its 256-pixel crop; its count is not published"),
    "SOTS-indoor": Layout(r"(?P<scene>\d+)_\d+\.png", r"(?P<scene>\d+)\.png", RESIDE + "GridDehazeNet stores it "
                          "(proteus1991/GridDehazeNet, data/test/SOTS/indoor): hazy 1400_1.png … 1400_10.png for 1400.png",
                          {"RESIDE SOTS indoor": {"test": 500}}, ("hazy",), CLEAR, subset="indoor", splits=("test",)),
    "SOTS-outdoor": Layout(r"(?P<scene>\d+)_[\d.]+_[\d.]+\.jpg", r"(?P<scene>\d+)\.png", RESIDE + "GridDehazeNet "
                           "reads it (proteus1991/GridDehazeNet, val_data.py): hazy 0001_0.8_0.2.jpg for 0001.png",
                           {"RESIDE SOTS outdoor": {"test": 500}}, ("hazy",), CLEAR, subset="outdoor", splits=("test",)),
    "Haze4K": Layout(r"(?P<scene>\d+)_[\d.]+_[\d.]+\.png", r"(?P<scene>\d+)\.png", "Haze4K (Liu et al., ACM MM "
                     "2021); rule as its authors' DMT-Net reads it (liuye123321/DMT-Net, data/new_data_train.py): hazy "
                     "haze/1_0.89_1.56.png for gt/1.png, numbered from 1 in each split",
                     {"Haze4K": {"train": 3000, "test": 1000}}, ("haze", "hazy", "in"), CLEAR,
                     splits=("train", "test"), split_by="folder", crop=400),
    "Dense-Haze": Layout(r"(?P<scene>\d+)(?P<tag>_hazy)\.png", r"(?P<scene>\d+)_GT\.png", NTIRE + ": 01_hazy.png "
                         "and 01_GT.png; images 51–55 are the test set",
                         {"NTIRE 2019 Dense-Haze": {"train": 50, "test": 5}}, splits=("train", "test"),
                         split_by="scene", test_scenes=range(51, 56), crop=500),
    "NH-HAZE": Layout(r"(?P<scene>\d+)(?P<tag>_hazy)\.png", r"(?P<scene>\d+)_GT\.png", NTIRE + ": 01_hazy.png and "
                      "01_GT.png; images 51–55 are the test set",
                      {"NTIRE 2020 NH-HAZE": {"train": 50, "test": 5}}, splits=("train", "test"),
                      split_by="scene", test_scenes=range(51, 56), crop=500),
    "O-HAZE": Layout(r"(?P<scene>\d+)(?P<tag>_outdoor_hazy)\.jpg", r"(?P<scene>\d+)_outdoor_GT\.jpg", "the NTIRE 2018 "
                     "O-HAZE archive: 01_outdoor_hazy.jpg and 01_outdoor_GT.jpg; images 41–45 are the test set here",
                     {"NTIRE 2018 O-HAZE": {"train": 40, "test": 5}}, splits=("train", "test"),
                     split_by="scene", test_scenes=range(41, 46), crop=256),
    "I-HAZE": Layout(r"(?P<scene>\d+)(?P<tag>_indoor_hazy)\.jpg", r"(?P<scene>\d+)_indoor_GT\.jpg", "the NTIRE 2018 "
                     "I-HAZE archive: 01_indoor_hazy.jpg and 01_indoor_GT.jpg; images 31–35 are the test set here",
                     {"NTIRE 2018 I-HAZE": {"train": 30, "test": 5}}, splits=("train", "test"),
                     split_by="scene", test_scenes=range(31, 36), crop=256),
    "RESIDE-6K": Layout(None, None, "DehazeFormer's packaging (IDKiro/DehazeFormer, README.md), the only form it is "
                        "distributed in: {train,test}/{GT,hazy}/ with one name for both images of a pair",
                        {"RESIDE-6K": {"train": 6000, "test": 1000}}, splits=("train", "test"), crop=256),
}


@dataclass
class Pair:
    split: str
    name: str            # of both entries, GT/<name> and hazy/<name>
    hazy: Path
    clear: Path
    border: tuple[int, int] = (0, 0)   # pixels cut from each side of the clear image (x, y)


@dataclass
class Plan:
    pairs: list[Pair] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)   # "path: why"
    clear_images: set[Path] = field(default_factory=set)
    ignored: int = 0                                     # files named otherwise (depth maps, transmission maps, …)
    found: Counter = field(default_factory=Counter)      # hazy images per split, before any is left out
    packaged: bool = False


def _images(source: Path) -> Iterator[Path]:
    for folder, _, files in os.walk(source, followlinks=True):
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield Path(folder) / name


def _in_folders(path: Path, source: Path, folders: tuple[str, ...], subset: str | None) -> bool:
    parts = [p.lower() for p in path.relative_to(source).parts[:-1]]
    return (not folders or any(p in folders for p in parts)) and (subset is None or subset in parts)


def _split_of(layout: Layout, path: Path, source: Path, scene: str) -> str | None:
    if layout.split_by == "fixed":
        return layout.splits[0]
    if layout.split_by == "scene":
        return "test" if int(scene) in layout.test_scenes else "train"
    return next((p.lower() for p in reversed(path.relative_to(source).parts[:-1]) if p.lower() in ("train", "test")), None)


def _classify(layout: Layout, path: Path, source: Path) -> tuple[bool, re.Match] | None:
    """(whether it is a hazy image, its name's match) when the layout's rule names `path`, else None."""
    for rule, folders, is_hazy in ((layout.hazy, layout.hazy_folders, True), (layout.clear, layout.clear_folders, False)):
        found = re.fullmatch(rule, path.name)
        if found and _in_folders(path, source, folders, layout.subset):
            return is_hazy, found
    return None


def match_files(layout: Layout, source: Path) -> tuple[dict, list[tuple[str, str, Path, str]], Plan]:
    """Sort an archive's images by the layout's rule: the clear image of each (split, scene), the hazy images as
    (split, scene, path, pair name), and a plan holding what is left out so far."""
    plan, clear_of, hazy = Plan(), {}, []
    for path in _images(source):
        if (classified := _classify(layout, path, source)) is None:
            plan.ignored += 1
            continue
        is_hazy, found = classified
        scene = found["scene"]
        split = _split_of(layout, path, source, scene)
        if split is None:
            plan.left_out.append(f"{path}: not below a train/ or test/ folder")
        elif is_hazy:
            tag = found.span("tag") if "tag" in found.groupdict() else (0, 0)
            hazy.append((split, scene, path, path.name[:tag[0]] + path.name[tag[1]:]))
        elif (split, scene) in clear_of:
            plan.left_out.append(f"{path}: a second clear image of scene {scene} (the first: {clear_of[split, scene]})")
        else:
            clear_of[split, scene] = path
    return clear_of, hazy, plan


def plan_archive(layout: Layout, source: Path) -> Plan:
    """The pairs of an original archive, each hazy image with its clear image."""
    clear_of, hazy, plan = match_files(layout, source)
    used = set()
    for split, scene, path, name in hazy:
        clear = clear_of.get((split, scene))
        if clear is None:
            plan.left_out.append(f"{path}: no clear image of scene {scene} in the {split} split")
            continue
        used.add(clear)
        plan.pairs.append(Pair(split, name, path, clear))
    plan.found = Counter(split for split, *_ in hazy)
    plan.left_out += [f"{clear}: a clear image without hazy images" for clear in sorted(set(clear_of.values()) - used)]
    plan.clear_images = used
    return plan


def plan_packaged(layout: Layout, source: Path) -> Plan:
    """The pairs of a folder already in the paired layout (DehazeFormer's packaging): both images share a name."""
    plan = Plan(packaged=True)
    for split in layout.splits:
        folders = {kind: source / split / kind for kind in (CLEAR_DIR, HAZY_DIR)}
        names = {kind: {p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
                 for kind, folder in folders.items()}
        plan.left_out += [f"{folders[HAZY_DIR] / n}: no clear image {folders[CLEAR_DIR] / n}"
                          for n in sorted(names[HAZY_DIR] - names[CLEAR_DIR])]
        plan.left_out += [f"{folders[CLEAR_DIR] / n}: a clear image without the hazy image {folders[HAZY_DIR] / n}"
                          for n in sorted(names[CLEAR_DIR] - names[HAZY_DIR])]
        for name in sorted(names[HAZY_DIR] & names[CLEAR_DIR]):
            plan.pairs.append(Pair(split, name, folders[HAZY_DIR] / name, folders[CLEAR_DIR] / name))
            plan.clear_images.add(folders[CLEAR_DIR] / name)
        plan.found[split] = len(names[HAZY_DIR])
    return plan


def packaged_root(layout: Layout, source: Path) -> Path | None:
    """`source`, or the one folder in it, when it holds {split}/GT/ and {split}/hazy/ for the layout's splits."""
    def packaged(folder: Path) -> bool:
        return all((folder / split / kind).is_dir() for split in layout.splits for kind in (CLEAR_DIR, HAZY_DIR))

    found = [folder for folder in (source, *sorted(p for p in source.iterdir() if p.is_dir())) if packaged(folder)]
    return found[0] if len(found) == 1 else None


def check_sizes(plan: Plan, crop: int | None, progress=iter) -> None:
    """Leave out pairs whose sizes do not match (a clear image larger by an even border is cropped to its hazy image
    instead) and training pairs smaller than the crop. Sizes come from the headers: nothing is decoded."""
    kept, clear_sizes = [], {}
    for pair in progress(plan.pairs):
        try:
            (w, h) = image_size(pair.hazy)
            cw, ch = clear_sizes[pair.clear] = clear_sizes.get(pair.clear) or image_size(pair.clear)
        except ImageError as e:
            plan.left_out.append(str(e))
            continue
        border = ((cw - w) // 2, (ch - h) // 2)
        if (cw, ch) != (w, h) and not (min(border) >= 0 and (cw - w) % 2 == (ch - h) % 2 == 0):
            plan.left_out.append(f"{pair.hazy}: {w}×{h}, its clear image {pair.clear} {cw}×{ch}")
        elif crop is not None and pair.split == "train" and min(w, h) < crop:
            plan.left_out.append(f"{pair.hazy}: {w}×{h} is smaller than the {crop}×{crop} training crop")
        else:
            pair.border = border
            kept.append(pair)
    plan.pairs = kept


def check_names(plan: Plan) -> None:
    """Two hazy images that would make pairs of one name (the same file name in two folders) are both left out."""
    counts = Counter((p.split, p.name) for p in plan.pairs)
    plan.left_out += [f"{p.hazy}: its pair name {p.split}/{p.name} is also another hazy image's"
                      for p in plan.pairs if counts[p.split, p.name] > 1]
    plan.pairs = [p for p in plan.pairs if counts[p.split, p.name] == 1]


def link(target: Path, entry: Path) -> bool:
    """Make `entry` a hard link to `target` (a symbolic one across file systems); False when it already was one."""
    if entry.is_symlink() or entry.exists():
        if entry.exists() and os.path.samefile(entry, target):
            return False
        raise FileExistsError(f"{entry} exists and is another file than {target}: left as it is")
    try:
        os.link(target, entry)
    except OSError:  # another file system, or one without hard links
        os.symlink(target.resolve(), entry)
    return True


def write_cropped(pair: Pair, entry: Path) -> bool:
    """`entry`: the pair's clear image without its border, as a PNG (whatever the entry's name says)."""
    image = cv2.imread(str(pair.clear), cv2.IMREAD_UNCHANGED)
    h, w = image.shape[:2]
    (bx, by) = pair.border
    if entry.exists():
        if image_size(entry) == (w - 2 * bx, h - 2 * by):
            return False
        raise FileExistsError(f"{entry} exists and is another image than {pair.clear} without its border: left as it is")
    ok, data = cv2.imencode(".png", image[by:h - by, bx:w - bx])
    temporary = entry.with_name(f".{entry.name}.partial")
    temporary.write_bytes(data.tobytes())
    os.replace(temporary, entry)
    return True


def write_pairs(plan: Plan, out: Path, progress=iter) -> int:
    """Make every pair's two entries under `out`; returns how many entries were new. Entries that exist as other
    files are listed in the plan and left as they are."""
    new, cropped = 0, {}
    for pair in progress(plan.pairs):
        for kind in (CLEAR_DIR, HAZY_DIR):
            (out / pair.split / kind).mkdir(parents=True, exist_ok=True)
        hazy_entry, clear_entry = out / pair.split / HAZY_DIR / pair.name, out / pair.split / CLEAR_DIR / pair.name
        try:
            new += link(pair.hazy, hazy_entry)
            if pair.border == (0, 0):
                new += link(pair.clear, clear_entry)
            elif pair.clear in cropped:
                new += link(cropped[pair.clear], clear_entry)
            else:
                new += write_cropped(pair, clear_entry)
                cropped[pair.clear] = clear_entry
        except FileExistsError as e:
            plan.left_out.append(str(e))
    return new


def plan_pairs(benchmark: str, source: Path, crop: int | None, progress=iter) -> Plan:
    """What `benchmark`'s download at `source` makes: its pairs, and what is left out and why."""
    layout = LAYOUTS[benchmark]
    if not source.is_dir():
        raise PrepareError(f"{source}: {'no such folder' if not source.exists() else 'not a folder'}")
    if (root := packaged_root(layout, source)) is not None:
        plan = plan_packaged(layout, root)
    elif layout.hazy is None:
        raise PrepareError(f"{source}: {benchmark} comes only as {layout.source}; this folder lacks "
                           f"{' and '.join(f'{s}/{CLEAR_DIR}/, {s}/{HAZY_DIR}/' for s in layout.splits)}")
    else:
        plan = plan_archive(layout, source)
    if not plan.pairs and not plan.left_out:
        raise PrepareError(f"{source} holds no image named as {benchmark} names its images: {layout.source}"
                           + (f", below a folder named {' or '.join(layout.hazy_folders)}" if layout.hazy_folders else ""))
    check_sizes(plan, crop, progress)
    check_names(plan)
    return plan


def counts_verdict(layout: Layout, found: Counter) -> str:
    """Whether the hazy images found per split are one of the benchmark's published counts."""
    def listed(counts: dict[str, int]) -> str:
        return " + ".join(f"{counts[s]:,} {s}" for s in counts)

    for version, counts in layout.published.items():
        if all(found[split] == count for split, count in counts.items()):
            return f"{listed(counts)} hazy images: the published count of {version}"
    published = "; ".join(f"{version} {listed(counts)}" for version, counts in layout.published.items())
    return (f"{listed({s: found[s] for s in layout.splits})} hazy images, NOT a published count ({published})"
            + (f". {layout.note}" if layout.note else ""))


def report(benchmark: str, source: Path, out: Path, plan: Plan, shown: int | None = None) -> str:
    """The report of one preparation: pairs per split, the published counts, and the images left out with why
    (the first `shown` of them; all by default)."""
    layout = LAYOUTS[benchmark]
    kind = "DehazeFormer's paired layout" if plan.packaged else f"its original layout ({layout.source})"
    per_split = Counter(p.split for p in plan.pairs)
    lines = [f"{benchmark} from {source}, read in {kind}, into {out}:",
             *(f"  {split}: {per_split[split]:,} pairs in {out / split}" for split in layout.splits if per_split[split]),
             f"  {counts_verdict(layout, plan.found)}",
             f"  {len(plan.left_out):,} images left out" + (":" if plan.left_out else "")]
    lines += [f"    {problem}" for problem in plan.left_out[:shown]]
    if shown is not None and len(plan.left_out) > shown:
        lines.append(f"    … and {len(plan.left_out) - shown:,} more")
    if plan.ignored:
        lines.append(f"  {plan.ignored:,} other image files are not named as {benchmark} names its images (e.g. depth "
                     f"or transmission maps) and were not used")
    return "\n".join(lines) + "\n"


def prepare(benchmark: str, source: Path | str, out: Path | str, crop: int | None, progress=iter) -> tuple[Plan, int]:
    """Make `benchmark`'s pairs under `out` from its download at `source`; returns the plan and how many entries
    were new. The whole report is kept in `<out>/prepare_<benchmark>.txt` (rewritten only when it changes)."""
    source, out = Path(source), Path(out)
    plan = plan_pairs(benchmark, source, crop, progress)
    new = write_pairs(plan, out, progress)
    text, path = report(benchmark, source, out, plan), report_path(benchmark, out)
    if not path.is_file() or path.read_text() != text:
        write_text_atomically(path, text)
    return plan, new


def report_path(benchmark: str, out: Path) -> Path:
    return Path(out) / f"prepare_{benchmark}.txt"
