"""One training run: the loop a reader can hold in their head.

Knows nothing about sweeps: Hydra calls `run` once per job, and everything a later
step needs is written to the run folder.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from flowers_sweep.checkpoint import CHECKPOINT_FILE, Progress, load_checkpoint, save_checkpoint
from flowers_sweep.data import build_loaders
from flowers_sweep.data.loaders import BatchSource
from flowers_sweep.errors import DivergedError
from flowers_sweep.hardware import (
    autocast,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
)
from flowers_sweep.loggers import build_logger
from flowers_sweep.models import build_model, count_parameters, model_label
from flowers_sweep.models.weights import load_weights
from flowers_sweep.optim import build_optimizer, build_scheduler
from flowers_sweep.runfolder import (
    BEST_WEIGHTS_FILE,
    METRICS_FILE,
    RESULT_FILE,
    RESUME_IGNORED,
    WEIGHTS_FILE,
    flatten,
    save_torch,
    write_json,
    write_metrics,
)

log = logging.getLogger(__name__)
FINAL_METRICS = ("test_acc", "test_loss", "best_val_acc", "test_acc_best_val")


def logged_settings(cfg: Any) -> dict[str, Any]:
    """The settings that make the experiment (a relaunch may change the others)."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in flatten(tree).items()
            if k not in RESUME_IGNORED and not k.startswith("logger.")}  # fmt: skip


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def progress_bar(it, total: int, desc: str):
    """A bar on a terminal; silent otherwise (an epoch line is logged instead)."""
    return tqdm(it, total=total, desc=desc, leave=False, disable=None)  # None: a TTY only


