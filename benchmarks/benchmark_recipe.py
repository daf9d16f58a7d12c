"""The released RESIDE-6K recipe end to end: this project's train.py against the released train.py, same data,
batch, device, initial weights and first batches, each run in a fresh process.

    python benchmarks/benchmark_recipe.py --rounds 2                 # on the CPU: the table of BENCHMARKS.md
    python benchmarks/benchmark_recipe.py --device cuda --budget 450   # on a GPU
    python benchmarks/benchmark_recipe.py --smoke      # every code path at toy sizes on the CPU (the tests run this)

The released code is the released files train.py needs, kept unchanged in tests/reference/MixCLDehazeNet and
tests/reference/MixDehazeNet (MIT licence; commit and blob ids in their released_tree.txt); --mixcl-code and
--mixdehazenet-code name another checkout.

It makes a RESIDE-6K-shaped dataset on the spot: JPEG pairs of 620×460 cut from the photographs shipped with
scikit-image, hazed with the atmospheric scattering model; each image's class is its photo's scene (indoor /
outdoor) and the two classes get random 512-d text features, stored as the released clip_text.py stores them
(<split>/text_feature/<name>.npy) and as this project's CLIP prior cache holds them (no CLIP runs on either side).
ResNet-152 gets random weights: ours through the contrastive term's `weights_file`, the released code where
torchvision looks for its ImageNet file ($TORCH_HOME).

Per model and round (--rounds 2: ours, released, ours, released, so that both meet the same machine load):
- ours: `train.py configs/reside6k/<model>.yaml` with the data, crop, batch and output folder overridden, on the
  CPU with `train.compile=false` as the configs direct there; one row per --ours setting (more overrides: on
  the CPU by default the config as it is, its fastest fp32 form, and where the CPU computes bf16 natively its
  bf16 forms);
- released: the released train.py (DanielHo-BS/MixCLDehazeNet's for MixCL-S, AmeryXiong/MixDehazeNet's for
  MixDehazeNet-S) from its checkout, as its train.sh runs it, with its reside6k settings at this crop and batch.
benchmarks/recipe_worker.py runs each: it says what it patches in the released code on a machine without CUDA,
and how it records a step.

The first --warmup steps of both train on the same fixed batches from the same initial weights (centre crops of
the first training pairs), so their first losses must agree to float rounding (the second ones already differ
more: Adam's first update is ±lr wherever a gradient is far above eps, so rounding flips the sign of the update of
near-zero gradients; our own run in another memory layout moves the second loss as much); then --steps steps are timed on each
code's own DataLoader. Reported per run: images/s end to end (data waits included), minutes per 6000-image
epoch and hours for the recipe's 1000 epochs at this crop and batch (validation excluded), the peak memory of the
main process (the allocator's on CUDA, resident set size on the CPU), the DataLoader workers' memory at the last
step, the time to the end of the warm-up (start-up, checks, compilation), and the mean split of a timed step (on
CUDA every mark synchronises). Ratios compare the medians over rounds of one call.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from benchmarks.benchmark_inference import load_module
from benchmarks.benchmark_models import machine
from datasets.haze_model import add_haze
from datasets.synthetic import DOMAINS, load_photo
from models import build_model, model_class
from prior import clip_metadata, image_list_fingerprint, one_hot, prior_cache_path, save_prior_cache
from utils.config import load_config
from utils.image import read_image, to_tensor
from utils.precision import cpu_computes_bf16

REPO = Path(__file__).resolve().parents[1]
RELEASED_CODE = REPO / "tests" / "reference"  # the released files train.py needs, unchanged
WORKER = Path(__file__).resolve().parent / "recipe_worker.py"
RECIPES = {"mixcl-s": ("configs/reside6k/mixcl-s.yaml", "mixcl_code"),
           "mixdehazenet-s": ("configs/reside6k/mixdehazenet-s.yaml", "mixdehazenet_code")}
RELEASED_FACTORY, RELEASED_SETTINGS = "MixDehazeNet_s", "configs/reside6k/MixDehazeNet-s.json"
EPOCH_IMAGES, EPOCHS = 6000, 1000  # RESIDE-6K's training pairs, the recipe's epochs
# Our rows on a CPU: the config as it is (fp32 there), its fastest fp32 form (the same losses as the released
# code's to float rounding), and bf16 where the CPU computes it natively (train.amp=auto; fp32 elsewhere).
CPU_ROWS = ("", "train.channels_last=true train.compile=true", "train.amp=auto train.channels_last=true",
            "train.amp=auto train.channels_last=true train.compile=true")
SPLIT = ("data", "network forward", "regulariser", "network backward", "optimizer", "other")
TEXT_DIM = 512


def sizes(args: argparse.Namespace) -> dict:
    """The run's sizes: --smoke's toy ones, else the device's defaults, each overridden by its option."""
    if args.smoke:
        chosen = {"crop": 48, "batch": 2, "warmup": 1, "steps": 1, "pairs": 4, "image": (72, 96), "workers": 1}
    elif args.device == "cuda":
        chosen = {"crop": 256, "batch": 16, "warmup": 3, "steps": 20, "pairs": 384, "image": (460, 620), "workers": None}
    else:
        chosen = {"crop": 64, "batch": 16, "warmup": 2, "steps": 8, "pairs": 320, "image": (460, 620), "workers": None}
    for key in ("crop", "batch", "warmup", "steps", "pairs", "workers"):
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    chosen["pairs"] = max(chosen["pairs"], chosen["batch"] * (chosen["steps"] + 1))  # the timed steps' batches
    return chosen


