"""Checks on the composed config, run before any data is touched.

Hydra already rejects unknown keys and unknown group options; these checks catch bad
values, each with a one-line message naming the key, the value and what is allowed.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from flowers_sweep.config import targets
from flowers_sweep.data import PIPELINES, class_count, is_flowers102
from flowers_sweep.data.augment import check_augment
from flowers_sweep.data.loaders import worker_start_method
from flowers_sweep.data.sources import OWN as OWN_DATA
from flowers_sweep.data.sources import SUPPLIED as SUPPLIED_DATA
from flowers_sweep.errors import ConfigError
from flowers_sweep.loggers.base import LOGGER_ARGUMENTS
from flowers_sweep.models import OWN_KEYS, SUPPLIED, build_on_meta
from flowers_sweep.models.activations import ACTIVATIONS
from flowers_sweep.models.activations import unknown as unknown_activation
from flowers_sweep.models.hub import NATIVE
from flowers_sweep.models.weights import resolve_weights_file
from flowers_sweep.optim import OWN_KEYS as OPTIMIZER_OWN_KEYS
from flowers_sweep.optim import build_optimizer, build_scheduler
from flowers_sweep.record.labels import model_label
from flowers_sweep.record.runrecord import FINAL_METRICS, KEEP_WEIGHTS
from flowers_sweep.trainer.early_stop import EARLY_STOP_METRICS

# What a run can return to a sweeper: the numbers its result.json records.
# A tag every tracker takes: MLflow's tag keys (letters, digits, _ - . : / and spaces:
# mlflow/utils/validation.py), W&B's tags (at most 64 characters).
TAG = re.compile(r"^[\w\-.:/ ]{1,64}$")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _choice(cfg: DictConfig, key: str, choices: tuple[str, ...] | list[str]) -> None:
    value = cfg.get(key.split(".")[-1])
    if value not in choices:
        _fail(key, value, f"allowed values are {', '.join(choices)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """An int or a finite float (an override's inf and nan are floats; inf passes `> 0`)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(key: str, value: Any, ok: Callable[[Any], bool], allowed: str) -> None:
    if not ok(value):
        _fail(key, value, allowed)


def validate_model(model: DictConfig, dataset: DictConfig) -> None:
    """The node's target and keys, its activation, its weights file; then a build on the
    meta device (no memory, no data), so what the constructor refuses (a hub model's
    name, a block count) is refused now."""
    targets.check("model", model, supplied=SUPPLIED, own=OWN_KEYS)
    activation = model.get("activation")
    if targets.is_node(activation):
        targets.check("model.activation", activation)
    elif isinstance(activation, str) and activation not in (*ACTIVATIONS, NATIVE):
        raise unknown_activation(activation, list(ACTIVATIONS))
    weights = model.get("weights")
    _check(
        "model.weights",
        weights,
        lambda v: v is None or (isinstance(v, str) and v != ""),
        "must be null, a state_dict file, or a torchvision weights name (IMAGENET1K_V1)",
    )
    if weights:
        resolve_weights_file(weights, model_label(model))  # a missing file fails before any data
    try:
        build_on_meta(model, class_count(dataset), dataset.image_size)
    except ConfigError:
        raise
    except Exception as exc:
        raise targets.constructor_error("model", model, exc) from None


def validate_trainer(trainer: DictConfig) -> None:
    _check(
        "trainer.epochs",
        trainer.epochs,
        lambda v: _is_int(v) and v >= 1,
        "must be an integer >= 1",
    )
    _check(
        "trainer.batch_size",
        trainer.batch_size,
        lambda v: _is_int(v) and v >= 1,
        "must be an integer >= 1",
    )
    _check(
        "trainer.num_workers",
        trainer.num_workers,
        lambda v: v == "auto" or (_is_int(v) and v >= 0),
        "must be auto or an integer >= 0",
    )
    _check(
        "trainer.device",
        trainer.device,
        lambda v: isinstance(v, str) and DEVICE_PATTERN.match(v),
        "allowed values are auto, cpu, cuda, cuda:N, mps",
    )
    _check(
        "trainer.deterministic",
        trainer.deterministic,
        lambda v: isinstance(v, bool),
        "must be true or false",
    )


def validate_recipe(trainer: DictConfig) -> None:
    """The training recipe's opt-in keys (docs/recipes.md)."""
    _check(
        "trainer.label_smoothing",
        trainer.get("label_smoothing", 0.0),
        lambda v: _is_number(v) and 0 <= v < 1,
        "must be a number in [0, 1)",
    )
    _check(
        "trainer.clip_grad_norm",
        trainer.get("clip_grad_norm"),
        lambda v: v is None or (_is_number(v) and v > 0),
        "must be null (no clipping) or a number > 0",
    )
    _check(
        "trainer.accumulate",
        trainer.get("accumulate", 1),
        lambda v: _is_int(v) and v >= 1,
        "must be an integer >= 1 (batches per optimizer step)",
    )
    _check(
        "trainer.early_stop_patience",
        trainer.get("early_stop_patience"),
        lambda v: v is None or (_is_int(v) and v >= 1),
        "must be null (no early stopping) or an integer >= 1 (epochs)",
    )
    _check(
        "trainer.early_stop_metric",
        trainer.get("early_stop_metric", "val_acc"),
        lambda v: v in EARLY_STOP_METRICS,
        f"allowed values are {', '.join(EARLY_STOP_METRICS)}",
    )
    _check(
        "trainer.ema_decay",
        trainer.get("ema_decay"),
        lambda v: v is None or (_is_number(v) and 0 < v < 1),
        "must be null (no EMA) or a number in (0, 1)",
    )
    _check(
        "trainer.ema_every",
        trainer.get("ema_every", 1),
        lambda v: _is_int(v) and v >= 1,
        "must be an integer >= 1 (optimizer steps between EMA updates)",
    )
    _check(
        "trainer.ema_warmup",
        trainer.get("ema_warmup", 0),
        lambda v: _is_int(v) and v >= 0,
        "must be an integer >= 0 (epochs)",
    )


def validate_runtime(trainer: DictConfig, cfg: DictConfig) -> None:
    _check(
        "trainer.threads",
        trainer.threads,
        lambda v: v == "auto" or (_is_int(v) and v >= 1),
        "must be auto or an integer >= 1",
    )
    _check(
        "trainer.precision",
        trainer.precision,
        lambda v: str(v) in ("auto", "32", "bf16", "fp16"),
        "allowed values are auto, 32, bf16, fp16",
    )
    _check(
        "trainer.channels_last",
        trainer.channels_last,
        lambda v: v == "auto" or isinstance(v, bool),
        "must be auto, true or false",
    )
    _check(
        "trainer.checkpoint_every_epochs",
        trainer.checkpoint_every_epochs,
        lambda v: v is None or (_is_int(v) and v >= 1),
        "must be null or an integer >= 1",
    )
    _check(
        "trainer.checkpoint_every_s",
        trainer.checkpoint_every_s,
        lambda v: v is None or (_is_number(v) and v >= 0),
        "must be null or a number of seconds >= 0",
    )
    _check(
        "trainer.keep_weights",
        trainer.keep_weights,
        lambda v: v in KEEP_WEIGHTS,
        f"allowed values are {', '.join(KEEP_WEIGHTS)}",
    )
    _check(
        "trainer.keep_weights",
        trainer.keep_weights,
        lambda v: "ema" not in str(v) or trainer.get("ema_decay") is not None,
        "it keeps the model EMA's weights: set trainer.ema_decay too (a number in (0, 1))",
    )
    _check(
        "trainer.jobs_per_gpu",
        trainer.jobs_per_gpu,
        lambda v: _is_int(v) and v >= 1,
        "must be an integer >= 1",
    )
    flags = (
        ("trainer.keep_checkpoint", trainer.keep_checkpoint),
        ("trainer.compile", trainer.compile),
        ("resume", cfg.resume),
    )
    for key, value in flags:
        _check(key, value, lambda v: isinstance(v, bool), "must be true or false")


def validate_optim(optimizer: DictConfig, scheduler: DictConfig, epochs: int) -> None:
    """Both nodes' targets and keys, the numbers the presets hold, then both built for
    one dummy parameter, so a value torch refuses (a negative eps) is refused now."""
    targets.check("optimizer", optimizer, positional=1, own=OPTIMIZER_OWN_KEYS)
    if "lr" in optimizer:
        _check("optimizer.lr", optimizer.lr, lambda v: _is_number(v) and v > 0, "must be > 0")
    _check(
        "optimizer.norm_weight_decay",
        optimizer.get("norm_weight_decay"),
        lambda v: v is None or (_is_number(v) and v >= 0),
        "must be null (the optimizer's weight_decay for all) or a number >= 0",
    )
    targets.check("scheduler", scheduler, positional=1, supplied=("epochs",))
    if "milestones" in scheduler:
        milestones = scheduler.get("milestones")
        milestones = list(milestones) if milestones is not None else None
        _check(
            "scheduler.milestones",
            milestones,
            lambda v: (
                v is not None
                and (
                    all(_is_int(x) and x >= 1 for x in v)
                    or all(isinstance(x, float) and 0 < x < 1 for x in v)
                )
                and all(earlier < later for earlier, later in itertools.pairwise(v))
            ),
            "must be strictly increasing epochs >= 1, e.g. [40, 70], or fractions of "
            "trainer.epochs in (0, 1), e.g. [0.4, 0.7]",
        )
    if "gamma" in scheduler:
        _check(
            "scheduler.gamma",
            scheduler.gamma,
            lambda v: _is_number(v) and 0 < v <= 1,
            "must be in (0, 1]",
        )
    probe = torch.nn.Linear(1, 1)  # a weight and a bias: both parameter groups
    key, node = "optimizer", optimizer
    try:
        built = build_optimizer(probe, optimizer)
        key, node = "scheduler", scheduler
        schedule = build_scheduler(built, scheduler, epochs)
    except ConfigError:
        raise
    except Exception as exc:
        raise targets.constructor_error(key, node, exc) from None
    needs = [
        p.name
        for p in inspect.signature(schedule.step).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if needs:  # ReduceLROnPlateau's step(metrics)
        raise ConfigError(
            f"scheduler._target_={scheduler._target_!r} is invalid: its step() needs "
            f"{', '.join(needs)}; a schedule here steps once per epoch with no arguments"
        )


def validate_workers(dataset: DictConfig, trainer: DictConfig) -> None:
    """A pipeline that cannot start its workers in this job's process fails here, early."""
    if dataset.get("pipeline") == "reference" and trainer.num_workers != 0:
        worker_start_method()  # raises where no start method works (joblib off Linux)


def _is_stats(v: Any) -> bool:
    return v == "auto" or (
        isinstance(v, (list, tuple, ListConfig)) and len(v) == 3 and all(_is_number(x) for x in v)
    )


def validate_data(dataset: DictConfig, augment: DictConfig) -> None:
    """The dataset node's target and keys, its constructor's own checks (no image is
    read), the class count, the framework's keys; then the augmentation's keys."""
    targets.check("dataset", dataset, supplied=SUPPLIED_DATA, own=OWN_DATA)
    _check(
        "dataset.image_size",
        dataset.get("image_size"),
        lambda v: _is_int(v) and v >= 16,
        "must be an integer >= 16 (the side of the square images the model sees, px)",
    )
    for key in ("mean", "std"):
        _check(
            f"dataset.{key}",
            dataset.get(key),
            _is_stats,
            "three per-channel numbers (R, G, B on the 0-1 scale), or auto (from the "
            "training split)",
        )
    if dataset.get("std") != "auto" and isinstance(dataset.get("std"), (list, ListConfig)):
        _check("dataset.std", dataset.std, lambda v: all(x > 0 for x in v), "must be > 0")
    if "pipeline" in dataset:
        _choice(dataset, "dataset.pipeline", PIPELINES)
    if dataset.get("pipeline") == "reference" and not is_flowers102(dataset):
        _fail(
            "dataset.pipeline",
            "reference",
            "the report's per-image pipeline exists for dataset=flowers102 only",
        )
    validate_folds(dataset)
    class_count(dataset)  # builds the source (no image read): its own checks run here
    check_augment(augment)


def validate_folds(dataset: DictConfig) -> None:
    """`dataset.folds` (null, or K >= 2) and `dataset.fold` (0..K-1; 0 while folds is
    null), read with those defaults where a node has no such key (data/folds.py)."""
    folds, fold = dataset.get("folds"), dataset.get("fold", 0)
    _check(
        "dataset.folds",
        folds,
        lambda v: v is None or (_is_int(v) and v >= 2),
        "must be null (no cross-validation) or an integer >= 2 (the number of folds)",
    )
    if folds is None:
        _check(
            "dataset.fold",
            fold,
            lambda v: _is_int(v) and v == 0,
            "must be 0 while dataset.folds is null (cross-validation off); set "
            "dataset.folds=K to validate on fold 0..K-1",
        )
        return
    _check(
        "dataset.fold",
        fold,
        lambda v: _is_int(v) and 0 <= v < folds,
        f"must be an integer from 0 to {folds - 1} (dataset.folds={folds})",
    )
    if dataset.get("pipeline") == "reference":
        _fail(
            "dataset.folds",
            folds,
            "the report's per-image pipeline (dataset.pipeline=reference) reads the "
            "official splits as they are; use dataset.pipeline=cached",
        )


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first bad value."""
    validate_data(cfg.dataset, cfg.augment)  # first: the model needs the class count
    validate_model(cfg.model, cfg.dataset)
    validate_trainer(cfg.trainer)
    validate_recipe(cfg.trainer)
    validate_runtime(cfg.trainer, cfg)
    validate_optim(cfg.optimizer, cfg.scheduler, cfg.trainer.epochs)
    validate_workers(cfg.dataset, cfg.trainer)
    _check("seed", cfg.seed, _is_int, "must be an integer")
    if cfg.get("logger") is not None:
        logger = targets.check("logger", cfg.logger, supplied=LOGGER_ARGUMENTS)
        check_node = getattr(logger, "check_node", None)  # its own keys; an extra installed
        if callable(check_node):
            check_node(cfg.logger, "logger")
    tags = cfg.get("tags")
    _check(
        "tags",
        OmegaConf.to_container(tags) if isinstance(tags, ListConfig) else tags,
        lambda v: (
            isinstance(v, list)
            and all(isinstance(t, (str, int, float)) and TAG.match(str(t)) for t in v)
        ),
        "must be a list of labels of 1 to 64 letters, digits, _ - . : / or spaces, "
        "e.g. tags=[baseline,v2] (what every tracker takes)",
    )
    _check(
        "fail_fast",
        cfg.get("fail_fast"),
        lambda v: v is None or (_is_int(v) and v >= 1),
        "must be null or an integer >= 1 (failed jobs with the same reason)",
    )
    _check(
        "optimized_metric",
        cfg.get("optimized_metric"),
        lambda v: v in FINAL_METRICS,
        f"allowed values are {', '.join(FINAL_METRICS)} (what a completed run records)",
    )
