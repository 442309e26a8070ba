"""What a run costs on this machine, measured before any run starts (the plan command):
seconds per training image from a few real steps of the run's model, and the bytes its
checkpoint and weight files take.

The steps are the training loop's own (loop.train_one_epoch): the run's model, placed
as a run places it (device, precision, memory layout), a forward pass, cross-entropy,
backward and an optimizer step, on random images of the run's batch and image size;
one warm-up step first (allocations, kernel selection), then a few timed. An
evaluation image costs about a third of a training image (a forward pass, no
backward, which by the usual rule of thumb costs about twice the forward): an
assumption of `run_seconds`, not a measurement.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from flowers_sweep.data import class_count
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.models import count_parameters
from flowers_sweep.optim import build_optimizer
from flowers_sweep.trainer.hardware import resolve_device
from flowers_sweep.trainer.runstate import place, placed_model

EVAL_SHARE = 1 / 3  # an evaluation image's cost, as a share of a training image's
STEPS = 5  # timed steps, after the warm-up; their median is the step's time
BUDGET_S = 2.0  # stop timing after this many seconds (one timed step at least)
ROLES = ("train", "val", "test")
# Weight files a completed run keeps, by trainer.keep_weights (runrecord.KEEP_WEIGHTS)
WEIGHT_FILES_KEPT = {"last": 1, "best": 1, "both": 2, "none": 0, "ema": 1, "last_ema": 2}


@dataclass(frozen=True)
class StepCost:
    """One model's measured training cost and file sizes.

    `image_s`: seconds per training image; `params`: parameters; `checkpoint_bytes`:
    the model's state (parameters and buffers) plus the optimizer's state after a step
    (Adam keeps 2 numbers a parameter, SGD with momentum 1); `weights_bytes`: one
    weight file (the model's state).
    """

    image_s: float
    steps: int
    batch_size: int
    image_size: int
    device: str
    threads: int
    params: int
    checkpoint_bytes: int
    weights_bytes: int
    note: str = ""  # why the device differs from the run's, when it does

    def basis(self) -> str:
        """How it was measured, in one line (the plan prints it)."""
        n = self.threads
        threads = f", {n} thread{'s' * (n != 1)}" if self.device == "cpu" else ""
        return (
            f"measured: median of {self.steps} step{'s' * (self.steps != 1)} of batch "
            f"{self.batch_size} at {self.image_size} px on {self.device}{threads}: "
            f"{self.image_s * 1e3:.3g} ms/image{self.note}"
        )


def measuring_device(setting: str) -> tuple[torch.device, str]:
    """The device the run would train on, when this machine has it; else the CPU, with
    a note saying why (a plan made on a login node for a GPU cluster, say)."""
    try:
        return resolve_device(str(setting)), ""
    except FlowersSweepError as exc:  # no CUDA here, or fewer GPUs than it names
        return torch.device("cpu"), f" ({exc}; measured on the CPU instead)"


@contextlib.contextmanager
def _left_as_found(threads: int | None) -> Iterator[None]:
    """torch's global generator and thread count as they were, whatever happens inside
    (the model's initialisation draws from the generator)."""
    before = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        if threads:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def measure_step(cfg: Any, steps: int = STEPS, budget_s: float = BUDGET_S) -> StepCost:
    """Time `steps` training steps of the run `cfg` describes (a composed, validated run
    config), after one warm-up step, each alone; fewer when they pass `budget_s`
    seconds, one at least. A training image's cost is the median step's over the
    batch. trainer.threads, when a number, is used for the measurement.

    Raises what building the model or a step raises (out of memory, say).
    """
    trainer = cfg.trainer
    device, note = measuring_device(trainer.device)
    threads = trainer.threads if isinstance(trainer.threads, int) else None
    batch, size = int(trainer.batch_size), int(cfg.dataset.image_size)
    num_classes = class_count(cfg.dataset)
    with _left_as_found(threads):
        where = place(cfg, device, num_classes)
        model = placed_model(cfg, num_classes, where)
        optimizer = build_optimizer(model.parameters(), cfg.optimizer)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand((batch, 3, size, size), generator=gen)
        x = x.to(where.device, memory_format=where.layout)
        y = torch.randint(0, num_classes, (batch,), generator=gen).to(where.device)
        model.train()

        def step() -> None:
            with where.cast():
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if where.device.type == "cuda":
                torch.cuda.synchronize(where.device)

        step()  # warm-up
        # Each step timed alone and the median kept: on a shared machine a step the
        # scheduler took the cores from would otherwise move the mean of a few by 10x.
        durations: list[float] = []
        start = time.perf_counter()
        while len(durations) < steps and (not durations or time.perf_counter() - start < budget_s):
            began = time.perf_counter()
            step()
            durations.append(time.perf_counter() - began)
        timed, median = len(durations), statistics.median(durations)
        weights = _bytes(model.state_dict())
        optimizer_state = _bytes(optimizer.state_dict()["state"])
        used_threads = torch.get_num_threads()
    return StepCost(
        image_s=median / batch,
        steps=timed,
        batch_size=batch,
        image_size=size,
        device=str(where.device),
        threads=used_threads,
        params=count_parameters(model),
        checkpoint_bytes=weights + optimizer_state,
        weights_bytes=weights,
        note=note,
    )


def _bytes(tree: Any) -> int:
    """The bytes of every tensor in a (nested) state dict."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, Mapping):
        return sum(_bytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_bytes(v) for v in tree)
    return 0


def measure_key(cfg: Any) -> str:
    """What the measurement depends on: jobs with the same key share one."""
    from omegaconf import OmegaConf

    trainer, dataset = cfg.trainer, cfg.dataset
    parts = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "classes": dataset.get("num_classes"),
        "dataset": dataset.get("_target_"),
        "size": dataset.image_size,
        **{k: str(trainer.get(k)) for k in ("batch_size", "device", "precision", "threads")},
        "channels_last": str(trainer.get("channels_last")),
    }
    return repr(sorted(parts.items()))


def split_sizes(dataset: Any) -> dict[str, int] | None:
    """Images in each split (train, val, test) as the dataset node tells without reading
    any: its `train_size`, `val_size` and `test_size` (the synthetic data), or its data
    source's `split_sizes()` where it has one; None when unknown."""
    given = {role: dataset.get(f"{role}_size") for role in ROLES}
    if all(isinstance(v, int) and not isinstance(v, bool) for v in given.values()):
        return {role: int(v) for role, v in given.items()}
    try:
        from flowers_sweep.data import open_source

        source = open_source(dataset)
    except Exception:  # a function target, or a source that cannot be opened here
        return None
    sizes = getattr(source, "split_sizes", None)
    if not callable(sizes):
        return None
    try:
        found = sizes()
        return {role: int(found[role]) for role in ROLES}
    except Exception:  # its files are not there yet: unknown, not an error of the plan
        return None


def run_seconds(cost: StepCost, sizes: Mapping[str, int], epochs: int) -> float:
    """A run's estimated seconds: its training images every epoch, plus the validation
    split every epoch and the test split twice at the end (the last and the best
    validation epoch's weights), those at EVAL_SHARE of a training image's cost."""
    train = sizes["train"] * epochs
    evaluated = sizes["val"] * epochs + 2 * sizes["test"]
    return cost.image_s * (train + EVAL_SHARE * evaluated)


def run_bytes(
    cost: StepCost, keep_weights: str, keep_checkpoint: bool, ema: bool = False
) -> tuple[int, int]:
    """(at most, while the run trains and finishes; kept once it has completed) bytes of
    its files that grow with the model: checkpoint.pt, model_best_val.pt (written while
    it trains, whatever it keeps), model.pt and model_ema.pt (at the end, when kept).
    The checkpoint goes at the end unless `keep_checkpoint`, and holds the EMA's weights
    too with an EMA (`ema`: trainer.ema_decay set); the weight files stay as
    `keep_weights` says."""
    keep, one = str(keep_weights), cost.weights_bytes
    checkpoint = cost.checkpoint_bytes + (one if ema else 0)
    at_end = (keep in ("last", "both", "last_ema")) + (keep in ("ema", "last_ema"))
    peak = checkpoint + one * (1 + at_end)
    kept = WEIGHT_FILES_KEPT.get(keep, 1) * one + (checkpoint if keep_checkpoint else 0)
    return peak, kept
