"""Command-line entry points report a user's mistake (bad config, broken data, missing weights) as one
clear message and exit status 1, not as a traceback."""
from __future__ import annotations

from datasets.paired import DatasetError
from models.weights import MissingWeightsError
from utils.config import ConfigError

USER_ERRORS = (ConfigError, DatasetError, MissingWeightsError, FileExistsError, FileNotFoundError)


def run_reporting_user_errors(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except USER_ERRORS as e:
        raise SystemExit(f"error: {e}") from None
