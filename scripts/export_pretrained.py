"""Export a trained network as a Hugging Face model folder, and optionally push it to the Hub.

    python scripts/export_pretrained.py --checkpoint runs/reside6k/mixcl-s/best.pt exported/mixcl-s
    python scripts/export_pretrained.py --checkpoint MixDehazeNet-s.pth --model mixdehazenet-s exported/mixdehazenet-s
    python scripts/export_pretrained.py --checkpoint runs/reside6k/mixcl-s/best.pt exported/mixcl-s --push me/mixcl-s

OUT_DIR receives config.json (the network's name and constructor arguments, a MixCL network's prior settings
with its class text features among them), model.safetensors (the weights) and README.md, a model card with the
training recipe and, when the run was tested, its scores (the summary.json test.py wrote beside the run:
<run>/test/ or results/<run>/test/, or --results). Load it with `models.from_pretrained(OUT_DIR)`, or pass OUT_DIR
(or the pushed repository id) as --checkpoint to test.py, predict.py and evaluate_real.py. --push uploads that very
folder with huggingface_hub (log in first: `hf auth login`); to push an exported folder again, give it as both
--checkpoint and OUT_DIR.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from utils.cli import UserError, add_model_arguments, real_path, run_name, run_reporting_user_errors, script_parser
from utils.paths import OutputFolder, check_readable


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    add_model_arguments(parser)
    parser.add_argument("out", type=Path, metavar="OUT_DIR",
                        help="the model folder to write (one not holding an export yet)")
    parser.add_argument("--push", metavar="ORG/NAME", help="also upload the folder to this Hugging Face repository")
    parser.add_argument("--results", type=Path, help="test.py's summary.json for the card (default: found beside the run)")
    return parser.parse_args(argv)


def read_results(path: Path) -> dict:
    try:
        summary = json.loads(check_readable(path, "test results").read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"test results {path}: not a JSON file ({e})") from None
    if not isinstance(summary, dict) or not {"checkpoint", "data", "images", "psnr", "ssim"} <= set(summary):
        raise UserError(f"test results {path}: not a summary.json written by test.py")
    return summary


def test_results(args: argparse.Namespace) -> dict | None:
    """The summary.json test.py wrote for this very checkpoint: --results, else <run>/test/ or results/<run>/test/
    when it names the checkpoint."""
    if args.results is not None:
        return read_results(args.results)
    for candidate in (args.checkpoint.parent / "test" / "summary.json",
                      Path("results") / run_name(args.checkpoint) / "test" / "summary.json"):
        if candidate.is_file():
            summary = read_results(candidate)
            if real_path(str(summary["checkpoint"])) == real_path(args.checkpoint):
                return summary
    return None


def with_text_features(prior: dict) -> dict:
    """CLIP prior settings with their class text features, computed by CLIP when they are not recorded yet and its
    weights are on this machine."""
    from models.weights import MissingWeightsError
    from prior import load_clip
    from utils.config import PriorConfig

    if Path(prior["clip_pretrained"]).suffix:
        print(f"note: the CLIP weights are a local file ({prior['clip_pretrained']}): wherever the folder runs with CLIP, "
              f"that file must exist")
    if prior["mode"] == "labels" or prior.get("text_features") is not None:
        return prior
    try:
        return prior | {"text_features": load_clip(PriorConfig(**prior)).text_features.tolist()}
    except MissingWeightsError:
        print(f"note: no class text features exported (the CLIP weights {prior['clip_model']} / {prior['clip_pretrained']} "
              f"are not on this machine): the folder needs CLIP wherever it runs")
        return prior


def export(args: argparse.Namespace) -> Path:
    # PyTorch loads here, after the arguments are parsed: --help answers at once
    from models.build import checkpoint_model
    from models.card import model_card
    from models.pretrained import CARD_FILE, PRETRAINED_FILES, save_pretrained
    from utils.checkpoint import load_checkpoint

    if exported_folder_to_push(args):
        return push(args.out, args.push) if args.push else args.out
    contents = load_checkpoint(args.checkpoint)
    model, arguments = checkpoint_model(contents, args.checkpoint, args.model)
    if model.takes_prior:  # the settings a network needs wherever it runs; not those of one training machine
        prior = {k: v for k, v in model.prior_settings().items() if k not in ("cache_dir", "fallback_to_labels")}
        arguments = arguments | {"prior": with_text_features(prior)}
    results = test_results(args)
    with OutputFolder(args.out) as folder:
        existing = [name for name in PRETRAINED_FILES if (folder / name).exists()]
        if existing:
            raise FileExistsError(f"{folder} already holds {', '.join(existing)}: choose another OUT_DIR")
        save_pretrained(model, arguments, folder)
        card = model_card(model.model_name, args.push or str(folder), contents.get("config"), results, arguments.get("prior"))
        (folder / CARD_FILE).write_text(card)
    print(f"{model.model_name} exported to {folder}")
    return push(folder, args.push) if args.push else folder


def exported_folder_to_push(args: argparse.Namespace) -> bool:
    """Whether --checkpoint is OUT_DIR itself, an exported folder to push again; the repository id checked first."""
    from models.pretrained import PRETRAINED_FILES, REPO_ID

    if args.push and not REPO_ID.match(args.push):
        raise UserError(f"--push {args.push!r}: a Hugging Face repository id is ORG/NAME (your user name or an "
                        f"organisation, then the model's name)")
    if not (args.checkpoint.is_dir() and real_path(args.checkpoint) == real_path(args.out)):
        return False
    if missing := [name for name in PRETRAINED_FILES if not (args.out / name).is_file()]:
        raise UserError(f"{args.out} is not an exported model folder: it lacks {', '.join(missing)}")
    return True


def push(folder: Path, repository: str) -> Path:
    """Upload the exported folder as it is: the repository is created when missing. A failure is one line naming
    the repository and the cause; the folder stays, to be pushed again."""
    import huggingface_hub

    from models.pretrained import PRETRAINED_FILES, hub_problem

    try:
        huggingface_hub.create_repo(repository, exist_ok=True)
        commit = huggingface_hub.upload_folder(repo_id=repository, folder_path=folder, commit_message=f"Upload {folder.name}",
                                               allow_patterns=list(PRETRAINED_FILES))
    except Exception as e:  # whatever the client raises: hub_problem says what it means
        raise UserError(f"pushing to {repository} failed: {hub_problem(e)}. {folder} is kept: push it again with "
                        f"python scripts/export_pretrained.py --checkpoint {folder} {folder} --push {repository}") from None
    print(f"pushed to {repository}: {getattr(commit, 'commit_url', commit)}")
    return folder


def main(argv=None) -> Path:
    return export(parse_args(argv))


if __name__ == "__main__":
    run_reporting_user_errors(main)
