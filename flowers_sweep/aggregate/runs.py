"""The runs of one or more sweep folders, read and labelled by case.

Reading a run folder is runrecord.py's job; this module finds the folders under
several roots (leaving out a report folder), names each run's case, and gives
runs.csv's table: one row per run, with its settings, status and numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.labels import optimizer_label, section
from flowers_sweep.runrecord import (
    CONFIG_FILE,
    HYDRA_DIR,
    RunRecord,
    natural_key,
    read_run,
)
from flowers_sweep.runrecord import find_run_dirs as find_run_dirs_under
from flowers_sweep.settings import is_execution_setting as execution

REPORT_DIRNAME = "report"
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "lr")  # what the figures read
RUN_COLUMNS = [  # runs.csv's columns, in order
    "case",
    "model",
    "activation",
    "optimizer",
    "lr",
    "milestones",
    "gamma",
    "epochs",
    "seed",
    "status",
    "test_acc",
    "test_acc_best_val",
    "best_epoch",
    "best_val_acc",
    "params",
    "wall_s",
    "run_dir",
]


class AggregateError(FlowersSweepError):
    """Nothing to aggregate, or a folder that is not a sweep."""


def find_run_dirs(roots: Sequence[Path]) -> list[Path]:
    """Every run folder under the roots, but those of a report folder."""
    found: list[Path] = []
    for root in roots:
        if not Path(root).is_dir():
            raise AggregateError(f"{root}: no such folder (expected a sweep or run folder)")
        found += find_run_dirs_under(root, skip=REPORT_DIRNAME)
    return sorted(set(found), key=natural_key)


def load_runs(roots: Sequence[Path]) -> list[RunRecord]:
    """Every run under the roots, in folder order; a run that cannot be read is kept,
    marked broken (see RunRecord.broken)."""
    dirs = find_run_dirs(roots)
    if not dirs:
        names = ", ".join(str(r) for r in roots)
        raise AggregateError(f"{names}: no run folders found (none has {HYDRA_DIR}/{CONFIG_FILE})")
    return [read_run(d, CURVE_COLUMNS) for d in dirs]


def fmt(value: Any) -> str:
    """A setting as a label shows it: 0.001, [40,70]."""
    if isinstance(value, list):
        return "[" + ",".join(fmt(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _short(key: str, keys: Sequence[str]) -> str:
    """The last part of a dotted key, unless another varying key ends the same way."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def _key(value: Any) -> str:
    return json.dumps(value, default=str)


def chosen_groups(runs: Sequence[RunRecord], keys: Sequence[str]) -> dict[str, Any]:
    """Config groups (other than the model's) whose preset differs between the runs, each
    with a test of which of `keys` its preset's name implies (one value per preset):
    those are labelled `group=preset` rather than key by key."""
    found: dict[str, Any] = {}
    for group in sorted({k.split(".", 1)[0] for k in keys if "." in k} - {"model"}):
        names = [r.choices.get(group) for r in runs]
        if None in names or len(set(map(str, names))) < 2:
            continue

        def follows(key: str, names: list = names) -> bool:
            seen: dict[str, set[str]] = {}
            for name, r in zip(names, runs, strict=True):
                seen.setdefault(str(name), set()).add(_key(r.config.get(key)))
            return all(len(v) == 1 for v in seen.values())

        if any(follows(k) for k in keys if k.startswith(f"{group}.")):
            found[group] = follows
    return found


def case_labels(runs: Sequence[RunRecord]) -> list[str]:
    """The run's `case`, else model-activation; plus whatever else varies but the seed.

    Settings that do not change the experiment (device, threads, workers, resume: the
    ones a relaunch may change) never split a case, so sweeps merged from several
    machines give one row per case.

    Model keys that only follow the model's name (its block counts, say) are implied by
    it and left out, so `model=resnet18,resnet34` labels as resnet18-relu, resnet34-relu;
    likewise another group's keys that follow its preset: `dataset=cifar10,cifar100`
    labels as resnet18-relu-dataset=cifar10, not by the datasets' targets and numbers.
    """
    keys = sorted(k for k in {k for r in runs for k in r.config} - {"seed"} if not execution(k))
    varying = [k for k in keys if len({_key(r.config.get(k)) for r in runs}) > 1]

    def implied(key: str) -> bool:
        if key in ("model.activation", "model.activation._target_"):
            return True  # in the label's base
        if not key.startswith("model."):
            return False
        # an activation node's own keys (alpha) follow its label, as block counts follow
        # the model's: shown only where one label has several values
        of_activation = key.startswith("model.activation.")
        by_base: dict[tuple, set[str]] = {}
        for r in runs:
            base = (r.case or r.model, r.activation if of_activation else None)
            by_base.setdefault(base, set()).add(_key(r.config.get(key)))
        return all(len(v) == 1 for v in by_base.values())

    extras = [k for k in varying if not implied(k)]
    chosen = chosen_groups(runs, extras)  # dataset=cifar10, not its keys one by one
    extras = [k for k in extras if not chosen.get(k.split(".", 1)[0], lambda _: False)(k)]
    labels = []
    for r in runs:
        base = r.case or "-".join(x for x in (r.model, r.activation) if x is not None)
        parts = [f"{group}={r.choices.get(group)}" for group in chosen]
        parts += [
            f"{_short(k, extras)}={fmt(r.config.get(k))}"
            for k in extras
            if not (k.startswith("model.activation.") and r.config.get(k) is None)
        ]  # relu has no `approximate`: its label says nothing of it
        labels.append("-".join([str(base), *parts]))
    return labels


def runs_table(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """runs.csv: one row per run (RUN_COLUMNS), whatever its status."""
    rows = []
    for run, label in zip(runs, case_labels(runs), strict=True):
        res, cfg = run.result or {}, run.config
        milestones = cfg.get("scheduler.milestones")
        rows.append(
            {
                "case": label,
                "model": run.model,
                "activation": run.activation,
                "optimizer": optimizer_label(section(cfg, "optimizer")),
                "lr": cfg.get("optimizer.lr"),
                "milestones": fmt(milestones) if milestones is not None else "",
                "gamma": cfg.get("scheduler.gamma"),
                "epochs": cfg.get("trainer.epochs"),
                "seed": cfg.get("seed"),
                "status": run.status,
                "test_acc": res.get("test_acc"),
                "test_acc_best_val": res.get("test_acc_best_val"),
                "best_epoch": res.get("best_epoch"),
                "best_val_acc": res.get("best_val_acc"),
                "params": res.get("params"),
                "wall_s": res.get("wall_s"),
                "run_dir": str(run.path),
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)
