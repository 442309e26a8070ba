"""Where a run reports as it trains, besides its metrics.csv: TensorBoard, MLflow,
Weights & Biases, several of them, or nowhere (conf/logger/).

    base.py         what a logger is and is given; trackers.json, the tracker runs a
                    run folder logs to, so that a resumed run continues them
    tensorboard.py  event files in the run folder (the default)
    mlflow.py       an MLflow run per run folder, an experiment per sweep
    wandb.py        a W&B run per run folder (offline unless asked), a group per sweep
    many.py         several loggers at once

The `_target_` of each preset names the class as `flowers_sweep.loggers.<Class>`.
"""

from flowers_sweep.loggers.base import (
    FINAL_PREFIX,
    LOGGER_ARGUMENTS,
    NoLogger,
    RunLogger,
    build_logger,
)
from flowers_sweep.loggers.many import ManyLoggers
from flowers_sweep.loggers.mlflow import MLflowLogger
from flowers_sweep.loggers.tensorboard import TensorBoardLogger, hparam_value
from flowers_sweep.loggers.wandb import WandbLogger

__all__ = [
    "FINAL_PREFIX",
    "LOGGER_ARGUMENTS",
    "MLflowLogger",
    "ManyLoggers",
    "NoLogger",
    "RunLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "build_logger",
    "hparam_value",
]
