"""What a run folder holds, defined once: its files, its result, its per-epoch metrics
and its settings, with the one reader and the one writer of each.

    RUN_DIR/
      .hydra/config.yaml     the run's composed config (Hydra's; the settings)
      .hydra/hydra.yaml      Hydra's own config, with the group choices (case, model)
      .hydra/overrides.yaml  the command line's overrides
      run_config.json        the settings the folder's run started with (see runfolder.py)
      metrics.csv            one row per completed epoch (METRIC_COLUMNS)
      result.json            the outcome: a completed run's numbers, or why it stopped
      data.json              the data as the model saw it: class names, normalisation
      traceback.txt          where a failed run failed
      trackers.json          the tracker runs it logs to (MLflow, W&B), to continue on resume
      checkpoint.pt          the last completed epoch, for an exact resume
      model.pt               the last epoch's weights (trainer.keep_weights)
      model_best_val.pt      the best validation epoch's weights
      model_ema.pt           the last epoch's EMA of the weights (trainer.ema_decay)

The training loop, the failure path, the sweep's end, the aggregator, `evaluate` and
the search all go through this module, and folders written by every earlier version
still read (tests/data/sweep_v1 is one).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowers_sweep.atomic import atomic_write_text, write_json
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.record.labels import activation_label, model_label, section
from flowers_sweep.record.legacy import upgrade_settings
from flowers_sweep.record.settings import flatten

HYDRA_DIR = ".hydra"  # Hydra's default hydra.output_subdir
CONFIG_FILE = "config.yaml"
HYDRA_FILE = "hydra.yaml"
OVERRIDES_FILE = "overrides.yaml"
METRICS_FILE = "metrics.csv"
RESULT_FILE = "result.json"
DATA_FILE = "data.json"  # class names and normalisation, for evaluate and predict
WEIGHTS_FILE = "model.pt"  # the last epoch's weights, as the report tested
BEST_WEIGHTS_FILE = "model_best_val.pt"  # the weights of the best validation epoch
EMA_WEIGHTS_FILE = "model_ema.pt"  # the last epoch's EMA of the weights (trainer/ema.py)
CHECKPOINT_FILE = "checkpoint.pt"
TRACEBACK_FILE = "traceback.txt"
TRACKERS_FILE = "trackers.json"  # each tracker's run id: a resumed run continues it (loggers/)
RUN_CONFIG_FILE = "run_config.json"
LOCK_FILE = ".run.lock"  # held by the process training in the folder
# A sweep folder holds a run folder per job (Hydra's job number) and these:
MULTIRUN_FILE = "multirun.yaml"  # Hydra's sweepers (ours too) write it first in a sweep folder
SWEEP_LOCK_FILE = ".sweep.lock"  # held by the launch that runs the sweep (job/launch.py)
SWEEP_OWNER_FILE = ".sweep.owner.json"  # who holds it (the lock file itself is truncated)
LAUNCH_DIR = ".launch"  # this launch's notes: a job it could not train, a stop (job/)
STOP_MARK = "stop"  # in LAUNCH_DIR: this launch is stopping (job/stopping.py)
RUNNING_DIR = "running"  # in LAUNCH_DIR: <job number>.json, the pid and host running it
MULTIRUN_BEFORE = "multirun.before.yaml"  # in LAUNCH_DIR: the folder's multirun.yaml
# before this launch (Hydra rewrites it first): put back when a job refuses the launch
REPORT_DIRNAME = "report"  # the sweep's report (aggregate/)
SQLITE_FILE = "optuna.db"  # a search's study, storage=sqlite (search/study.py)
JOURNAL_FILE = "optuna.journal"  # storage=journal
RUN_FILES = (
    METRICS_FILE,
    RESULT_FILE,
    DATA_FILE,
    WEIGHTS_FILE,
    BEST_WEIGHTS_FILE,
    EMA_WEIGHTS_FILE,
    CHECKPOINT_FILE,
    TRACEBACK_FILE,
    TRACKERS_FILE,  # resume=false starts new tracker runs too
)
WEIGHT_FILES = {"last": WEIGHTS_FILE, "best_val": BEST_WEIGHTS_FILE, "ema": EMA_WEIGHTS_FILE}
# --weights NAME -> result.json's key of their test accuracy (aggregate's --select NAME)
TEST_ACC_OF = {"last": "test_acc", "best_val": "test_acc_best_val", "ema": "test_acc_ema"}
# trainer.keep_weights: which files a run keeps; ema: model_ema.pt, last_ema: it and model.pt
KEEP_WEIGHTS = ("last", "best", "both", "none", "ema", "last_ema")
KEPT_FILES = {  # trainer.keep_weights -> the weight files a completed run keeps
    "last": (WEIGHTS_FILE,),
    "best": (BEST_WEIGHTS_FILE,),
    "both": (WEIGHTS_FILE, BEST_WEIGHTS_FILE),
    "none": (),
    "ema": (EMA_WEIGHTS_FILE,),
    "last_ema": (WEIGHTS_FILE, EMA_WEIGHTS_FILE),
}

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_s")
# metrics.csv's columns after METRIC_COLUMNS in a run with trainer.ema_decay: the EMA's
# validation loss and accuracy, as val_loss and val_acc (a run without has none of them)
EMA_METRIC_COLUMNS = ("val_loss_ema", "val_acc_ema")
# result.json's keys after COMPLETED_KEYS in a run with trainer.ema_decay: the last
# epoch's EMA on the test split, as test_acc and test_loss
EMA_RESULT_KEYS = ("test_acc_ema", "test_loss_ema")
# A completed run's final numbers (logged to TensorBoard's HParams; a search's possible
# optimized_metric): each -> the metrics.csv column a trial reports, a search's direction
FINAL_METRICS = {
    "test_acc": ("val_acc", "maximize"),
    "test_loss": ("val_loss", "minimize"),
    "best_val_acc": ("val_acc", "maximize"),
    "test_acc_best_val": ("val_acc", "maximize"),
}
# result.json's keys, in the order they are written.
RUN_KEYS = ("status", "case", "model", "activation", "epochs", "seed")
COMPLETED_KEYS = (
    *RUN_KEYS,
    "test_acc",
    "test_loss",
    "best_val_acc",
    "best_epoch",
    "test_acc_best_val",
    "params",
    "num_classes",
    "train_size",
    "val_size",
    "test_size",
    "wall_s",
    "device",
    "precision",
)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


class RunRecordError(FlowersSweepError, ValueError):
    """A run folder's file that cannot be trusted; the message names the file."""


