"""A run's set-up: where it computes, its data, model, optimizer and schedule, and where
it resumes from, gathered in one `RunState` that the loop, the checkpoints, `evaluate`
and the benchmarks share instead of each rebuilding it.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flowers_sweep.data import build_loaders, class_count
from flowers_sweep.data.loaders import Loaders
from flowers_sweep.errors import RunFolderMismatchError
from flowers_sweep.models import build_model, build_on_meta, convolutional, count_parameters
from flowers_sweep.models.weights import load_weights
from flowers_sweep.optim import build_optimizer, build_scheduler
from flowers_sweep.record.labels import model_label
from flowers_sweep.record.runfolder import start_over_hint
from flowers_sweep.record.runrecord import CHECKPOINT_FILE, read_data, write_data
from flowers_sweep.trainer.checkpoint import TrainState, load_checkpoint
from flowers_sweep.trainer.ema import build_ema
from flowers_sweep.trainer.hardware import (
    autocast,
    grad_scaler,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
)

log = logging.getLogger("flowers_sweep.train")


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; `deterministic` picks deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # use_deterministic_algorithms(True) also fills every new tensor with NaN (or the
    # largest integer) so that reads of uninitialised memory show. Results do not depend
    # on it, and it costs a fill kernel per allocation (798 aten::fill_ per ResNet-18 step
    # on the CPU against 9); PyTorch's docs on torch.utils.deterministic advise turning it
    # off where performance matters.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = not deterministic


@dataclass
class Placement:
    """Where a run computes and in what number format."""

    device: torch.device
    dtype: torch.dtype | None = None  # autocast's dtype (bf16); None: fp32 throughout
    layout: torch.memory_format = torch.contiguous_format  # of images and weights

    @property
    def cast(self) -> Callable[[], AbstractContextManager]:
        return autocast(self.device, self.dtype)


def place(
    cfg: Any, device: torch.device | str | None = None, num_classes: int | None = None
) -> Placement:
    """The run's device (`device`, else trainer.device), precision and memory layout;
    `num_classes` (None: counted from the dataset node) sizes the model the layout is
    decided on, so a finished run is placed without its data (evaluate, predict).

    On a GPU the device is also made current, so that everything implicit (streams,
    pinned memory, events, RNG) lands on the run's GPU and no context is made on GPU 0.
    """
    trainer = cfg.trainer
    if not isinstance(device, torch.device):
        device = resolve_device(trainer.device if device is None else device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    channels_last = resolve_channels_last(
        trainer.channels_last, lambda: meta_convolutional(cfg, num_classes)
    )
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return Placement(device, resolve_precision(trainer.precision, device), layout)


def meta_convolutional(cfg: Any, num_classes: int | None = None) -> bool:
    """models.convolutional for the config's model, built on the meta device: shapes
    without memory or initialisation, so deciding costs a fraction of a build."""
    count = class_count(cfg.dataset) if num_classes is None else num_classes
    return convolutional(build_on_meta(cfg.model, count, cfg.dataset.image_size))


def placed_model(cfg: Any, num_classes: int, where: Placement, weights: Any = None) -> nn.Module:
    """The config's model with `weights` (a state_dict, or model.weights' name or file;
    None: a fresh initialisation), on the run's device in its layout."""
    model = build_model(cfg.model, num_classes, cfg.dataset.image_size)
    if isinstance(weights, dict):
        model.load_state_dict(weights)
    elif weights:
        load_weights(model, weights, model_label(cfg.model))
    return model.to(where.device, memory_format=where.layout)


@dataclass
class RunState(TrainState):
    """Everything one run trains with. `step_model` is what batches go through (the
    model, compiled or not); `model` keeps the plain state_dict keys."""

    cast: Callable[[], AbstractContextManager] = nullcontext
    step_model: nn.Module | None = None
    data: Loaders | None = None
    placement: Placement | None = None
    cfg: Any = None
    run_dir: Path | None = None
    resumed: bool = False
    params: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.step_model is None:
            self.step_model = self.model
        self.params = count_parameters(self.model)


def build_state(
    cfg: Any, where: Placement, num_classes: int, weights: Any = None, compile: bool | None = None
) -> RunState:
    """Model (with `weights`, see placed_model), optimizer, schedule, data generator and
    the model's EMA (trainer.ema_decay, ema.py) for the config, placed; compiled when
    `compile` (None: trainer.compile). Draws the initial weights from torch's global
    generator: seed first."""
    compile = bool(cfg.trainer.compile) if compile is None else compile
    model = placed_model(cfg, num_classes, where, weights)
    if compile:
        torch._dynamo.reset()  # a process running many jobs (joblib) compiles each afresh
    optimizer = build_optimizer(model, cfg.optimizer)  # param groups: optim.py
    return RunState(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.scheduler, cfg.trainer.epochs),
        gen=torch.Generator().manual_seed(cfg.seed),  # shuffling and augmentation
        device=where.device,
        cast=where.cast,
        step_model=torch.compile(model) if compile else model,
        placement=where,
        cfg=cfg,
        scaler=grad_scaler(where.device, where.dtype),
        ema=build_ema(model, cfg.trainer),  # None without trainer.ema_decay
    )


def set_up(cfg: Any, run_dir: Path | None, device: torch.device | None = None) -> RunState:
    """Seed, place, load the data, build model, optimizer and schedule, and resume from
    run_dir's checkpoint when it has one (run_dir None: a fresh state, nothing read).

    Raises ConfigError for values that cannot work here, DatasetNotFoundError and
    CheckpointError with the way out in the message.
    """
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    where = place(cfg, device)
    data = build_loaders(cfg, where.device, where.layout)
    ckpt = None if run_dir is None else Path(run_dir) / CHECKPOINT_FILE
    resuming = ckpt is not None and ckpt.is_file()
    # A resume has its own weights; model.weights only starts a run.
    weights = None if resuming else cfg.model.get("weights")
    state = build_state(cfg, where, data.num_classes, weights)
    state.data, state.resumed = data, resuming
    state.run_dir = None if run_dir is None else Path(run_dir)
    if resuming:
        same_classes(run_dir, data.class_names)
        load_checkpoint(ckpt, state)
    if run_dir is not None:  # what evaluate and predict need to use the model without data
        write_data(run_dir, data.class_names, data.mean, data.std)
    return state


def same_classes(run_dir: Path, names: list[str]) -> None:
    """Refuse to resume a run on data whose classes are not the ones it started with.

    Raises:
        RunFolderMismatchError: the classes differ from the run folder's data.json.
    """
    recorded = (read_data(run_dir) or {}).get("class_names")
    if recorded is not None and list(recorded) != list(names):
        gone = [n for n in recorded if n not in names]
        new = [n for n in names if n not in recorded]
        what = f"new: {', '.join(new[:3])}" if new else f"gone: {', '.join(gone[:3])}"
        if not new and not gone:
            what = "the same names in another order"
        raise RunFolderMismatchError(
            f"{run_dir} started on {len(recorded)} classes, the data now has {len(names)} "
            f"({what}); put the data back, or {start_over_hint(run_dir)}"
        )
