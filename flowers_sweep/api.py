"""The Python API, for a notebook or a script: compose a run's config, train it into a
folder, run a sweep, and open run and sweep folders as a report of DataFrames.

    import flowers_sweep as fs

    cfg = fs.compose(["model=baseline_cnn", "trainer.epochs=1"])
    result = fs.train(cfg, "runs/cnn")  # result.json's dict: test_acc, best_val_acc, ...
    report = fs.sweep(["model.activation=relu,sigmoid", "trainer.epochs=2"])
    report.cases  # the accuracy table; report.runs, report.curves, report.comparisons
    report.figure("loss_curves")  # a matplotlib Figure, in the notebook's own backend

Everything written here is what the command line writes: `train` runs the CLI's own
task in this process, `sweep` runs `python -m flowers_sweep -m` in a subprocess (so any
Hydra launcher works, and the kernel's state is left alone), and the aggregator,
`evaluate` and resume accept their folders. See docs/notebook.ipynb.
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from flowers_sweep.config.validate import validate
from flowers_sweep.errors import ConfigError, FlowersSweepError, Terminated

if TYPE_CHECKING:
    from flowers_sweep.aggregate.report import Report

# compose() marks its config with the arguments it composed it from, which train()
# composes again for Hydra's part (the group choices label the run; Hydra's files are
# written from it). Kept as a flag of the root node, because OmegaConf carries a node's
# flags through every copy of a DictConfig (OmegaConf.create, copy.deepcopy, .copy(),
# OmegaConf.merge) and drops them in plain data (to_container): a copy of what compose
# returned is still one, a config rebuilt from plain data is not.
COMPOSED_FLAG = "flowers_sweep.composed_from"
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job log's


class RunFailedError(FlowersSweepError):
    """A run trained through the API did not complete; the message says why."""


class SweepFailedError(FlowersSweepError):
    """A sweep run through the API could not start or trained nothing."""


def compose(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """A run's config, composed as `python -m flowers_sweep OVERRIDES` composes it.

    `overrides` are the command line's (`model=baseline_cnn`, `trainer.epochs=1`);
    `config_dir` is your own config folder, searched before the package's (the CLI's
    `--config-dir`): a file in it named like a shipped one replaces that one. The
    config is validated before it is returned.

    Raises ConfigError (a bad value, or no such config_dir), and Hydra's own errors for
    an unknown group or key.
    """
    from flowers_sweep.config.composition import compose_whole, user_config_dir
    from flowers_sweep.job.launch import register_resolvers

    register_resolvers()
    args = _override_list(overrides, "compose")
    if config_dir is not None:
        args = ["--config-dir", str(user_config_dir(config_dir)), *args]
    cfg = compose_whole(args)
    with open_dict(cfg):
        del cfg["hydra"]
    validate(cfg)
    # a JSON text: a flag holds one value (OmegaConf's own flags are bools; it stores
    # and copies any value, tests/test_api.py checks that it still does)
    cfg._set_flag([COMPOSED_FLAG], [json.dumps(args)])  # type: ignore[list-item]
    return cfg


def _override_list(overrides: Sequence[str], caller: str) -> list[str]:
    """The overrides as a list; one string is refused (it would be read letter by letter)."""
    if isinstance(overrides, str):
        raise ConfigError(
            f"{caller}(overrides): a list of overrides such as [{overrides!r}], not a string"
        )
    return list(overrides)


def _composed_from(cfg: Any) -> list[str] | None:
    """The arguments compose() composed `cfg` (or the config it is a copy of) from;
    None when cfg did not come from compose."""
    # the root's own flags (_get_flag would also look in parents, and asserts a bool)
    mark = cfg._metadata.flags.get(COMPOSED_FLAG) if isinstance(cfg, DictConfig) else None
    return json.loads(mark) if isinstance(mark, str) else None


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train the run `cfg` (from `compose`, maybe edited since) in `run_dir`, in this
    process; result.json's dict (test_acc and val accuracies as fractions, wall_s in s).

    The folder is the CLI's: its .hydra/ files, metrics.csv, result.json, checkpoints
    and log. As with the CLI, an unfinished run in `run_dir` resumes, a completed one is
    not trained again (its result is returned), and a folder of another config is
    refused. Progress is logged to stdout and to the run folder's log.

    Raises ConfigError (cfg neither from compose nor a DictConfig copy of one, or a bad
    value), RunFailedError (the run failed: why is in the message and in the folder),
    KeyboardInterrupt when interrupted (run it again to resume), and any other
    exception a bug raises.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from flowers_sweep import app
    from flowers_sweep.config.composition import compose_whole, overrides_composing
    from flowers_sweep.job.hydra_job import JobContext
    from flowers_sweep.record.runrecord import find_run_dirs, read_result

    args = _composed_from(cfg)
    if args is None:
        raise ConfigError(
            "train(cfg, run_dir): cfg is not a config flowers_sweep.compose(...) returned "
            "(a copy of one is, a config rebuilt from plain data is not); compose each "
            "variant, and edit it if you like"
        )
    validate(cfg)
    run_dir = Path(run_dir).expanduser().resolve()
    if others := [d for d in find_run_dirs(run_dir) if d != run_dir] if run_dir.is_dir() else []:
        raise ConfigError(
            f"train(cfg, run_dir={str(run_dir)!r}): that folder holds other runs "
            f"({others[0]}, ...): give a run folder of its own"
        )
    # Hydra's part, composed again: the same arguments give the same choices and
    # overrides; what cfg changed since (edits, or config files edited meanwhile)
    # becomes overrides, checked to compose cfg itself, so that the folder's
    # overrides.yaml (and the CLI's resume with it) gives this very config.
    whole = compose_whole(args)
    task = overrides_composing(cfg, args, whole)
    hydra_cfg = copy.deepcopy(whole)
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra = hydra_cfg.hydra
        # Fixed folders: the defaults' resolver would make new ones under the cwd
        hydra.run.dir = hydra.sweep.dir = hydra.runtime.output_dir = str(run_dir)
        hydra.mode = RunMode.RUN
        hydra.overrides.task = task
    job = JobContext(OmegaConf.masked_copy(hydra_cfg, "hydra"))
    app.validate_job(cfg, job)  # as the run will, but before its folder exists
    run_dir.mkdir(parents=True, exist_ok=True)
    # The run reads its job from `job` below; Hydra's global is set only for the
    # `${hydra:...}` interpolations a user's config may hold, as in a CLI run.
    HydraConfig.instance().set_config(hydra_cfg)
    try:
        with _job_logging(run_dir / f"{hydra_cfg.hydra.job.name}.log"), _kept_process_state():
            outcome, exc, value = app.attempt(cfg, job)  # the CLI's task, step by step
            # the CLI's exit and its line on stderr: here, the exception raised below
            with contextlib.suppress(SystemExit), contextlib.redirect_stderr(io.StringIO()):
                app.conclude(job, outcome, exc=exc, value=value)  # logs; a bug raises
    finally:
        HydraConfig.instance().cfg = None
    if isinstance(exc, (KeyboardInterrupt, Terminated)):
        raise KeyboardInterrupt(f"{run_dir}: interrupted; train again to resume") from exc
    if exc is not None:
        raise RunFailedError(f"{run_dir}: run {outcome}: {exc}") from exc
    result = read_result(run_dir)
    if result is None:
        raise RunFailedError(f"{run_dir}: the run wrote no result")
    return result


@contextlib.contextmanager
def _job_logging(log_file: Path) -> Iterator[None]:
    """The package's INFO log in the run folder (as Hydra's job logging does) and, when
    nothing else shows it, on stdout; removed afterwards."""
    logger = logging.getLogger("flowers_sweep")
    handlers: list[logging.Handler] = [logging.FileHandler(log_file)]
    if not (logger.handlers or logging.getLogger().handlers):
        handlers.append(logging.StreamHandler(sys.stdout))
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(level)
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def _kept_process_state() -> Iterator[None]:
    """torch's global switches, CUBLAS_WORKSPACE_CONFIG and the global random generators
    as they were: a run sets its own (threads, determinism, seeds), and the notebook
    that called train() should not find them changed."""
    import random

    import numpy as np
    import torch

    det = torch.utils.deterministic
    cudnn = torch.backends.cudnn
    kept = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        det.fill_uninitialized_memory,
        cudnn.benchmark,
        cudnn.deterministic,
        torch.get_float32_matmul_precision(),
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        (torch.get_rng_state(), np.random.get_state(), random.getstate()),
    )
    try:
        yield
    finally:
        threads, deterministic, warn_only, fill, benchmark, cudnn_det, matmul, cublas, rngs = kept
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        det.fill_uninitialized_memory = fill
        cudnn.benchmark, cudnn.deterministic = benchmark, cudnn_det
        torch.set_float32_matmul_precision(matmul)
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
        torch.set_rng_state(rngs[0])
        np.random.set_state(rngs[1])
        random.setstate(rngs[2])


def sweep(
    overrides: Sequence[str],
    sweep_dir: str | Path | None = None,
    config_dir: str | Path | None = None,
    echo: bool = True,
) -> Report:
    """Run `python -m flowers_sweep -m OVERRIDES` in a subprocess and open its report.

    Exactly the CLI's multirun: `hydra/launcher=joblib` or `=submitit_slurm` in the
    overrides launch as they do there; a sweep folder that already holds the runs
    resumes them. `sweep_dir` defaults to a new outputs/multirun/<time> under the
    current folder; `config_dir` is your own config folder. The sweep's output is
    echoed as it comes (`echo=False`: kept quiet).

    Returns the sweep's Report (see `load`); runs that failed are in it with their
    status (the CLI exits 1 then). Raises ConfigError for an override this call sets
    itself, SweepFailedError when the command wrote no run (an unknown group, a folder
    in use: the command's reason is the message), KeyboardInterrupt when interrupted
    (the subprocess is interrupted too; run it again to resume).
    """
    from flowers_sweep.config.overrides import override_text
    from flowers_sweep.job.launch import drop_unused_dirs, unique_dir

    args = [o for o in _override_list(overrides, "sweep") if o not in ("-m", "--multirun")]
    if any(o.lstrip("+").startswith("hydra.sweep.dir=") for o in args):
        raise ConfigError("sweep(...): give the folder as sweep_dir=..., not hydra.sweep.dir")
    made = sweep_dir is None
    if made:
        sweep_dir = unique_dir(f"outputs/multirun/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    folder = Path(sweep_dir).expanduser().resolve()
    command = [sys.executable, "-m", "flowers_sweep", "-m"]
    if config_dir is not None:
        command += ["--config-dir", str(Path(config_dir).expanduser().resolve())]
    command += [*args, f"hydra.sweep.dir={override_text(str(folder))}"]
    before = _stamp(folder)
    try:
        code, output = _run_streamed(command, echo)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"{folder}: sweep interrupted; run the same sweep (same sweep_dir) to resume"
        ) from None
    if _stamp(folder) in (None, before):  # stopped before any job: an old report is not it
        if made:
            drop_unused_dirs()  # the empty folder made above, and its new parents
        raise SweepFailedError(f"the sweep did not start (exit status {code}): {_reason(output)}")
    return load(folder)


def _stamp(folder: Path) -> tuple[int, int] | None:
    """(inode, mtime) of multirun.yaml, which Hydra's sweepers (ours too) write before any
    job: a launch changes it. No clock is compared (a failing sweep can be quick)."""
    from flowers_sweep.record.runrecord import MULTIRUN_FILE

    found = (folder / MULTIRUN_FILE).stat() if (folder / MULTIRUN_FILE).is_file() else None
    return None if found is None else (found.st_ino, found.st_mtime_ns)


def _reason(output: str) -> str:
    """The line of a command's output that says why it stopped: our own one-line error,
    else the first line that is not a log record (Hydra's errors start so), or the
    first line of a traceback's exception (Hydra prints the whole traceback under a
    debugger, or any tracer such as coverage's)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("flowers_sweep:")]
    others = [line for line in lines if not line.startswith("[")]
    if not ours and others and others[0].startswith("Traceback"):
        raw = [line for line in output.splitlines() if line.strip()]
        frames = [i for i, line in enumerate(raw) if line.startswith(" ")]
        if frames and frames[-1] + 1 < len(raw):  # the exception's own first line
            return raw[frames[-1] + 1].strip()
    return (ours or others or lines or ["no output"])[-1 if ours else 0]


def _run_streamed(command: list[str], echo: bool) -> tuple[int, str]:
    """Run `command`, its stdout and stderr echoed as they come; (exit status, output)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    chunks = []
    try:
        while chunk := proc.stdout.read1(65536):
            text = decoder.decode(chunk)
            chunks.append(text)
            if echo:
                sys.stdout.write(text)
                sys.stdout.flush()
        return proc.wait(), "".join(chunks)
    except BaseException:  # Ctrl-C in the notebook: the sweep stops too, resumable
        proc.send_signal(signal.SIGINT)  # the CLI records its runs as interrupted
        proc.wait()
        raise


def load(paths: str | Path | Sequence[str | Path], select: str = "last") -> Report:
    """Open sweep or run folder(s) as a Report, reading files only, writing nothing.

    Its tables are DataFrames: `runs` (one row per run, a column per setting that
    varies), `curves` (one row per run and epoch), `cases` (the accuracy table) and
    `comparisons` (Welch's tests); accuracies are fractions (docs/results.md has the
    schema). `select`: whose test accuracy counts, "last", "best_val" or "ema" weights.

    Raises AggregateError when no run folder is found under the paths.
    """
    from flowers_sweep.aggregate.report import build

    roots = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return build([Path(p).expanduser().resolve() for p in roots], select)
