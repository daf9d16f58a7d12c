"""Does a config fit what is registered here (models, losses, priors, the haze model)? Checked before a run
touches any data, with every problem named; utils/config.py has already checked types and value ranges."""
from __future__ import annotations

import inspect

from datasets.haze_model import HazeModel
from losses import LOSSES
from models import build_model, list_models, model_class
from prior import PRIOR_MODES
from utils.config import Config, ConfigError


def unknown_arguments(cls: type, arguments: dict) -> list[str]:
    """Keys of `arguments` that cls.__init__ does not take."""
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    return sorted(set(arguments) - set(parameters) - {"self"})


def model_problems(config: Config) -> list[str]:
    """The model's name and arguments, and whether it fits the losses and the prior mode."""
    name = config.model.replace("_", "-")
    if name not in list_models():
        return [f"model {config.model!r} is not registered ({', '.join(list_models())})"]
    network, problems = model_class(name), []
    if unknown := unknown_arguments(network, config.model_args):
        problems.append(f"model_args {', '.join(unknown)}: not arguments of {network.__name__} "
                        f"({', '.join(p for p in inspect.signature(network.__init__).parameters if p != 'self')})")
    else:
        try:  # values of the wrong kind fail here, before the data is touched
            build_model(name, **config.model_args)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            problems.append(f"model_args {config.model_args}: {network.__name__} cannot be built with them ({e})")
    needs_feature = [t.name for t in config.loss if LOSSES.get(t.name) is not None and LOSSES[t.name].needs_global_feature]
    if needs_feature and not network.returns_global_feature:
        problems.append(f"loss {', '.join(needs_feature)} needs the network's global feature, which model "
                        f"{config.model!r} does not return (KA-Net models do)")
    if network.takes_prior != (config.prior.mode != "none"):
        problems.append(f"model {config.model!r} does not fit prior.mode {config.prior.mode!r}: "
                        "MixCL models need a prior, the others take none")
    return problems


def loss_problems(config: Config) -> list[str]:
    problems = []
    for term in config.loss:
        if term.name not in LOSSES:
            problems.append(f"loss {term.name!r} is unknown; available: {', '.join(sorted(LOSSES))}")
        elif unknown := unknown_arguments(LOSSES[term.name], term.args):
            problems.append(f"loss {term.name} args {', '.join(unknown)}: not arguments of {LOSSES[term.name].__name__}")
    return problems


def check_config(config: Config) -> None:
    """Raise ConfigError listing every way `config` does not fit the registered models, losses and priors."""
    problems = model_problems(config) + loss_problems(config)
    if config.prior.mode not in PRIOR_MODES:
        problems.append(f"prior.mode must be one of {', '.join(PRIOR_MODES)}, got {config.prior.mode!r}")
    try:
        HazeModel(**config.data.haze)
    except (TypeError, ValueError) as e:
        problems.append(f"data.haze: {e}")
    if problems:
        raise ConfigError("; ".join(problems))
