import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _require_shared(what: str) -> Path:
    path = SHARED / what
    if not path.exists():
        message = (f"needs {path}: the reference material (SPEC, vectors, sample data) that lives beside the "
                   f"checkout at ../shared; absent on this machine")
        if os.environ.get("MIXCL_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return _require_shared("vectors")


@pytest.fixture(scope="session")
def reside_samples() -> Path:
    return _require_shared("data/reside_samples")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def real_hazy() -> Path:
    return _require_shared("data/real_hazy")
