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


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never download weights, even on a connected machine: every weights server looks unreachable
    (a test that simulates a connection patches these back)."""
    monkeypatch.setattr("models.weights.server_reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr("models.clip_prior.server_reachable", lambda url, timeout=3.0: False)


@pytest.fixture(scope="session")
def real_hazy() -> Path:
    return _require_shared("data/real_hazy")
