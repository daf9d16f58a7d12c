"""Models of this project. `build_model(name, checkpoint=None)` and `load_model(checkpoint)` are the entry points;
every network is a `DehazingNetwork` (models/interface.py)."""
from . import kanet, mixcl, mixdehazenet  # noqa: F401  (register their variants)
from .build import build_model, from_pretrained, load_model, load_weights
from .interface import DehazingNetwork
from .pretrained import save_pretrained
from .registry import list_models, model_class, register_model

__all__ = ["DehazingNetwork", "build_model", "from_pretrained", "list_models", "load_model", "load_weights",
           "model_class", "register_model", "save_pretrained"]