# ----------------------------------------------------------------------------------------------- the data set


def hazy_pair(photo: str, height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clear, hazy) float32 RGB in [0, 1]: a random window of the photo at a random scale, random haze."""
    clear, depth = load_photo(photo, short_side=max(height, width))
    scale = rng.uniform(1.0, 1.5)
    size = (round(clear.shape[1] * scale), round(clear.shape[0] * scale))
    clear, depth = cv2.resize(clear, size), cv2.resize(depth, size)
    top, left = rng.integers(clear.shape[0] - height + 1), rng.integers(clear.shape[1] - width + 1)
    clear, depth = clear[top:top + height, left:left + width], depth[top:top + height, left:left + width]
    return clear, add_haze(clear, depth, beta=rng.uniform(0.6, 2.0), airlight=rng.uniform(0.75, 1.0))


def write_split(folder: Path, count: int, image: tuple[int, int], rng: np.random.Generator,
                text_features: torch.Tensor) -> dict[str, str]:
    """`count` JPEG pairs in folder/{GT,hazy} and the released text features in folder/text_feature; returns
    name → class."""
    classes = {}
    for sub in ("GT", "hazy", "text_feature"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    photos = sorted(DOMAINS)
    for i in range(count):
        photo, name = photos[rng.integers(len(photos))], f"{i:04d}.jpg"
        clear, hazy = hazy_pair(photo, *image, rng)
        for sub, picture in (("GT", clear), ("hazy", hazy)):
            cv2.imwrite(str(folder / sub / name), np.round(picture[:, :, ::-1] * 255).astype(np.uint8),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
        classes[name] = DOMAINS[photo]
        # as the released clip_text.py saves it: the arg-max class's text feature, 1×D, in the hazy image's name
        np.save(folder / "text_feature" / name.replace(".jpg", ".npy"),
                text_features[["indoor", "outdoor"].index(classes[name])][None].numpy())
    return classes


def write_prior_cache(config_path: str, cache_dir: Path, folder: Path, classes: dict[str, str],
                      text_features: torch.Tensor) -> None:
    """This project's CLIP prior cache of a split, holding the given classes and text features as CLIP's result
    (one-hot probabilities), under the settings of the config's prior: train.py reads it instead of running CLIP."""
    prior = load_config(REPO / config_path, [f"prior.cache_dir={cache_dir}"]).prior
    names = sorted(classes)
    cache = {"names": names, "probabilities": one_hot(names, classes.__getitem__, prior.classes),
             "text_features": text_features, "metadata": clip_metadata(prior),
             "fingerprint": image_list_fingerprint(folder / "hazy", names)}
    save_prior_cache(prior_cache_path(prior, folder), cache)


