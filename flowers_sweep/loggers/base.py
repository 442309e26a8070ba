"""What a logger is, what it is given, and what a run folder keeps of its tracker runs.

A logger is built by the run from the `logger` node (a `_partial_` target) with the
arguments of LOGGER_ARGUMENTS that its signature names; it is then called once per epoch
with the row metrics.csv gets, once at the end with the settings and final metrics, and
closed however the run ends.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from flowers_sweep.atomic import read_json, write_json
from flowers_sweep.config import targets
from flowers_sweep.errors import ConfigError, FlowersSweepError
from flowers_sweep.record.labels import fold_of
from flowers_sweep.record.runfolder import in_sweep
from flowers_sweep.record.runrecord import METRICS_FILE, RESULT_FILE, TRACKERS_FILE

log = logging.getLogger("flowers_sweep")

# What the run supplies to a logger whose signature names it:
#   run_dir        Path, the run folder
#   resumed_after  int, the last epoch of the checkpoint it resumes from (0: a new run)
#   settings       dict, the flattened settings that make the experiment (HParams')
#   tags           list[str], the run's `tags`
#   name           str, a label for the run: its job number in a sweep, case and seed
LOGGER_ARGUMENTS = ("run_dir", "resumed_after", "settings", "tags", "name")
FINAL_PREFIX = "final/"  # final metrics' names, apart from the per-epoch curves


class RunLogger(Protocol):
    """What the loop calls: once per epoch with its metrics.csv row, once at the end."""

    def log_epoch(self, row: dict[str, float]) -> None: ...
    def log_final(self, settings: dict[str, Any], metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class NoLogger:
    """Nothing beyond metrics.csv and result.json."""

    def log_epoch(self, row: dict[str, float]) -> None:
        pass

    def log_final(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def build_logger(
    node: DictConfig | Mapping[str, Any] | None,
    run_dir: Path,
    resumed_after: int,
    settings: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    label: str | None = None,
) -> RunLogger:
    """The `logger` node's target (TensorBoardLogger, MLflowLogger, WandbLogger,
    ManyLoggers, NoLogger, or a user's class with RunLogger's three methods), given
    those of LOGGER_ARGUMENTS it names; None: no logger. `label`: the run's case (or
    model and activation), for its name in a tracker (run_name).

    Raises ConfigError when the node's target does not import, or its tracker cannot
    start (one line; the exception it raised is chained).
    """
    if node is None:
        return NoLogger()
    supplied = supplied_arguments(run_dir, resumed_after, settings, tags, label)
    try:  # the node's keys and extras were checked with the config (config/validate.py)
        return targets.build(node, key="logger", **supplied)
    except FlowersSweepError:
        raise
    except Exception as exc:  # a tracker that cannot start: one line (traceback.txt has all)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigError(
            f"logger: {node['_target_']} could not start: {type(exc).__name__}: {first}"
        ) from exc


def supplied_arguments(
    run_dir: Path,
    resumed_after: int,
    settings: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    label: str | None = None,
) -> dict[str, Any]:
    """LOGGER_ARGUMENTS' values for one run."""
    run_dir, settings = Path(run_dir), dict(settings or {})
    return {
        "run_dir": run_dir,
        "resumed_after": resumed_after,
        "settings": settings,
        "tags": [str(t) for t in tags],
        "name": run_name(run_dir, label, settings.get("seed"), fold_of(settings)),
    }


def require(module: str, extra: str, key: str) -> None:
    """Raise ConfigError naming the extra to install when `module` does not import."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{key}: the {module} package is not installed; install it with "
            f"pip install 'flowers_sweep[{extra}]' (or pick another logger: "
            "logger=tensorboard, logger=none)"
        )


def sweep_label(run_dir: Path) -> str | None:
    """The sweep a job folder belongs to, as a tracker groups by: the sweep folder's
    path relative to the working directory when it is under it (outputs/multirun/...),
    else absolute; None for a run outside a sweep."""
    run_dir = Path(run_dir).absolute()
    if not in_sweep(run_dir):
        return None
    sweep = run_dir.parent
    try:
        return str(sweep.relative_to(Path.cwd()))
    except ValueError:
        return str(sweep)


def run_name(run_dir: Path, label: str | None, seed: Any, fold: Any = None) -> str:
    """What a tracker lists a run as: `#3 resnet18-relu seed=1` for job 3 of a sweep,
    `resnet18-relu seed=1` for a run alone (its folder's name without a label), with
    ` fold=2` after the seed for a cross-validation run (labels.fold_of)."""
    head = f"#{Path(run_dir).name} " if in_sweep(run_dir) else ""
    tail = f" seed={seed}" if seed is not None else ""
    tail += f" fold={fold}" if fold is not None else ""
    return f"{head}{label or Path(run_dir).name}{tail}"


# --- trackers.json: the tracker runs a run folder logs to ------------------------------


def read_note(run_dir: Path, tracker: str) -> dict[str, Any]:
    """What the run folder remembers of its run in `tracker` (empty: none yet)."""
    path = Path(run_dir) / TRACKERS_FILE
    try:
        note = read_json(path).get(tracker)
    except (OSError, ValueError, AttributeError):
        return {}
    return dict(note) if isinstance(note, dict) else {}


def write_note(run_dir: Path, tracker: str, values: Mapping[str, Any]) -> None:
    """Remember `values` for `tracker`, beside the other trackers' notes (atomically:
    a kill leaves the old note or the new one). One process trains in a run folder at a
    time (runfolder.hold), so there is no other writer."""
    path = Path(run_dir) / TRACKERS_FILE
    try:
        notes = read_json(path)
        notes = notes if isinstance(notes, dict) else {}
    except (OSError, ValueError):
        notes = {}
    notes[tracker] = dict(values)
    write_json(path, notes)


class Guarded:
    """Calls to a tracker that must not end the run: a tracking server that stops
    answering costs its points (metrics.csv keeps every epoch), not hours of training.
    The first failure is logged as a warning; later ones at debug level."""

    def __init__(self, tracker: str) -> None:
        self.tracker = tracker
        self.warned = False

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            level = logging.DEBUG if self.warned else logging.WARNING
            self.warned = True
            log.log(
                level,
                "%s: could not %s (%s: %s); %s and %s have it",
                self.tracker,
                what,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                METRICS_FILE,
                RESULT_FILE,
            )
            return None


def env_or(name: str, default: str | None) -> str | None:
    """An environment variable's value when set and not empty, else `default`."""
    return os.environ.get(name) or default
