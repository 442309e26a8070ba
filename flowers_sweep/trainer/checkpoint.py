"""Checkpoints that make a resumed run identical to an uninterrupted one, and when to write them.

Beyond model, optimizer and scheduler, a checkpoint holds every source of randomness
(Python, NumPy, torch, CUDA, and the generator that orders and augments the data), so
the epochs after a resume draw exactly what they would have drawn. Everything is kept
as tensors and plain data, so it loads with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowers_sweep.atomic import atomic_write
from flowers_sweep.errors import CheckpointError
from flowers_sweep.record.runfolder import start_over_hint
from flowers_sweep.record.runrecord import BEST_WEIGHTS_FILE, CHECKPOINT_FILE


def save_torch(path: Path, obj: Any, fsync: bool = True) -> None:
    """`torch.save(obj)` to `path`, atomically (atomic.atomic_write): a killed process
    leaves the old file or the new one, never half of one. Here, not in atomic.py, so
    that reading a run's files (the aggregator) never imports torch."""
    atomic_write(path, lambda f: torch.save(obj, f), fsync)


__all__ = [
    "CHECKPOINT_FILE",
    "Checkpointer",
    "Progress",
    "TrainState",
    "checkpoint_state",
    "load_checkpoint",
    "save_checkpoint",
    "save_torch",
    "write_checkpoint",
]


@dataclass
class Progress:
    """What the loop has done so far; the checkpoint's plain-data part."""

    epoch: int = 0
    best_val_acc: float = 0.0
    best_epoch: int = 0  # whose weights are in model_best_val.pt
    elapsed_s: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)


def rng_state(gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random state the run draws from. Only the run's own GPU is asked: asking
    all of them would start CUDA in a CPU run, and tie the checkpoint to the GPU count."""
    version, keys, gauss = random.getstate()
    name, np_keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(keys), gauss],
        "numpy": [name, torch.from_numpy(np_keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
        "data": gen.get_state(),
    }


def set_rng_state(state: dict[str, Any], gen: torch.Generator, device: torch.device) -> None:
    """Restore what `rng_state` saved; the state must have been loaded onto the CPU."""
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    name, np_keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np_keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state(state["cuda"][-1], device)
    gen.set_state(state["data"])


@dataclass
class TrainState:
    """What a checkpoint holds: the objects training changes, and its progress."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator | None  # shuffling and augmentation
    device: torch.device
    progress: Progress = field(default_factory=Progress)
    scaler: Any = None  # a torch.amp.GradScaler under fp16 (hardware.grad_scaler), else None
    ema: Any = None  # the model's moving average (ema.ModelEma), None without one


def checkpoint_state(state: TrainState, copy_tensors: bool = False) -> dict[str, Any]:
    """Everything a resume needs, as one flat dict of tensors and plain data.

    copy_tensors: a snapshot that training goes on without changing (a copy on the
    tensors' own device: model and optimizer state, about 3x the weights with Adam),
    kept so that a run told to stop mid-epoch can still write its last whole epoch.
    """
    flat = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "rng": rng_state(state.gen, state.device),
        "progress": vars(state.progress),
    }
    if state.scaler is not None:  # fp16: the loss scale and its growth count
        flat["scaler"] = state.scaler.state_dict()
    if state.ema is not None:  # only then: a run without EMA writes what it always did
        flat["ema"] = state.ema.state_dict()
    return copy.deepcopy(flat) if copy_tensors else flat


def write_checkpoint(path: Path, flat: dict[str, Any]) -> None:
    """Atomically: a kill during the write leaves the previous checkpoint."""
    save_torch(path, flat, fsync=False)  # survives a killed process; a power cut may not


def save_checkpoint(path: Path, state: TrainState) -> None:
    """`write_checkpoint` of the state's current values."""
    write_checkpoint(path, checkpoint_state(state))


def load_checkpoint(path: Path, state: TrainState) -> None:
    """Put the state back where the checkpoint at `path` left it (progress included).

    Everything is read onto the CPU: random states must live there (NumPy's key becomes
    an array), and `load_state_dict` copies weights and optimizer state to wherever the
    model's parameters already are. A damaged or foreign file is a CheckpointError that
    names it and the way out, not a traceback from deep inside PyTorch.
    """
    try:
        flat = torch.load(path, map_location="cpu", weights_only=True)
        state.model.load_state_dict(flat["model"])
        state.optimizer.load_state_dict(flat["optimizer"])
        state.scheduler.load_state_dict(flat["scheduler"])
        set_rng_state(flat["rng"], state.gen, state.device)
        state.progress = Progress(**flat["progress"])
        if state.scaler is not None and "scaler" in flat:
            state.scaler.load_state_dict(flat["scaler"])
        if state.ema is not None:
            state.ema.load_state_dict(flat["ema"])
    except torch.OutOfMemoryError:
        raise  # the file is fine; the device is full
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0].split(". ")[0]
        raise CheckpointError(
            f"{path} cannot be resumed from ({reason}); {start_over_hint(Path(path).parent)}"
        ) from exc


