"""Per-epoch checkpoints that make a resumed run identical to an uninterrupted one.

Beyond model, optimizer and scheduler, a checkpoint holds every source of randomness
(Python, NumPy, torch, CUDA, and the generator that orders and augments the data), so
the epochs after a resume draw exactly what they would have drawn. Everything is kept
as tensors and plain data, so it loads with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowers_sweep.errors import CheckpointError
from flowers_sweep.runfolder import CHECKPOINT_FILE, save_torch

__all__ = ["CHECKPOINT_FILE", "Progress", "load_checkpoint", "save_checkpoint"]


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


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    gen: torch.Generator,
    progress: Progress,
    device: torch.device,
) -> None:
    """Atomically: a kill during the write leaves the previous epoch's checkpoint."""
    save_torch(
        path,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(gen, device),
            "progress": vars(progress),
        },
        fsync=False,  # survives a killed process; only a power cut could cost an epoch
    )


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    gen: torch.Generator,
    device: torch.device,
) -> Progress:
    """Put the run back where the checkpoint left it.

    Everything is read onto the CPU: random states must live there (NumPy's key becomes
    an array), and `load_state_dict` copies weights and optimizer state to wherever the
    model's parameters already are. A damaged or foreign file is a CheckpointError that
    names it and the way out, not a traceback from deep inside PyTorch.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], gen, device)
        return Progress(**state["progress"])
    except torch.OutOfMemoryError:
        raise  # the file is fine; the device is full
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0].split(". ")[0]
        raise CheckpointError(
            f"{path} cannot be resumed from ({reason}); add resume=false to start the run over"
        ) from exc