def write_probes(path: Path, folder: Path, classes: dict[str, str], text_features: torch.Tensor, count: int,
                 batch: int, crop: int) -> None:
    """The fixed first batches: centre crops of the first training pairs (read as both codes read them), with
    their classes' text features."""
    names = sorted(classes)
    probes = []
    for step in range(count):
        chosen = [names[(step * batch + i) % len(names)] for i in range(batch)]
        images = {sub: [centre_crop(to_tensor(read_image(folder / sub / n)), crop) for n in chosen]
                  for sub in ("hazy", "GT")}
        text = torch.stack([text_features[["indoor", "outdoor"].index(classes[n])] for n in chosen])
        probes.append({"hazy": torch.stack(images["hazy"]), "gt": torch.stack(images["GT"]), "text": text})
    torch.save(probes, path)


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
    return image[:, top:top + size, left:left + size]


def make_dataset(work: Path, sizes: dict, models: list[str]) -> Path:
    """The data set, its prior caches, the probes and ResNet-152's random weights; returns the data root."""
    rng = np.random.default_rng(0)
    text_features = F.normalize(torch.randn(2, TEXT_DIM, generator=torch.Generator().manual_seed(0)), dim=-1)
    root = work / "RESIDE-6K"
    train = write_split(root / "train", sizes["pairs"], sizes["image"], rng, text_features)
    test = write_split(root / "test", 2, sizes["image"], rng, text_features)
    for name in models:
        for split, classes in (("train", train), ("test", test)):
            write_prior_cache(RECIPES[name][0], work / "clip_prior", root / split, classes, text_features)
    write_probes(work / "probes.pt", root / "train", train, text_features, sizes["warmup"], sizes["batch"],
                 sizes["crop"])
    resnet152_file(work).parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet152().state_dict(), resnet152_file(work))
    return root


def resnet152_file(work: Path) -> Path:
    """ResNet-152's random weights, where torchvision looks for its ImageNet file when $TORCH_HOME is work/torch."""
    weights = torchvision.models.ResNet152_Weights.IMAGENET1K_V1
    return work / "torch" / "hub" / "checkpoints" / Path(weights.url).name


# ----------------------------------------------------------------------------------------------------- runs