# --- result.json ---------------------------------------------------------------------


def completed_record(**values: Any) -> dict[str, Any]:
    """A completed run's result, keys in COMPLETED_KEYS order; every key is required."""
    return {"status": "completed", **{k: values[k] for k in COMPLETED_KEYS[1:]}}


def with_tags(record: Mapping[str, Any], tags: Sequence[str] | None) -> dict[str, Any]:
    """The record with the run's `tags` (a list of strings) after its other keys; a run
    without tags has no `tags` key, so its result.json keeps the shape of every earlier
    version."""
    return {**record, "tags": [str(t) for t in tags]} if tags else dict(record)


def stopped_record(
    status: str,
    exc: BaseException,
    epochs_done: int | None,
    best_of: Sequence[Mapping[str, Any]] | None = None,
    traceback: bool = True,
    **run: Any,
) -> dict[str, Any]:
    """The result of a run that did not complete: what it was, and what stopped it.
    `run` gives RUN_KEYS' values (case, model, activation, epochs, seed); `best_of`, the
    metrics.csv rows, adds the best epoch so far (`best_val_acc`, `best_epoch`: a pruned
    trial's); `traceback`: the record names the traceback file."""
    record = {
        "status": status,
        **{k: run.get(k) for k in RUN_KEYS[1:]},
        "error_type": type(exc).__name__,
        "error": str(exc) or type(exc).__name__,
        "epochs_done": epochs_done,
    }
    if best_of is not None:
        best = max(best_of, key=lambda r: float(r["val_acc"]), default=None)
        record["best_val_acc"] = None if best is None else float(best["val_acc"])
        record["best_epoch"] = None if best is None else int(float(best["epoch"]))
    if traceback:
        record["traceback"] = TRACEBACK_FILE
    return record


