"""One training run, in steps a reader can hold in their head: set up (runstate.py),
`begin`, the epoch loop (`fit`), the finish (`finish`: tests, weights, the result).

Knows nothing about sweeps: Hydra calls `run` once per job, and everything a later
step needs is written to the run folder.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from flowers_sweep.errors import DivergedError, TrialPrunedError
from flowers_sweep.loggers import RunLogger, build_logger
from flowers_sweep.record.labels import activation_label, case_label, fold_of, with_fold
from flowers_sweep.record.runrecord import (
    BEST_WEIGHTS_FILE,
    CHECKPOINT_FILE,
    EMA_RESULT_KEYS,
    EMA_WEIGHTS_FILE,
    FINAL_METRICS,
    KEPT_FILES,
    WEIGHTS_FILE,
    RunRecordError,
    completed_record,
    read_metrics,
    with_tags,
    write_metrics,
    write_result,
)
from flowers_sweep.record.settings import experiment_settings
from flowers_sweep.trainer.checkpoint import Checkpointer, save_torch
from flowers_sweep.trainer.early_stop import should_stop
from flowers_sweep.trainer.hardware import PRECISION_NAMES
from flowers_sweep.trainer.loop import eval_one_epoch, train_one_epoch
from flowers_sweep.trainer.runstate import RunState, set_up

__all__ = ["begin", "finish", "fit", "keep_weights", "logged_settings", "run"]
log = logging.getLogger(__name__)


EpochReport = Callable[[int, Mapping[str, float]], None]  # (epoch, metrics.csv's row)


def run(
    cfg: Any,
    run_dir: Path,
    case: str | None,
    model_name: str,
    device: torch.device | None = None,
    report: EpochReport | None = None,
    threads: Callable[[], tuple[int, str]] | None = None,
) -> dict[str, Any]:
    """Train, validate each epoch, test once; write metrics, checkpoints, weights, result.

    Resumes from the folder's checkpoint when there is one: the run then continues
    exactly as if it had never stopped. `device`: the one assigned to this job (see
    gpu_slots.py); None resolves `trainer.device`. `report` is called after each epoch
    (a search trial's, pruning.py); TrialPrunedError from it ends the run there, with no
    test and no checkpoint kept. `threads` says how many torch threads to train with,
    and why (job/hydra_job.thread_policy): asked once the data is set up, so that runs
    started together count each other (cpu_share.py), and before each epoch after;
    None keeps torch's setting. Returns the result it wrote.
    """
    started = time.perf_counter()
    state = set_up(cfg, run_dir, device)
    if threads is not None:
        use_threads(threads)
    begin(state, model_name)
    saver = Checkpointer(
        run_dir,
        cfg.trainer.checkpoint_every_epochs,
        cfg.trainer.checkpoint_every_s,
        state.progress.epoch,
    )
    tags = list(cfg.get("tags") or [])
    label = case_label(case, model_name, activation_label(cfg.model.get("activation")))
    logger = build_logger(
        cfg.get("logger"), run_dir, state.progress.epoch, logged_settings(cfg), tags, label
    )
    try:
        fit(state, saver, logger, report, threads)
        result = finish(state, saver, logger, case, model_name, started)
    except TrialPrunedError:
        # The search has stopped this trial for good: nothing will resume it.
        if not cfg.trainer.keep_checkpoint:
            (Path(run_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)
        raise
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
    if not cfg.trainer.keep_checkpoint:
        (Path(run_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)  # it was for resuming
    return result


def begin(state: RunState, model_name: str) -> None:
    """Log the data, the model and where it trains, and make metrics.csv match where
    training starts: rows past a resumed checkpoint, or of an attempt that left no
    checkpoint, are dropped."""
    cfg, where, run_dir = state.cfg, state.placement, state.run_dir
    for split, n in state.data.counts().items():
        log.info("%sset size: %d", split, n)
    log.info(
        "%s (%s), %d parameters, on %s (%s, %s%s), %d thread%s",
        model_name,
        activation_label(cfg.model.get("activation")),
        state.params,
        where.device,
        where.dtype or "fp32",
        "channels_last" if where.layout == torch.channels_last else "NCHW",
        ", compiled" if cfg.trainer.compile else "",
        torch.get_num_threads(),
        "" if torch.get_num_threads() == 1 else "s",
    )
    if where.dtype is torch.float16 and where.device.type == "cpu":
        log.warning(  # measured: a ResNet-18 epoch 115x as long (docs/speed.md)
            "trainer.precision=fp16 on a CPU is emulated and many times slower than "
            "bf16 or 32: fp16 is for CUDA GPUs"
        )
    if state.resumed:
        write_metrics(run_dir, state.progress.rows)  # drop rows past the checkpoint
        log.info("resumed from %s after epoch %d", run_dir / CHECKPOINT_FILE, state.progress.epoch)
    elif stale := stale_metrics(run_dir):  # killed before any checkpoint
        write_metrics(run_dir, [])
        log.info(
            "no checkpoint in %s: training starts over from epoch 1 (dropping the %d "
            "epoch(s) an earlier attempt logged)",
            run_dir,
            len(stale),
        )


def use_threads(threads: Callable[[], tuple[int, str]], epoch: int | None = None) -> None:
    """Train with as many torch threads as `threads()` says; logged when it changes."""
    count, why = threads()
    if epoch is None or count != torch.get_num_threads():
        torch.set_num_threads(count)
        since = "" if epoch is None else f" from epoch {epoch}"
        log.info("torch threads: %d%s (%s)", count, since, why)


def fit(
    state: RunState,
    saver: Checkpointer,
    logger: RunLogger,
    report: EpochReport | None = None,
    threads: Callable[[], tuple[int, str]] | None = None,
) -> None:
    """The epochs left: train, validate, step the schedule, keep the best, checkpoint;
    then `report` the epoch (it may raise TrialPrunedError to stop the run). `threads`:
    the run's thread count, asked again before each epoch after its first. Ends early
    where `trainer.early_stop_patience` says (early_stop.py)."""
    epochs, progress = state.cfg.trainer.epochs, state.progress
    first = progress.epoch + 1
    for epoch in range(first, epochs + 1):
        if stops_early(state.cfg.trainer, progress.rows):  # checked first: a resume too
            log.info("early stop after epoch %d (trainer.early_stop_patience)", epoch - 1)
            break
        if threads is not None and epoch > first:
            use_threads(threads, epoch)  # another run may have started or ended
        t0 = time.perf_counter()
        lr = state.optimizer.param_groups[0]["lr"]
        desc = f"epoch {epoch}/{epochs}"
        if state.ema is not None:
            state.ema.start_epoch(epoch)  # its warm-up (trainer.ema_warmup)
        train_loss, train_acc = train_one_epoch(state, desc=desc).means()
        if not math.isfinite(train_loss):
            raise DivergedError(f"training loss became {train_loss} in {desc}")
        val_loss, val_acc = eval_one_epoch(state, state.data.val)
        state.scheduler.step()
        epoch_s = round(time.perf_counter() - t0, 3)
        row = dict(
            epoch=epoch,
            train_loss=train_loss,
            train_acc=train_acc,
            val_loss=val_loss,
            val_acc=val_acc,
            lr=lr,
            epoch_s=epoch_s,
        )
        if state.ema is not None:  # after epoch_s: the EMA's pass is not the epoch's cost
            row["val_loss_ema"], row["val_acc_ema"] = eval_one_epoch(
                with_ema(state), state.data.val
            )
        progress.rows.append(row)
        progress.epoch = epoch
        if progress.best_epoch == 0 or val_acc > progress.best_val_acc:
            progress.best_val_acc, progress.best_epoch = val_acc, epoch
            saver.new_best(state.model.state_dict())
        progress.elapsed_s += time.perf_counter() - t0
        logger.log_epoch(row)  # before the checkpoint: a resume purges from there on
        saver.epoch_end(epoch, state)
        write_metrics(state.run_dir, progress.rows)
        log.info(
            "epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f  lr %.2g  %.1fs",
            epoch,
            epochs,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            lr,
            epoch_s,
        )
        if report is not None:  # after the checkpoint: a pruned run's epochs are all kept
            report(epoch, row)


def finish(
    state: RunState,
    saver: Checkpointer,
    logger: RunLogger,
    case: str | None,
    model_name: str,
    started: float,
) -> dict[str, Any]:
    """Test the last epoch's weights and the best validation epoch's; keep the weights
    asked for; write the result."""
    cfg, progress, model = state.cfg, state.progress, state.model
    test_loss, test_acc = eval_one_epoch(state, state.data.test)
    log.info("test loss %.4f acc %.3f", test_loss, test_acc)
    test_acc_best_val = test_acc
    if progress.best_epoch != progress.epoch:  # the best validation epoch was earlier
        last = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(saver.best or saver.load_best())
        test_acc_best_val = eval_one_epoch(state, state.data.test)[1]
        model.load_state_dict(last)
        log.info(
            "test acc %.3f with the weights of epoch %d (best validation accuracy)",
            test_acc_best_val,
            progress.best_epoch,
        )
    ema_test = None
    if state.ema is not None:
        ema_test = eval_one_epoch(with_ema(state), state.data.test)
        log.info("EMA test loss %.4f acc %.3f", *ema_test)
        if state.ema.steps < state.ema.every:  # no update in the run: the first weights
            log.warning(
                "the EMA was never updated (trainer.ema_every=%d, %d optimizer steps in "
                "the run): its numbers are the initial weights'",
                state.ema.every,
                state.ema.steps,
            )
    if cfg.trainer.keep_checkpoint:
        saver.write_final(progress.epoch, state)
    keep_weights(cfg.trainer.keep_weights, state, saver)
    counts = state.data.counts()
    result = completed_record(
        case=case,
        model=model_name,
        activation=activation_label(cfg.model.get("activation")),
        epochs=cfg.trainer.epochs,
        seed=cfg.seed,
        test_acc=test_acc,
        test_loss=test_loss,
        best_val_acc=progress.best_val_acc,
        best_epoch=progress.best_epoch,
        test_acc_best_val=test_acc_best_val,
        params=state.params,
        num_classes=state.data.num_classes,
        train_size=counts["train"],
        val_size=counts["val"],
        test_size=counts["test"],
        wall_s=round(time.perf_counter() - started, 3),
        device=str(state.device),
        precision=PRECISION_NAMES[state.placement.dtype],
    )
    if ema_test is not None:  # only then: a run without EMA writes what it always did
        result.update(test_acc_ema=ema_test[1], test_loss_ema=ema_test[0])  # EMA_RESULT_KEYS
    if progress.epoch < cfg.trainer.epochs:  # early stopping: only such a result has the key
        result["stopped_early_at"] = progress.epoch
    result = with_tags(with_fold(result, fold_of(cfg.dataset, prefix="")), cfg.get("tags"))
    final = (*FINAL_METRICS, *EMA_RESULT_KEYS)  # the EMA's, in a run with EMA
    logger.log_final(logged_settings(cfg), {k: result[k] for k in final if k in result})
    write_result(state.run_dir, result)
    return result


def stops_early(trainer: Any, rows: list[dict[str, float]]) -> bool:
    """Whether `trainer.early_stop_patience` ends the run after `rows` (early_stop.py)."""
    patience = trainer.get("early_stop_patience")
    return should_stop(rows, patience, trainer.get("early_stop_metric", "val_acc"))


def keep_weights(which: str, state: RunState, saver: Checkpointer) -> None:
    """A completed run keeps `trainer.keep_weights` of its weights: last (model.pt), best
    (model_best_val.pt), both, none, ema (model_ema.pt: the EMA's, trainer.ema_decay) or
    last_ema (model.pt and model_ema.pt); model_best_val.pt, written while the run
    trained, is removed unless kept (runrecord.KEPT_FILES)."""
    kept = KEPT_FILES[which]
    if WEIGHTS_FILE in kept:
        save_torch(state.run_dir / WEIGHTS_FILE, state.model.state_dict())
    if BEST_WEIGHTS_FILE in kept:
        saver.write_best()
    else:
        (state.run_dir / BEST_WEIGHTS_FILE).unlink(missing_ok=True)
    if EMA_WEIGHTS_FILE in kept and state.ema is not None:
        save_torch(state.run_dir / EMA_WEIGHTS_FILE, state.ema.module.state_dict())


def with_ema(state: RunState) -> RunState:
    """A shallow copy of the run whose passes go through its EMA (ema.py) instead: for
    `eval_one_epoch` (same data, device and number format; the EMA is not compiled)."""
    view = copy.copy(state)
    view.step_model = state.ema.module
    return view


def logged_settings(cfg: Any) -> dict[str, Any]:
    """The settings that make the experiment, as TensorBoard's HParams shows them."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    return experiment_settings(tree)


def stale_metrics(run_dir: Path) -> list[dict[str, float]]:
    """Rows an earlier attempt logged without leaving a checkpoint (any, when unreadable)."""
    try:
        return read_metrics(run_dir, required=())
    except RunRecordError:
        return [{}]