class Checkpointer:
    """Writes a run's checkpoint every `every_epochs` epochs or `every_s` seconds, whichever
    comes first (None: no such bound), and whenever the run stops early.

    At each epoch's end the loop hands over that epoch's state. When a write is due it
    goes to disk at once; otherwise a copy of it is kept in memory (on the tensors' own
    device: about 3x the weights with Adam; on a GPU a copy never leaves the device,
    while a write goes through the host; see benchmarks/checkpoint_cost.py), so that a
    run told to stop mid-epoch (SIGTERM, SLURM's USR2, Ctrl-C, an error) still writes
    its last whole epoch (`write_pending`). A stop therefore costs at most the epoch in
    progress; SIGKILL or a lost node, at most `every_epochs` epochs or `every_s` seconds
    (wall clock since the last write) plus the epoch in progress.

    The best validation epoch's weights are kept in memory too and written just before
    the checkpoint that names them: a checkpoint never points at weights that are not
    on disk.
    """

    def __init__(
        self, run_dir: Path, every_epochs: int | None, every_s: float | None, epoch: int
    ) -> None:
        self.path = Path(run_dir) / CHECKPOINT_FILE
        self.best_path = Path(run_dir) / BEST_WEIGHTS_FILE
        self.every_epochs, self.every_s = every_epochs, every_s
        self.written_epoch, self.written_at = epoch, time.monotonic()
        self.pending: dict[str, Any] | None = None  # a whole epoch's state, not yet on disk
        self.fresh_best: dict[str, torch.Tensor] | None = None  # this epoch's, if the best
        self.best: dict[str, torch.Tensor] | None = None  # a copy, when not yet on disk
        self.best_written = True
        self.writes = 0

    def due(self, epoch: int) -> bool:
        epochs, seconds = epoch - self.written_epoch, time.monotonic() - self.written_at
        by_epochs = self.every_epochs is not None and epochs >= self.every_epochs
        return by_epochs or (self.every_s is not None and seconds >= self.every_s)

    def new_best(self, weights: dict[str, torch.Tensor]) -> None:
        """This epoch's weights are the best so far; `epoch_end` writes or copies them."""
        self.fresh_best = weights

    def write_best(self) -> None:
        if not self.best_written and self.best is not None:
            save_torch(self.best_path, self.best)
            self.best_written = True

    def load_best(self) -> dict[str, torch.Tensor]:
        """The best epoch's weights from disk (an earlier process found them)."""
        return torch.load(self.best_path, map_location="cpu", weights_only=True)

    def epoch_end(self, epoch: int, state: TrainState) -> None:
        """Write the epoch's checkpoint_state now when due (no copy needed), else keep a
        copy of it for `write_pending`."""
        self.pending = None
        fresh, self.fresh_best = self.fresh_best, None
        if self.due(epoch):
            if fresh is not None:
                self.best, self.best_written = fresh, False  # written just below, as they are
            self._write(epoch, checkpoint_state(state))
            if fresh is not None:
                self.best = None  # the model trains on: these tensors will change
        else:
            if fresh is not None:  # a copy on the weights' device, kept until a write
                self.best, self.best_written = copy.deepcopy(fresh), False
            self.pending = checkpoint_state(state, copy_tensors=True)

    def write_pending(self) -> None:
        """Write the last whole epoch's state if it is not on disk yet."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._write(pending["progress"]["epoch"], pending)

    def write_final(self, epoch: int, state: TrainState) -> None:
        """After the last epoch (trainer.keep_checkpoint): its state, unless already written."""
        self.pending = None
        if self.written_epoch != epoch:
            self._write(epoch, checkpoint_state(state))

    def _write(self, epoch: int, flat: dict[str, Any]) -> None:
        self.write_best()
        write_checkpoint(self.path, flat)
        self.written_epoch, self.written_at = epoch, time.monotonic()
        self.writes += 1
