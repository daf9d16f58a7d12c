"""Models of this project. `build_model(name, checkpoint=None)` is the entry point."""
from . import mixdehazenet  # noqa: F401  (registers the MixDehazeNet variants)
from .build import build_model, load_model, load_weights
from .registry import list_models, register_model

__all__ = ["build_model", "list_models", "load_model", "load_weights", "register_model"]