def released_weights(checkout: Path, model_name: str, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our network's weights in the released network's layout: this project's converter renames released keys to
    ours, passing the tensors through, so it is inverted by tensor identity. Released parameters it drops (the
    released MixCL fusion's unused reverse direction) keep the released initialisation."""
    module = load_module(checkout / "models" / "MixDehazeNet.py", f"released_{checkout.name}")
    released = getattr(module, RELEASED_FACTORY)().state_dict()
    name_of = {id(tensor): key for key, tensor in released.items()}
    converted = type(build_model(model_name)).convert_checkpoint(dict(released))
    return released | {name_of[id(tensor)]: ours[key] for key, tensor in converted.items()}


def worker_environment(torch_home: Path, device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TORCH_HOME": str(torch_home)}
    return env | ({"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {})


def run_worker(spec: dict, work: Path, env: dict, timeout: float) -> dict:
    """One run in a fresh process; its record, or a RuntimeError with the end of its output."""
    spec_path = work / f"{spec['label']}.json"
    spec_path.write_text(json.dumps(spec))
    log = work / f"{spec['label']}.log"
    with open(log, "w") as out:
        subprocess.run([sys.executable, str(WORKER), str(spec_path)], stdout=out, stderr=subprocess.STDOUT, env=env,
                       timeout=timeout, check=False)
    result = json.loads(Path(spec["result"]).read_text()) if Path(spec["result"]).exists() else {"error": ""}
    if "error" in result:
        raise RuntimeError(f"{spec['label']} failed: {result['error']}\n{log.read_text()[-4000:]}")
    return result


def ours_spec(name: str, label: str, work: Path, root: Path, sizes: dict, device: str, overrides: list[str]) -> dict:
    config, _ = RECIPES[name]
    argv = [str(REPO / config), f"data.root={root}", f"data.crop_size={sizes['crop']}",
            f"train.batch_size={sizes['batch']}", f"out_dir={work / label}", f"prior.cache_dir={work / 'clip_prior'}",
            loss_with_weights_file(config, resnet152_file(work))]
    argv += [f"data.num_workers={sizes['workers']}"] if sizes["workers"] is not None else []
    argv += ["train.compile=false"] if device == "cpu" else []  # as the configs say for a CPU
    return {"kind": "ours", "code": str(REPO), "cwd": str(work), "argv": argv + overrides,
            "initial_weights": str(work / f"{name}-initial.pt")}


def loss_with_weights_file(config_path: str, weights_file: Path) -> str:
    """The override giving the config's contrastive term ResNet-152's weights file (JSON is YAML)."""
    terms = [dataclasses.asdict(term) for term in load_config(REPO / config_path).loss]
    for term in terms:
        if term["name"] == "contrastive":
            term["args"]["weights_file"] = str(weights_file)
    return "loss=" + json.dumps(terms)


def released_spec(name: str, label: str, checkout: Path, work: Path, root: Path, sizes: dict, device: str) -> dict:
    """The released train.py as its train.sh runs it, from a folder of its own holding its reside6k settings at
    this crop and batch (it reads configs/<exp>/<model>.json from the working folder)."""
    cwd = work / label
    settings = json.loads((checkout / RELEASED_SETTINGS).read_text()) | {"patch_size": sizes["crop"],
                                                                         "batch_size": sizes["batch"]}
    (cwd / "configs" / "bench").mkdir(parents=True)
    (cwd / "configs" / "bench" / "MixDehazeNet-s.json").write_text(json.dumps(settings))
    argv = ["--model", "MixDehazeNet-s", "--data_dir", str(root), "--dataset", "", "--exp", "bench",
            "--save_dir", str(cwd / "saved_models"), "--gpu", "0" if device == "cuda" else ""]
    argv += ["--num_workers", str(sizes["workers"])] if sizes["workers"] is not None else []
    initial = work / f"{name}-released-initial.pt"
    if not initial.exists():
        if not (work / f"{name}-initial.pt").exists():
            raise RuntimeError("no initial weights: the released run starts from those of our run, which failed")
        ours = torch.load(work / f"{name}-initial.pt", weights_only=True)
        torch.save(released_weights(checkout, name, ours), initial)
    return {"kind": "released", "code": str(checkout), "cwd": str(cwd), "argv": argv,
            "released_factory": RELEASED_FACTORY, "initial_weights": str(initial)}


# -------------------------------------------------------------------------------------------------- results


def step_split(marks: list[tuple[str, float]], warmup: int) -> tuple[float, float, dict[str, float]]:
    """(start, end of the timed steps, mean seconds per timed step of each part of SPLIT) from a run's marks."""
    ends = [t for name, t in marks if name == "optimizer_end"]
    start, end = ends[warmup - 1], ends[-1]
    parts = dict.fromkeys(SPLIT, 0.0)
    opened: dict[str, float] = {}
    closes = {"data_end": ("data_start", "data"), "network_end": ("network_start", "network forward"),
              "regulariser_end": ("regulariser_start", "regulariser"),
              "output_gradient": ("backward_start", "regulariser"),  # backward through the loss, to the output
              "backward_end": ("output_gradient", "network backward"),
              "optimizer_end": ("optimizer_start", "optimizer")}
    for name, t in marks:
        if not start < t <= end:
            continue
        opened[name] = t
        if name in closes and closes[name][0] in opened:
            parts[closes[name][1]] += t - opened.pop(closes[name][0])
    steps = len(ends) - warmup
    parts = {k: v / steps for k, v in parts.items()}
    parts["other"] = (end - start) / steps - sum(parts.values())
    return start, end, parts


def summarize(record: dict, sizes: dict) -> dict:
    start, end, split = step_split(record["marks"], sizes["warmup"])
    images_per_second = sizes["batch"] * sizes["steps"] / (end - start)
    return {"images_per_second": images_per_second, "epoch_seconds": EPOCH_IMAGES / images_per_second,
            "losses": record["losses"][:sizes["warmup"]], "peak_gb": record["peak_gb"],
            "workers_gb": record["workers_gb"], "warmup_seconds": start - record["started"], "split": split}


def print_row(name: str, code: str, round_: int, r: dict) -> None:
    split = " | ".join(f"{r['split'][part]:.2f}" for part in SPLIT)
    losses = ", ".join(f"{v:.6f}" for v in r["losses"])
    print(f"| {name} | {code} | {round_} | {r['images_per_second']:.2f} | {r['epoch_seconds'] / 60:.1f} | "
          f"{r['epoch_seconds'] * EPOCHS / 3600:.0f} | {losses} | {r['peak_gb']:.2f} | {r['workers_gb']:.2f} | "
          f"{r['warmup_seconds']:.0f} | {split} |", flush=True)


def print_summary(name: str, results: dict) -> None:
    """Each of our settings against the released code: the ratio of the medians over rounds, and how far apart
    the first losses are (the first step's: later ones depend on Adam's first update, see above)."""
    released = results.get((name, "released"))
    if not released:
        return
    for (model, code), ours in results.items():
        if model != name or code == "released":
            continue
        ratio = (statistics.median(r["images_per_second"] for r in ours)
                 / statistics.median(r["images_per_second"] for r in released))
        difference = max(abs(o["losses"][0] - r["losses"][0]) / abs(r["losses"][0]) for o in ours for r in released)
        print(f"\n{name}: {code} / released = {ratio:.2f}× images/s (medians over {len(ours)} / {len(released)} "
              f"runs); first losses agree to {difference:.1e} (relative)", flush=True)


# ------------------------------------------------------------------------------------------------------ main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixcl-code", type=Path, default=RELEASED_CODE / "MixCLDehazeNet",
                        help="a checkout of github.com/DanielHo-BS/MixCLDehazeNet (default: its files kept here)")
    parser.add_argument("--mixdehazenet-code", type=Path, default=RELEASED_CODE / "MixDehazeNet",
                        help="a checkout of github.com/AmeryXiong/MixDehazeNet (default: its files kept here)")
    parser.add_argument("--ours-only", action="store_true", help="no run of the released code")
    parser.add_argument("--models", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="every code path at toy sizes on the CPU")
    parser.add_argument("--crop", type=int, help="crop side (default: 64 on the CPU, 256 on CUDA)")
    parser.add_argument("--batch", type=int, help="batch size (default 16)")
    parser.add_argument("--warmup", type=int, help="untimed steps on the fixed batches, ≥ 1")
    parser.add_argument("--steps", type=int, help="timed steps")
    parser.add_argument("--pairs", type=int, help="training pairs to make")
    parser.add_argument("--workers", type=int, help="DataLoader workers of both codes (default: each code's own)")
    parser.add_argument("--rounds", type=int, default=1, help="ours, released, ours, released, ... per model")
    parser.add_argument("--ours", nargs="+", metavar="OVERRIDES",
                        help="our settings, one row each: train.py overrides separated by spaces, '' for the config as "
                             f"it is (default: ''; on a CPU also {', '.join(map(repr, CPU_ROWS[1:]))}, the bf16 ones "
                             "where the CPU computes bf16 natively)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    parser.add_argument("--budget", type=float, help="seconds all runs together may take (a GPU lent for minutes); "
                                                     "runs that no longer fit are reported as left out")
    parser.add_argument("--workdir", type=Path, help="keep the data and logs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device = "cpu"
    if args.ours is None:
        args.ours = ([""] if args.smoke or args.device == "cuda"
                     else [row for row in CPU_ROWS if "amp=auto" not in row or cpu_computes_bf16()])
    if args.ours_only:
        args.mixcl_code = args.mixdehazenet_code = None
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    for name in args.models:
        checkout = getattr(args, RECIPES[name][1])
        if checkout is not None and not (checkout / "train.py").is_file():
            parser.error(f"{checkout}: no train.py there (a checkout of the released code is expected)")
    return args


def run_all(args: argparse.Namespace, work: Path) -> dict:
    chosen = sizes(args)
    root = make_dataset(work, chosen, args.models)
    env = worker_environment(work / "torch", args.device)
    print(f"Machine: {machine()}{' (smoke run: the figures mean nothing)' if args.smoke else ''}; device "
          f"{args.device}; crop {chosen['crop']}, batch {chosen['batch']}, {chosen['pairs']} training pairs of "
          f"{chosen['image'][1]}×{chosen['image'][0]}; {chosen['warmup']} warm-up steps on fixed batches, then "
          f"{chosen['steps']} timed steps\n")
    print("| model | code | round | images/s | min per 6000-image epoch | h per 1000 epochs | first losses | peak GB "
          "| loader workers GB | start-up + warm-up s | " + " | ".join(f"{part} s" for part in SPLIT) + " |")
    print("|" + "---|" * (10 + len(SPLIT)))
    results: dict = {}
    deadline = time.monotonic() + (args.budget or math.inf)
    for name in args.models:
        checkout = getattr(args, RECIPES[name][1])
        codes = [(f"ours ({overrides})" if overrides else "ours", overrides) for overrides in args.ours]
        codes += [("released", None)] if checkout else []
        for round_ in range(1, args.rounds + 1):  # ours, released, ours, released, ...: both see the same load
            for i, (code, overrides) in enumerate(codes):
                timeout = min(args.timeout, deadline - time.monotonic())
                try:
                    if timeout <= 0:
                        raise RuntimeError("left out: the time budget is spent")
                    r = measure(args, name, overrides, checkout, f"{name}-{i}-{round_}", work, root, chosen, env,
                                timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    if args.smoke:
                        raise
                    print(f"| {name} | {code} | {round_} | failed: {' '.join(str(e).split())[-600:]} |", flush=True)
                    continue  # a GPU run goes on: one broken path costs none of the others
                results.setdefault((name, code), []).append(r)
                print_row(name, code, round_, r)
        print_summary(name, results)
    return results


def measure(args: argparse.Namespace, name: str, overrides: str | None, checkout: Path | None, label: str,
            work: Path, root: Path, chosen: dict, env: dict, timeout: float) -> dict:
    """One run: ours with these overrides, or (None) the released code."""
    spec = (released_spec(name, label, checkout, work, root, chosen, args.device) if overrides is None
            else ours_spec(name, label, work, root, chosen, args.device, overrides.split()))
    spec |= {"label": label, "device": args.device, "warmup": chosen["warmup"], "steps": chosen["steps"],
             "probes": str(work / "probes.pt"), "text": model_class(name).takes_prior,
             "result": str(work / f"{label}.result.json")}
    return summarize(run_worker(spec, work, env, timeout), chosen)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return run_all(args, args.workdir)
    with tempfile.TemporaryDirectory(prefix="recipe-") as work:
        return run_all(args, Path(work))


if __name__ == "__main__":
    main()