def evaluation_files(run_dir: Path, suffix: str = "") -> tuple[Path, Path]:
    """Where `evaluate` writes its per-class accuracy table (CSV) and confusion matrix
    (PNG); `suffix` names a split and weights other than the test split's last."""
    run_dir = Path(run_dir)
    return run_dir / f"per_class{suffix}.csv", run_dir / f"confusion_matrix{suffix}.png"


def write_data(run_dir: Path, class_names: Sequence[str], mean: Any, std: Any) -> None:
    """data.json: what a model of the run needs from the data to be used without it."""
    record = {"class_names": list(class_names), "mean": list(mean), "std": list(std)}
    write_json(Path(run_dir) / DATA_FILE, record)


def read_data(run_dir: Path) -> dict[str, Any] | None:
    """data.json, or None for a run from before it existed (or unreadable)."""
    try:
        return json.loads((Path(run_dir) / DATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_result(run_dir: Path, result: Mapping[str, Any]) -> None:
    """Write result.json atomically. A completed result also removes the traceback an
    earlier, stopped attempt of the same run left (it no longer describes the folder)."""
    write_json(Path(run_dir) / RESULT_FILE, result)
    if result.get("status") == "completed":
        (Path(run_dir) / TRACEBACK_FILE).unlink(missing_ok=True)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """result.json, or None while the run has none (it is going, or was killed).

    Raises RunRecordError when the file is unreadable, not a JSON object, or says
    completed without a `test_acc` in [0, 1].
    """
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunRecordError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, dict):
        raise RunRecordError(f"{path}: not a JSON object")
    if result.get("status") == "completed":
        acc = result.get("test_acc")
        if not isinstance(acc, (int, float)) or isinstance(acc, bool) or not 0 <= acc <= 1:
            raise RunRecordError(f"{path}: test_acc={acc!r} is not an accuracy in [0, 1]")
    return result


def result_if(run_dir: Path, status: str) -> dict[str, Any] | None:
    """The folder's result when it says `status`, else None (absent, other, unreadable)."""
    try:
        result = read_result(run_dir)
    except RunRecordError:
        return None
    return result if result is not None and result.get("status") == status else None


def completed_result(run_dir: Path) -> dict[str, Any] | None:
    """The folder's result when its run completed, else None (absent, stopped, unreadable)."""
    return result_if(run_dir, "completed")


# --- metrics.csv ---------------------------------------------------------------------


def write_metrics(run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite the whole (small) table each epoch, so it is never half a row. Columns:
    METRIC_COLUMNS, then EMA_METRIC_COLUMNS when the rows have them (trainer.ema_decay)."""
    columns = METRIC_COLUMNS
    if rows and all(k in rows[0] for k in EMA_METRIC_COLUMNS):
        columns = (*METRIC_COLUMNS, *EMA_METRIC_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in columns})
    atomic_write_text(Path(run_dir) / METRICS_FILE, buf.getvalue())


def read_metrics(
    run_dir: Path, required: Sequence[str] = METRIC_COLUMNS
) -> list[dict[str, float]]:
    """metrics.csv as numbers, one dict per epoch ([] while there is none).

    Raises RunRecordError naming the file when a `required` column is missing or a
    line is not all numbers.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise RunRecordError(f"{path}: no column {', '.join(missing)}")
            rows = []
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append({k: float(v) for k, v in row.items() if k is not None})
                except (TypeError, ValueError):
                    raise RunRecordError(f"{path}: line {line} is not all numbers") from None
    except (OSError, csv.Error) as exc:
        raise RunRecordError(f"{path}: {type(exc).__name__}: {exc}") from exc
    return rows


# --- the settings (Hydra's .hydra/ folder) and the whole record ------------------------


def config_path(run_dir: Path) -> Path:
    """The run's composed config, as Hydra wrote it (and as runfolder.claim keeps it)."""
    return Path(run_dir) / HYDRA_DIR / CONFIG_FILE


def read_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


@dataclass
class RunRecord:
    """One run folder as read back: settings, result and metrics.

    `broken` says why a file could not be read; the fields read before it are kept.
    """

    path: Path
    config: dict[str, Any]  # flattened: "optimizer.lr" -> 0.001
    result: dict[str, Any] | None
    metrics: list[dict[str, float]] = field(default_factory=list)
    broken: str | None = None
    _choices: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        """The result's status; "unfinished" without one, "broken" when unreadable."""
        if self.broken is not None:
            return "broken"
        if self.result is None:
            return "unfinished"
        return str(self.result.get("status", "unknown"))

    @property
    def choices(self) -> dict[str, Any]:
        """Hydra's group choices (case, model); parsed only when asked for, since
        .hydra/hydra.yaml is the largest file of a run folder."""
        if self._choices is None:
            self._choices = hydra_runtime(self.path).get("choices") or {}
        return self._choices

    @property
    def case(self) -> str | None:
        if self.result and "case" in self.result:
            return self.result["case"]
        return self.choices.get("case")

    @property
    def model(self) -> str:
        if self.result and self.result.get("model"):
            return str(self.result["model"])
        return model_label(section(self.config, "model"), self.choices.get("model"))

    @property
    def activation(self) -> str | None:
        if self.result and self.result.get("activation"):
            return str(self.result["activation"])
        return activation_label(section(self.config, "model").get("activation"))


def read_run(path: Path, metric_columns: Sequence[str] = METRIC_COLUMNS) -> RunRecord:
    """One run folder; a file that cannot be read marks the record broken (the caller
    names it) rather than raising. `metric_columns`: those metrics.csv must have."""
    config: dict[str, Any] = {}
    result, metrics = None, []
    where = config_path(path)
    try:
        config = upgrade_settings(flatten(read_yaml(where) or {}))
        where = Path(path) / RESULT_FILE
        result = read_result(path)
        where = Path(path) / METRICS_FILE
        metrics = read_metrics(path, metric_columns)
    except RunRecordError as exc:
        return RunRecord(path, config, result, metrics, str(exc).splitlines()[0])
    except (OSError, ValueError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        return RunRecord(path, config, result, metrics, f"{where}: {type(exc).__name__}: {reason}")
    return RunRecord(path, config, result, metrics)


def find_run_dirs(root: Path, skip: str | None = None) -> list[Path]:
    """Every folder under root that Hydra ran a job in (it has .hydra/config.yaml), in
    natural order (job 2 before job 10); folders under one named `skip` are left out."""
    found = set()
    for cfg in Path(root).rglob(f"{HYDRA_DIR}/{CONFIG_FILE}"):
        run_dir = cfg.parent.parent
        if skip is None or skip not in run_dir.relative_to(root).parts:
            found.add(run_dir)
    return sorted(found, key=natural_key)


def natural_key(path: Path) -> list[tuple[int, int, str]]:
    """Job folders 2 before 10; a number and a name at the same level still compare
    (numbers first) instead of raising TypeError."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts]


def hydra_runtime(run_dir: Path) -> dict[str, Any]:
    """The `hydra.runtime` node of the folder's .hydra/hydra.yaml (the group choices, the
    folder the run was launched from): the one reader of that file; {} without it.

    Raises OSError or yaml.YAMLError when the file is there but unreadable.
    """
    hydra_file = Path(run_dir) / HYDRA_DIR / HYDRA_FILE
    tree = read_yaml(hydra_file) if hydra_file.is_file() else None
    runtime = ((tree or {}).get("hydra") or {}).get("runtime") if isinstance(tree, dict) else None
    return runtime if isinstance(runtime, dict) else {}
