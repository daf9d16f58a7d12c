"""Model registry: variant constructors register under their name (`mixdehazenet_t` → "mixdehazenet-t")."""
from __future__ import annotations

import typing
from collections.abc import Callable

from utils.checkpoint import CheckpointError

from .interface import DehazingNetwork

_MODELS: dict[str, Callable[..., DehazingNetwork]] = {}


def canonical_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_model(constructor: Callable[..., DehazingNetwork]) -> Callable[..., DehazingNetwork]:
    name = canonical_name(constructor.__name__)
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = constructor
    return constructor


def list_models() -> list[str]:
    return sorted(_MODELS)


def _constructor(name: str) -> Callable[..., DehazingNetwork]:
    key = canonical_name(name)
    if key not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[key]


def model_class(name: str) -> type[DehazingNetwork]:
    """The class a registered constructor returns (read from its return annotation), without building it."""
    return typing.get_type_hints(_constructor(name))["return"]


def stored_model(name, arguments, source) -> tuple[str, dict]:
    """A network description read from a file (a registered name and constructor arguments), checked; a
    CheckpointError names `source` otherwise."""
    if not isinstance(name, str) or canonical_name(name) not in _MODELS:
        raise CheckpointError(f"{source} names no model this project knows (model_name {name!r}; registered: "
                              f"{', '.join(list_models())})")
    if not isinstance(arguments, dict):
        raise CheckpointError(f"{source}: its model_args are a {type(arguments).__name__}, not a mapping")
    return name, arguments


def create_model(name: str, **kwargs) -> DehazingNetwork:
    key = canonical_name(name)
    model = _constructor(name)(**kwargs)
    model.model_name = key  # lets scripts and checkpoints say what a network is
    return model
