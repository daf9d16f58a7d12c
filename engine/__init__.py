"""Training and evaluation machinery: the steps train.py and test.py are made of.

    process      device, rank and world size, seeds, autocast precision
    checks       does a config fit the registered models, losses and priors
    data         the datasets of a run, checked up front, with seeded loaders
    training     a run's state and its steps: build_run, train_step, validate, save_checkpoints, restore_run
    evaluation   the protocol loop (PSNR/SSIM per image) shared by validation and test.py
    log          TensorBoard and console reporting of a run
"""
from .checks import check_config
from .data import TrainingData, prepare_data
from .evaluation import evaluate, model_inputs, summarize, summarize_by_domain
from .log import TrainingLog
from .process import Process, finish_process, start_process
from .training import (
                       RESUMABLE_CHANGES,
                       TrainingDiverged,
                       TrainingRun,
                       build_run,
                       restarted_after_checkpoint,
                       restore_run,
                       save_checkpoints,
                       train_step,
                       validate,
)

__all__ = ["RESUMABLE_CHANGES", "Process", "TrainingData", "TrainingDiverged", "TrainingLog", "TrainingRun",
           "build_run", "check_config", "evaluate", "finish_process", "model_inputs", "prepare_data",
           "restarted_after_checkpoint", "restore_run", "save_checkpoints", "start_process", "summarize",
           "summarize_by_domain", "train_step", "validate"]
