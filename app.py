"""Try checkpoints on your own photos in a web page (Gradio), served on this machine.

    bash scripts/setup_env.sh app          # once: the app's extras (requirements-app.txt)
    python app.py --checkpoint runs/demo/mixcl-t/best.pt
    python app.py --checkpoint exported/mixcl-s --checkpoint you/mixdehazenet-s --port 7861

Upload or paste a photo, or pick an example; the page shows hazy and dehazed under a slider, FADE of both (as
evaluate_real.py computes it), a MixCL network's prior class with CLIP's probabilities (and lets you choose the
class), and offers the result as a PNG. Every photo goes through inference.Dehazer, as in predict.py: large ones in
tiles, with a progress bar. Each checkpoint is loaded once, at start. The page is served on 127.0.0.1, to this
machine only; --host 0.0.0.0 serves it to every network this machine is on, to anyone who can reach the port,
without a login. Nothing is sent anywhere else (Gradio's analytics are off).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from utils.cli import MAX_APP_PIXELS, UserError, model_names, run_reporting_user_errors, script_parser, tile_size

EXAMPLES = sorted((Path(__file__).resolve().parent / "examples").glob("*.jpg"))
MAX_UPLOAD = "256mb"  # Gradio refuses larger files before they are stored


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("--checkpoint", type=Path, action="append", required=True,
                        help="a checkpoint of this project, a model folder or a Hugging Face repository id holding one, "
                             "or an official checkpoint with --model; repeat it to choose between several in the page")
    parser.add_argument("--model", choices=model_names(), metavar="MODEL",
                        help="the network of official checkpoints (every --checkpoint; export official weights to a "
                             "model folder with scripts/export_pretrained.py to mix them with others)")
    parser.add_argument("--device", help="cuda, cuda:1, cpu … (default: cuda when available)")
    parser.add_argument("--tile", type=tile_size, default="auto",
                        help='"auto" (default: tiles when the whole photo does not fit), "off", or a tile size in pixels')
    parser.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (default 64)")
    parser.add_argument("--max-pixels", type=int, default=MAX_APP_PIXELS,
                        help=f"refuse larger photos, read from their header before decoding (default {MAX_APP_PIXELS:,})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    return parser.parse_args(argv)


def build_page(models: dict, max_pixels: int):
    """The page: photo, checkpoint and prior class on the left; slider, scores and download on the right."""
    import gradio as gr

    from inference.webapp import ResultFile

    results, first = ResultFile(), next(iter(models.values()))
    with gr.Blocks(title="Dehaze a photo", analytics_enabled=False, delete_cache=(3600, 86400)) as page:
        gr.Markdown("## Dehaze a photo\nUpload or paste a hazy photo, or pick an example, then **Dehaze**.")
        with gr.Row():
            with gr.Column():
                photo = gr.Image(label="hazy photo", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                 height=320, elem_id="photo")
                checkpoint = gr.Dropdown(list(models), value=first.name, label="checkpoint", elem_id="checkpoint")
                label = gr.Radio(**prior_settings(first), label="language prior's class", elem_id="label")
                button = gr.Button("Dehaze", variant="primary", elem_id="dehaze")
                gr.Examples([[str(path)] for path in EXAMPLES], inputs=photo)
            with gr.Column():
                comparison = gr.ImageSlider(label="hazy | dehazed", type="numpy", format="png", interactive=False,
                                            buttons=["fullscreen"], elem_id="comparison")
                status = gr.Markdown(elem_id="status")
                probabilities = gr.Label(label="CLIP's class probabilities", visible=first.clip is not None,
                                         elem_id="probabilities")
                download = gr.DownloadButton("Download the result (PNG)", visible=False, elem_id="download")
        checkpoint.change(lambda name: (gr.Radio(**prior_settings(models[name])),
                                        gr.Label(visible=models[name].clip is not None)),
                          checkpoint, [label, probabilities], api_visibility="private")

        def dehaze(upload: dict | None, name: str, choice: str | None, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
            # (Gradio fills `progress` in; track_tqdm shows the bar of Dehazer's tiles)
            message, result = run(models[name], upload, choice, max_pixels, lambda what: progress(0, desc=what))
            if result is None:
                return None, gr.DownloadButton(visible=False), None, message
            path = results.write(result, photo_name(upload))
            return (result.hazy, result.clear), gr.DownloadButton(value=str(path), visible=True), result.probabilities, message

        # one photo at a time: tiles hook the shared network's pooling layers (inference/tiling.py)
        # preprocess=False: the upload as it is (inference/webapp.py reads and checks it), no decoding by Gradio first
        button.click(dehaze, [photo, checkpoint, label], [comparison, download, probabilities, status], preprocess=False,
                     concurrency_limit=1, api_name="dehaze")
    return page


def prior_settings(model) -> dict:
    """The prior-class choice for `model`: CLIP's class first where CLIP is here; hidden for networks without prior."""
    from inference.webapp import CLIP_CHOICE

    choices = model.class_choices()
    value = CLIP_CHOICE if CLIP_CHOICE in choices else None
    why = model.clip_missing or "this network was trained with known classes"
    info = None if value or not choices else f"choose the photo's class ({why})"
    return {"choices": choices, "value": value, "visible": bool(choices), "info": info}


def photo_name(upload: dict) -> str:
    return upload.get("orig_name") or "pasted.png"


def run(model, upload: dict | None, choice: str | None, max_pixels: int, stage):
    """(Markdown for the page, the Result or None): what went wrong is the message, in one line."""
    from inference.webapp import CLIP_CHOICE, dehaze_photo, read_photo, report

    if upload is None:
        return "Upload a photo first.", None
    try:
        photo = read_photo(upload["path"], photo_name(upload), max_pixels)
        result = dehaze_photo(model, photo, None if choice in (None, CLIP_CHOICE) else choice, stage)
    except UserError as e:
        return f"**Not dehazed.** {e}", None
    return report(result), result


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        import gradio  # noqa: F401 — the optional extras; PyTorch loads after the arguments are parsed
    except ImportError:
        raise UserError("app.py needs the app's extras: bash scripts/setup_env.sh app") from None
    from inference.webapp import load_app_models

    models = load_app_models(args.checkpoint, args.model, device=args.device, tile=args.tile,
                             overlap=args.overlap)
    page = build_page(models, args.max_pixels)
    page.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD)


if __name__ == "__main__":
    run_reporting_user_errors(main)
