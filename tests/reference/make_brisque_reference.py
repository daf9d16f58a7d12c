"""Regenerate brisque_package.json: BRISQUE of the shared real photos by the `brisque` package itself.

The reference is `brisque` 0.2.0's BRISQUE().score, run unchanged in a throwaway virtual environment with
the stack it still works on (NumPy 1.26; it fails on NumPy 2) and its compiled libsvm. Images are decoded
once, here, and handed over as .npy arrays so that both implementations score the same pixels.

    .venv/bin/python tests/reference/make_brisque_reference.py ../shared
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from utils.image import read_image  # noqa: E402

REFERENCE_STACK = ["brisque==0.2.0", "libsvm-official==3.37.0", "requests", "numpy==1.26.4", "scipy==1.13.1",
                   "scikit-image==0.24.0", "opencv-python-headless==4.10.0.84"]
SCORE = """
import json, sys
from pathlib import Path
import numpy as np
from brisque import BRISQUE
model = BRISQUE(url=False)
print(json.dumps({p.stem: float(model.score(np.load(p))) for p in sorted(Path(sys.argv[1]).glob('*.npy'))}))
"""


def shared_images(shared: Path) -> list[Path]:
    real = sorted(p for p in (shared / "data" / "real_hazy").iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp"))
    pairs = shared / "data" / "reside_samples"
    return real + sorted((pairs / "hazy").iterdir())[:5] + sorted((pairs / "GT").iterdir())[:5]


def key(path: Path) -> str:
    """real_hazy file name, or hazy/… and GT/… of reside_samples (as tests/test_no_reference.py reads them)."""
    return f"{path.parent.name}/{path.name}" if "reside_samples" in str(path) else path.name


def main(shared: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
        subprocess.run([str(tmp / "venv" / "bin" / "pip"), "install", "-q", *REFERENCE_STACK], check=True)
        names = {}
        for index, path in enumerate(shared_images(shared)):
            np.save(tmp / f"{index:03d}.npy", (read_image(path) * 255).round().astype(np.uint8))
            names[f"{index:03d}"] = key(path)
        result = subprocess.run([str(tmp / "venv" / "bin" / "python"), "-W", "ignore", "-c", SCORE, str(tmp)],
                                check=True, capture_output=True, text=True)
        scores = json.loads(result.stdout)
    values = {names[index]: score for index, score in scores.items()}
    (Path(__file__).parent / "brisque_package.json").write_text(json.dumps(values, indent=1) + "\n")
    print(f"{len(values)} reference scores written")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared"))
