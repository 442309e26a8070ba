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

from flowers_sweep.atomic import save_torch
from flowers_sweep.checkpoint import (
    CHECKPOINT_FILE,
    Checkpointer,
    Progress,
    checkpoint_state,
    load_checkpoint,
)
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
from flowers_sweep.runrecord import (
    BEST_WEIGHTS_FILE,
    FINAL_METRICS,
    WEIGHTS_FILE,
    RunRecordError,
    completed_record,
    experiment_settings,
    read_metrics,
    write_metrics,
    write_result,
)

log = logging.getLogger(__name__)


def logged_settings(cfg: Any) -> dict[str, Any]:
    """The settings that make the experiment (a relaunch may change the others)."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in experiment_settings(tree).items() if not k.startswith("logger.")}


def seed_everything(seed: int, deterministic: bool) -> None:
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


def progress_bar(it, total: int, desc: str):
    """A bar on a terminal; silent otherwise (an epoch line is logged instead)."""
    return tqdm(it, total=total, desc=desc, leave=False, disable=None)  # None: a TTY only


class FiniteCheck:
    """Stops training at the first NaN or infinite loss, without stalling a GPU.

    On the CPU each loss is looked at as it comes. On a GPU, reading a value waits for
    every queued kernel, so each batch instead queues a copy of its loss into page-locked
    host memory, and the copies are read once they have landed (an event says so): a
    NaN stops the run a few batches late, with no host sync.

    `stream` is the one the losses are computed on (default: the current stream of
    `device`, the run's GPU, which need not be the current device). The copy is queued
    and the event recorded on it, so the event cannot complete before the copy has.
    """

    def __init__(self, device: torch.device, stream: Any = None) -> None:
        self.device = device
        self.stream = stream
        if device.type == "cuda" and stream is None:
            self.stream = torch.cuda.current_stream(device)
        self.pending: deque[tuple[torch.Tensor, Any, str]] = deque()

    def __call__(self, loss: torch.Tensor, where: str) -> None:
        if self.device.type != "cuda":
            self._check(loss, where)
            return
        with torch.cuda.stream(self.stream):  # also makes the stream's GPU current
            host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            host.copy_(loss.detach(), non_blocking=True)
            landed = self.stream.record_event()
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
    compiled = hasattr(model, "_orig_mod")  # torch.compile's OptimizedModule
    for i, (x, y) in enumerate(progress_bar(batches(gen), len(batches), desc)):
        if len(y) < batches.batch_size and (len(y) == 1 or compiled) and len(batches) > 1:
            # A short last batch is left out (its images were still drawn, so the
            # generator stays in step): batch norm cannot train on one image, and a
            # compiled model would compile a second graph for another batch size.
            continue
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


def padded(x: torch.Tensor, size: int) -> torch.Tensor:
    """`x` (N, C, H, W) with zero images appended up to `size`, in x's memory layout.
    In eval mode each image's output depends on that image alone, so slicing the first
    N outputs gives what the short batch would have."""
    if len(x) >= size:
        return x
    layout = (
        torch.channels_last
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        else torch.contiguous_format
    )
    zeros = x.new_zeros((size - len(x), *x.shape[1:]))
    return torch.cat([x, zeros]).contiguous(memory_format=layout)


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
    compiled = hasattr(model, "_orig_mod")
    for x, y in batches():
        if compiled:  # one graph: the short last batch is padded to the full size
            x = padded(x, batches.batch_size)
        with cast():
            logits = model(x)[: len(y)]
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / batches.num_samples, correct.item() / batches.num_samples


def run(
    cfg: Any,
    run_dir: Path,
    case: str | None,
    model_name: str,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Train, validate each epoch, test once; write metrics, checkpoints, weights, result.

    Resumes from the folder's checkpoint when there is one: the run then continues
    exactly as if it had never stopped. `device`: the one assigned to this job (see
    gpu_slots.py); None resolves `trainer.device` here.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    t = cfg.trainer
    device = resolve_device(t.device) if device is None else device
    if device.type == "cuda":  # everything implicit (streams, pinned memory, events, RNG)
        torch.cuda.set_device(device)  # lands on the run's GPU, and no context on GPU 0
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
    if t.compile:
        torch._dynamo.reset()  # a process running many jobs (joblib) compiles each afresh
    step_model = torch.compile(model) if t.compile else model  # model keeps plain state keys
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.scheduler, t.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling and augmentation

    progress = Progress()
    if ckpt.is_file():
        progress = load_checkpoint(ckpt, model, optimizer, scheduler, gen, device)
        write_metrics(run_dir, progress.rows)  # drop rows past the checkpoint
        log.info("resumed from %s after epoch %d", ckpt, progress.epoch)
    elif stale := stale_metrics(run_dir):  # killed before any checkpoint
        write_metrics(run_dir, [])
        log.info(
            "no checkpoint in %s: training starts over from epoch 1 (dropping the %d "
            "epoch(s) an earlier attempt logged)",
            run_dir,
            len(stale),
        )
    saver = Checkpointer(run_dir, t.checkpoint_every_epochs, t.checkpoint_every_s, progress.epoch)

    def state(copy_tensors: bool) -> dict[str, Any]:
        return checkpoint_state(model, optimizer, scheduler, gen, progress, device, copy_tensors)

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
                saver.new_best(model.state_dict())
            progress.elapsed_s += time.perf_counter() - t0
            logger.log_epoch(row)  # before the checkpoint: a resume purges from there on
            saver.epoch_end(epoch, state)
            write_metrics(run_dir, progress.rows)
            log.info(
                "epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f  lr %.2g  %.1fs",
                epoch, t.epochs, train_loss, train_acc, val_loss, val_acc, lr, row["epoch_s"],
            )  # fmt: skip
        test_loss, test_acc = evaluate(step_model, data.test, device, cast)
        log.info("test loss %.4f acc %.3f", test_loss, test_acc)
        test_acc_best_val = test_acc
        if progress.best_epoch != t.epochs:  # the best validation epoch was an earlier one
            last = {k: v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(saver.best or saver.load_best())
            test_acc_best_val = evaluate(step_model, data.test, device, cast)[1]
            model.load_state_dict(last)
            log.info("test acc %.3f with the weights of epoch %d (best validation accuracy)",
                     test_acc_best_val, progress.best_epoch)  # fmt: skip
        if t.keep_checkpoint:
            saver.write_final(progress.epoch, state)
        keep_weights(t.keep_weights, model, saver, run_dir)
        sizes = data.sizes()
        result = completed_record(
            case=case,
            model=model_name,
            activation=cfg.model.activation,
            epochs=t.epochs,
            seed=cfg.seed,
            test_acc=test_acc,
            test_loss=test_loss,
            best_val_acc=progress.best_val_acc,
            best_epoch=progress.best_epoch,
            test_acc_best_val=test_acc_best_val,
            params=params,
            num_classes=data.num_classes,
            train_size=sizes["train"],
            val_size=sizes["val"],
            test_size=sizes["test"],
            wall_s=round(time.perf_counter() - started, 3),
            device=str(device),
            precision="bf16" if dtype is torch.bfloat16 else "32",
        )
        logger.log_final(logged_settings(cfg), {k: result[k] for k in FINAL_METRICS})
        write_result(run_dir, result)
    except BaseException:
        # Stopped early (SIGTERM, SLURM's USR2 through submitit, Ctrl-C, an error): keep
        # the last whole epoch, so that a resume loses only the epoch in progress.
        try:
            saver.write_pending()
        except Exception as exc:
            log.error("could not write the last epoch's checkpoint: %s", exc)
        raise
    finally:
        logger.close()
    log.info("checkpoints written: %d", saver.writes)
    if not t.keep_checkpoint:
        ckpt.unlink(missing_ok=True)  # it was for resuming; the run is complete
    return result


def stale_metrics(run_dir: Path) -> list[dict[str, float]]:
    """Rows an earlier attempt logged without leaving a checkpoint (any, when unreadable)."""
    try:
        return read_metrics(run_dir, required=())
    except RunRecordError:
        return [{}]


def keep_weights(which: str, model: nn.Module, saver: Checkpointer, run_dir: Path) -> None:
    """A completed run keeps `trainer.keep_weights` of its weights: last (model.pt), best
    (model_best_val.pt), both, or none; the other file is removed."""
    if which in ("last", "both"):
        save_torch(run_dir / WEIGHTS_FILE, model.state_dict())
    if which in ("best", "both"):
        saver.write_best()
    else:
        (run_dir / BEST_WEIGHTS_FILE).unlink(missing_ok=True)