class FiniteCheck:
    """Stops training at the first NaN or infinite loss, without stalling a GPU.

    On the CPU each loss is looked at as it comes. On a GPU, reading a value waits for
    every queued kernel, so each batch instead queues a copy of its loss into page-locked
    host memory, and the copies are read once they have landed (an event says so): a
    NaN stops the run a few batches late, with no host sync.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pending: deque[tuple[torch.Tensor, Any, str]] = deque()

    def __call__(self, loss: torch.Tensor, where: str) -> None:
        if self.device.type != "cuda":
            self._check(loss, where)
            return
        host = torch.empty((), dtype=loss.dtype, pin_memory=True)
        host.copy_(loss.detach(), non_blocking=True)
        landed = torch.cuda.Event()
        landed.record()
        self.pending.append((host, landed, where))
        while self.pending and self.pending[0][1].query():
            host, _, at = self.pending.popleft()
            self._check(host, at)

    @staticmethod
    def _check(loss: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss):
            raise DivergedError(f"training loss became {loss.item()} in {where}")


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: BatchSource,
    gen: torch.Generator,
    device: torch.device,
    desc: str = "train",
    cast: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pass over the shuffled, augmented training split, with no host sync on a GPU.

    Returns the summed loss and the number correct, still on the device, and the count.
    """
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    finite = FiniteCheck(device)
    for i, (x, y) in enumerate(progress_bar(batches(gen), len(batches), desc)):
        if len(y) == 1 and len(batches) > 1:
            continue  # a trailing single image: batch norm cannot train on it
        with cast():
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        finite(loss, f"{desc}, batch {i + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return loss_sum, correct, seen


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: BatchSource,
    gen: torch.Generator,
    device: torch.device,
    desc: str = "train",
    cast: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[float, float]:
    """`train_steps`, then its one sync: mean loss and accuracy."""
    loss_sum, correct, seen = train_steps(model, optimizer, batches, gen, device, desc, cast)
    return loss_sum.item() / seen, correct.item() / seen


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: BatchSource,
    device: torch.device,
    cast: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in batches():
        with cast():
            logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / batches.num_samples, correct.item() / batches.num_samples


def run(cfg: Any, run_dir: Path, case: str | None, model_name: str) -> dict[str, Any]:
    """Train, validate each epoch, test once; write metrics, checkpoints, weights, result.

    Resumes from the folder's checkpoint when there is one: the run then continues
    exactly as if it had never stopped.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    t = cfg.trainer
    device = resolve_device(t.device)
    seed_everything(cfg.seed, t.deterministic)

    channels_last = resolve_channels_last(t.channels_last, cfg.model.arch)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    dtype = resolve_precision(t.precision, device)
    cast = autocast(device, dtype)
    data = build_loaders(cfg, device, layout)
    for split, n in data.sizes().items():
        log.info("%sset size: %d", split, n)
    model = build_model(cfg.model, data.num_classes, cfg.dataset.image_size)
    ckpt = run_dir / CHECKPOINT_FILE
    if cfg.model.get("weights") and not ckpt.is_file():  # a resume has its own weights
        load_weights(model, cfg.model.weights, model_label(cfg.model))
    model = model.to(device, memory_format=layout)
    params = count_parameters(model)
    log.info(
        "%s (%s), %d parameters, on %s (%s, %s%s), %d threads",
        model_name, cfg.model.activation, params, device, dtype or "fp32",
        "channels_last" if channels_last else "NCHW", ", compiled" if t.compile else "",
        torch.get_num_threads(),
    )  # fmt: skip
    step_model = torch.compile(model) if t.compile else model  # model keeps plain state keys
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.scheduler, t.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling and augmentation

    progress = Progress()
    if ckpt.is_file():
        progress = load_checkpoint(ckpt, model, optimizer, scheduler, gen, device)
        write_metrics(run_dir / METRICS_FILE, progress.rows)  # drop rows past the checkpoint
        log.info("resumed from %s after epoch %d", ckpt, progress.epoch)
    logger = build_logger(cfg.get("logger"), run_dir, progress.epoch)
    try:
        for epoch in range(progress.epoch + 1, t.epochs + 1):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            desc = f"epoch {epoch}/{t.epochs}"
            train_loss, train_acc = train_epoch(
                step_model, optimizer, data.train, gen, device, desc, cast
            )
            if not math.isfinite(train_loss):
                raise DivergedError(f"training loss became {train_loss} in {desc}")
            val_loss, val_acc = evaluate(step_model, data.val, device, cast)
            scheduler.step()
            row = dict(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                val_loss=val_loss,
                val_acc=val_acc,
                lr=lr,
                epoch_s=round(time.perf_counter() - t0, 3),
            )
            progress.rows.append(row)
            progress.epoch = epoch
            if progress.best_epoch == 0 or val_acc > progress.best_val_acc:
                progress.best_val_acc, progress.best_epoch = val_acc, epoch
                # before the checkpoint, which must never name weights not yet written
                save_torch(run_dir / BEST_WEIGHTS_FILE, model.state_dict())
            progress.elapsed_s += time.perf_counter() - t0
            logger.log_epoch(row)  # before the checkpoint: a resume purges from there on
            save_checkpoint(ckpt, model, optimizer, scheduler, gen, progress, device)
            write_metrics(run_dir / METRICS_FILE, progress.rows)
            log.info(
                "epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f  lr %.2g  %.1fs",
                epoch, t.epochs, train_loss, train_acc, val_loss, val_acc, lr, row["epoch_s"],
            )  # fmt: skip

        test_loss, test_acc = evaluate(step_model, data.test, device, cast)
        log.info("test loss %.4f acc %.3f", test_loss, test_acc)
        save_torch(run_dir / WEIGHTS_FILE, model.state_dict())
        test_acc_best_val = test_acc
        if progress.best_epoch != t.epochs:  # the best validation epoch was an earlier one
            best = torch.load(run_dir / BEST_WEIGHTS_FILE, map_location="cpu", weights_only=True)
            model.load_state_dict(best)
            test_acc_best_val = evaluate(step_model, data.test, device, cast)[1]
            log.info("test acc %.3f with the weights of epoch %d (best validation accuracy)",
                     test_acc_best_val, progress.best_epoch)  # fmt: skip
        sizes = data.sizes()
        result = {
            "status": "completed",
            "case": case,
            "model": model_name,
            "activation": cfg.model.activation,
            "epochs": t.epochs,
            "seed": cfg.seed,
            "test_acc": test_acc,
            "test_loss": test_loss,
            "best_val_acc": progress.best_val_acc,
            "best_epoch": progress.best_epoch,
            "test_acc_best_val": test_acc_best_val,
            "params": params,
            "num_classes": data.num_classes,
            "train_size": sizes["train"],
            "val_size": sizes["val"],
            "test_size": sizes["test"],
            "wall_s": round(time.perf_counter() - started, 3),
            "device": str(device),
            "precision": "bf16" if dtype is torch.bfloat16 else "32",
        }
        logger.log_final(logged_settings(cfg), {k: result[k] for k in FINAL_METRICS})
        write_json(run_dir / RESULT_FILE, result)
        if not t.keep_checkpoint:
            ckpt.unlink(missing_ok=True)  # model.pt holds the weights; this was for resuming
        return result
    finally:
        logger.close()
