"""Inputs for timing predict.py on a large photo: a MixCL checkpoint (random weights, `labels` prior, so
that no CLIP weights are needed) and a hazy photo enlarged to the asked size.

    python benchmarks/prepare_predict_benchmark.py /tmp/predict_bench --model mixcl-s --size 4000x3000
    /usr/bin/time -v python predict.py --checkpoint /tmp/predict_bench/mixcl-s.pt --label outdoor \\
        /tmp/predict_bench/hazy_4000x3000.png --out /tmp/predict_bench/out

Speed and memory do not depend on the weights' values, only on the architecture and the photo's size.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data

from models import build_model
from utils.checkpoint import save_checkpoint
from utils.cli import script_parser, size_pair
from utils.image import read_image, write_image


def main(argv=None) -> None:
    parser = script_parser(__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="mixcl-s")
    parser.add_argument("--size", type=size_pair(form="WIDTHxHEIGHT"), default="4000x3000", help="WIDTHxHEIGHT of the photo")
    parser.add_argument("--photo", type=Path, help="the photo to enlarge (default: scikit-image's coffee)")
    args = parser.parse_args(argv)
    width, height = args.size
    prior = {"mode": "labels", "classes": ["indoor", "outdoor"]}
    model_args = {"num_labels": 2, "prior": prior} if args.model.startswith("mixcl") else {}
    model = build_model(args.model, **model_args)
    save_checkpoint(args.out / f"{args.model}.pt", {"model_name": args.model, "model_args": model_args,
                                                    "model": model.state_dict()})
    photo = read_image(args.photo) if args.photo else skimage.data.coffee() / np.float32(255)
    photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
    write_image(args.out / f"hazy_{width}x{height}.png", photo)
    print(f"wrote {args.out / f'{args.model}.pt'} and {args.out / f'hazy_{width}x{height}.png'}")


if __name__ == "__main__":
    main()
