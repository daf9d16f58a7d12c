"""Models of this project. `build_model(name, checkpoint=None)` is the entry point."""
from . import kanet, mixcl, mixdehazenet  # noqa: F401  (register their variants)
from .build import build_model, load_model, load_weights
from .registry import list_models, model_class, register_model

__all__ = ["build_model", "list_models", "load_model", "load_weights", "model_class", "register_model"]
