"""The model card (README.md) of an exported model folder: what the network is, how it was trained, what it scored,
how to load it, what to cite, under which licence."""
from __future__ import annotations

from typing import Any

FAMILIES = {
    "mixcl": ("MixCLDehazeNet: a MixDehazeNet encoder-decoder conditioned on a CLIP zero-shot indoor/outdoor prior, "
              "whose class text feature is fused with the image by text-image attention "
              "(https://github.com/DanielHo-BS/MixCLDehazeNet).", ("mixdehazenet", "mixcldehazenet")),
    "mixdehazenet": ("MixDehazeNet: an encoder-decoder of mix structure blocks (multi-scale parallel large "
                     "convolution kernels and enhanced parallel attention), Lu et al., IJCNN 2024 "
                     "(https://github.com/AmeryXiong/MixDehazeNet).", ("mixdehazenet",)),
    "ka-net": ("KA-Net: real-world dehazing with a transformer encoder, a localization-and-removal bottleneck and a "
               "task-query decoder, Feng et al., IEEE TPAMI 2024 (https://github.com/fyxnl/KA_Net).", ("kanet",)),
}
CITATIONS = {
    "mixdehazenet": """@inproceedings{lu2024mixdehazenet,
  title     = {MixDehazeNet: Mix Structure Block For Image Dehazing Network},
  author    = {Lu, LiPing and Xiong, Qian and Xu, BingRong and Chu, DuanFeng},
  booktitle = {International Joint Conference on Neural Networks (IJCNN)},
  year      = {2024},
  doi       = {10.1109/IJCNN60899.2024.10651326}
}""",
    "mixcldehazenet": """@misc{mixcldehazenet,
  title        = {{MixCLDehazeNet}},
  author       = {{DanielHo-BS}},
  howpublished = {\\url{https://github.com/DanielHo-BS/MixCLDehazeNet}}
}""",
    "kanet": """@article{feng2024kanet,
  title   = {Advancing Real-World Image Dehazing: Perspective, Modules, and Training},
  author  = {Feng, Yuxin and Ma, Long and Meng, Xiaozhe and Zhou, Fan and Liu, Risheng and Su, Zhuo},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year    = {2024},
  doi     = {10.1109/TPAMI.2024.3416731}
}""",
}


def family(name: str) -> str:
    return next(prefix for prefix in ("mixcl", "mixdehazenet", "ka-net") if name.startswith(prefix))


def results_table(results: dict[str, Any]) -> list[str]:
    """test.py's summary.json as a Markdown table: all images, then each domain."""
    rows = [("all", results)] + list(results.get("by_domain", {}).items())
    lines = [f"Scored by test.py on `{results['data']}` (full-resolution images, batch 1; PSNR over all RGB values, "
             f"SSIM after the protocol's average pooling):", "",
             "| images | count | PSNR (dB) | SSIM | hazy input PSNR (dB) | hazy input SSIM |", "|---|---|---|---|---|---|"]
    lines += [f"| {subset} | {r['images']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['hazy_psnr']:.2f} | {r['hazy_ssim']:.4f} |"
              for subset, r in rows]
    return lines


def recipe_lines(config: dict[str, Any], prior: dict[str, Any] | None) -> list[str]:
    """The training recipe of a checkpoint's config (and the prior the network was trained with), in a few lines."""
    data, train = config["data"], config["train"]
    where = "synthetic haze over scikit-image's photographs" if data["dataset"] == "synthetic" else f"`{data['root']}`"
    losses = " + ".join(f"{t['weight']:g} × {t['name']}{' ' + str(t['args']) if t['args'] else ''}" for t in config["loss"])
    return [f"- data: {where}, {data['crop_size']}×{data['crop_size']} random crops, validation `{data['validation']}`",
            f"- {train['epochs']} epochs, batch {train['batch_size']}, AdamW lr {train['lr']:g} (weight decay "
            f"{train['weight_decay']:g}), cosine to lr × {train['min_lr_ratio']:g}, amp {train['amp']}",
            f"- loss: {losses}",
            f"- language prior: {prior['mode'] if prior else 'none'}"]


def prior_lines(prior: dict[str, Any] | None) -> list[str]:
    if not prior:
        return []
    if prior["mode"] == "labels":
        return [f"The network takes a class per photo, one of {prior['classes']} (`label=` in Python, `--label` in the "
                f"scripts)."]
    features = ("its class text features are stored in config.json" if prior.get("text_features")
                else "no class text features are stored")
    return [f"The network is conditioned on CLIP's zero-shot class of each photo ({prior['clip_model']}, "
            f"`{prior['clip_pretrained']}` weights, prompts \"{prior['template']}\" for {prior['classes']}): CLIP runs "
            f"on each photo unless a class is given (`label=`); {features}."]


def model_card(name: str, location: str, config: dict | None, results: dict | None, prior: dict | None) -> str:
    """README.md of a model folder. `location`: the folder or Hub repository users load it from."""
    description, citations = FAMILIES[family(name)]
    lines = ["---", f"license: {'mit' if config else 'other'}", "library_name: pytorch", "pipeline_tag: image-to-image",
             f"tags: [image-dehazing, {family(name)}]", "---", "", f"# {name}", "", description, ""]
    lines += prior_lines(prior) + ([""] if prior else [])
    lines += ["## Results", ""] + (results_table(results) if results else ["No test results were exported with it."])
    lines += ["", "## Training", ""] + (recipe_lines(config, prior) if config else
                                         ["Weights converted from a checkpoint of the authors' code; see its repository."])
    lines += ["", "## Use", "", "With the code that exported this folder installed (its `models` registry builds the "
              "network `config.json` names):", "",
              "```python", "from models import from_pretrained", "from inference import dehaze", "",
              f'net = from_pretrained("{location}")', 'clear = dehaze(net, photo)  # H×W×3 uint8 array or PIL image, any size',
              "```", "", "```bash", f"python predict.py --checkpoint {location} photos/",
              f"python test.py --checkpoint {location} --data data/RESIDE-6K/test", "```", "",
              "## Citation", "", "```bibtex", *(CITATIONS[c] for c in citations), "```", "",
              "## Licence", "", "MIT, as the code that exported it" + (
                  "." if config else "; weights converted from a checkpoint of the authors' code carry its terms.")]
    return "\n".join(lines) + "\n"
