"""The runs of one or more sweep folders, read and labelled by case.

Reading a run folder is runrecord.py's job; this module finds the folders under
several roots (leaving out a report folder), names each run's case, and gives
runs.csv's table: one row per run, with its settings, status and numbers.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.record.labels import case_label, fold_of, optimizer_label, section
from flowers_sweep.record.runrecord import (
    CONFIG_FILE,
    HYDRA_DIR,
    REPORT_DIRNAME,
    RunRecord,
    natural_key,
    read_run,
)
from flowers_sweep.record.runrecord import find_run_dirs as find_run_dirs_under
from flowers_sweep.record.settings import is_execution_setting as execution

CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "lr")  # what the figures read
# What tells the runs of one case apart, never a case's setting: the training seed, and
# the cross-validation fold (data/folds.py); results.csv's n counts seeds x folds.
REPLICATES = ("seed", "dataset.fold")
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
# runs.csv's columns that only some sweeps have: a run's tags, its EMA's test accuracy
# (trainer.ema_decay); like RUN_COLUMNS, results rather than settings.
OPTIONAL_COLUMNS = ("tags", "test_acc_ema")


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
    if not roots:
        raise AggregateError("no folder given: pass one or more sweep or run folders")
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


def _key(value: Any) -> Hashable:
    """A setting's value as a set member: equal only for the same type and value (1,
    1.0 and True are three values), lists and the like by their JSON."""
    if value is None or isinstance(value, (str, int, float)):
        return (type(value).__name__, "nan" if value != value else value)
    return json.dumps(value, default=str)


# Groups whose presets are `# @package _global_` (conf/experiment/): their keys span
# the other groups, so any varying key may follow the preset's name.
GLOBAL_GROUPS = ("experiment",)


def chosen_groups(runs: Sequence[RunRecord], keys: Sequence[str]) -> dict[str, Any]:
    """Config groups (other than the model's) whose preset differs between the runs, each
    with a test of which of `keys` its preset's name implies (one value per preset):
    those are labelled `group=preset` rather than key by key. An experiment preset
    (GLOBAL_GROUPS) comes first and may imply any key, so `-m experiment=report,modern`
    labels as `experiment=report` and `experiment=modern`, whatever they set."""
    found: dict[str, Any] = {}
    groups = sorted({k.split(".", 1)[0] for k in keys if "." in k} - {"model"})
    for group in [*GLOBAL_GROUPS, *groups]:
        names = [r.choices.get(group) for r in runs]
        if None in names or len(set(map(str, names))) < 2:
            continue

        def follows(key: str, names: list = names) -> bool:
            seen: dict[str, set[str]] = {}
            for name, r in zip(names, runs, strict=True):
                seen.setdefault(str(name), set()).add(_key(r.config.get(key)))
            return all(len(v) == 1 for v in seen.values())

        mine = keys if group in GLOBAL_GROUPS else [k for k in keys if k.startswith(f"{group}.")]
        if any(follows(k) for k in mine):
            found[group] = follows
            if group in GLOBAL_GROUPS:  # what the experiment implies is not another group's
                keys = [k for k in keys if not follows(k)]
    return found


def implied_by(chosen: dict[str, Any], key: str) -> bool:
    """Whether one of chosen_groups' presets implies `key`."""
    return any(
        test(key)
        for group, test in chosen.items()
        if group in GLOBAL_GROUPS or key.startswith(f"{group}.")
    )


def varying_settings(runs: Sequence[RunRecord]) -> list[str]:
    """The dotted config keys whose value differs between the runs, sorted: every key
    but the seed, the fold (REPLICATES) and the execution settings
    (settings.EXECUTION_SETTINGS). A run whose config could not be read (no keys at
    all) takes no part."""
    runs = [r for r in runs if r.config]
    keys = {k for r in runs for k in r.config} - set(REPLICATES)
    return sorted(
        k for k in keys if not execution(k) and len({_key(r.config.get(k)) for r in runs}) > 1
    )


def _experiment(run: RunRecord) -> str:
    """What makes the run's experiment: its case and settings, but the seed, the fold
    and the execution settings (two runs with the same are seeds or folds of one case)."""
    settings = {k: v for k, v in run.config.items() if k not in REPLICATES and not execution(k)}
    return json.dumps([run.case, sorted(settings.items())], default=str)


def case_labels(runs: Sequence[RunRecord], varying: Sequence[str] | None = None) -> list[str]:
    """Each run's case label (runs.csv's `case`), in the runs' order.

    A completed run's label says what varies among the completed runs only (see
    `_labels_among`), so a failed run with other settings does not lengthen every
    case's label. A run that did not complete takes the label of a completed run with
    its settings (another seed of that case); one whose settings no completed run has is
    labelled among all the runs (a run whose config could not be read: by its case or
    model and activation alone). `varying`: varying_settings(runs), when known.
    """
    done = [i for i, r in enumerate(runs) if r.status == "completed"]
    rest = [i for i, r in enumerate(runs) if r.status != "completed"]
    if not rest:
        return _labels_among(runs, varying)
    labels = [""] * len(runs)
    for i, label in zip(done, _labels_among([runs[i] for i in done]), strict=True):
        labels[i] = label
    twin = {_experiment(runs[i]): labels[i] for i in done}
    among_all = _labels_among(runs, varying) if any(runs[i].config for i in rest) else []
    for i in rest:
        run = runs[i]
        if not run.config:
            labels[i] = case_label(run.case, run.model, run.activation)
        else:
            labels[i] = twin.get(_experiment(run), among_all[i])
    return labels


def _labels_among(runs: Sequence[RunRecord], varying: Sequence[str] | None = None) -> list[str]:
    """Each run's label among these runs: its `case`, else model-activation; plus
    whatever else varies among them but the seed.

    Settings that do not change the experiment (device, threads, workers, resume: the
    ones a relaunch may change) never split a case, so sweeps merged from several
    machines give one row per case.

    Model keys that only follow the model's name (its block counts, say) are implied by
    it and left out, so `model=resnet18,resnet34` labels as resnet18-relu, resnet34-relu;
    likewise another group's keys that follow its preset: `dataset=cifar10,cifar100`
    labels as resnet18-relu-dataset=cifar10, not by the datasets' targets and numbers.
    """
    varying = varying_settings(runs) if varying is None else varying

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
    extras = [k for k in extras if not implied_by(chosen, k)]
    labels = []
    for r in runs:
        base = case_label(r.case, r.model, r.activation)
        parts = [f"{group}={r.choices.get(group)}" for group in chosen]
        parts += [
            f"{_short(k, extras)}={fmt(r.config.get(k))}"
            for k in extras
            if not (k.startswith("model.activation.") and r.config.get(k) is None)
        ]  # relu has no `approximate`: its label says nothing of it
        labels.append("-".join([str(base), *parts]))
    return labels


def setting_columns(varying: Sequence[str]) -> dict[str, str]:
    """The varying settings' columns of runs.csv and curves.csv: config key -> column
    name, the dotted key itself (`trainer.batch_size`), or `config.KEY` where that
    would be one of RUN_COLUMNS."""
    return {k: f"config.{k}" if k in RUN_COLUMNS else k for k in varying}


def setting_value(value: Any) -> Any:
    """A setting as a table cell: a number or text as it is, a list as labels show it."""
    return fmt(value) if isinstance(value, (list, tuple)) else value


def runs_table(runs: Sequence[RunRecord], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """runs.csv: one row per run, whatever its status.

    Columns: `case` (its label, `labels` or case_labels'), then each setting that varies
    across the runs, by its dotted config key (setting_columns; lists as `[40,70]`),
    then RUN_COLUMNS' others. `run_dir` is the folder's absolute path (resolved).
    Accuracies are fractions in [0, 1]; `wall_s` is seconds; `params` a count. When a
    run has folds (`dataset.folds`), a `fold` column after `seed` holds each run's
    (labels.fold_of; empty for a run without); when a run has `tags`, a `tags` column
    after those holds each run's, comma-separated. When a run recorded `test_acc_ema`
    (trainer.ema_decay: its model EMA's test accuracy), a `test_acc_ema` column after
    `test_acc_best_val` holds it (empty for a run without).
    """
    tagged = any(run.config.get("tags") for run in runs)
    averaged = any((run.result or {}).get("test_acc_ema") is not None for run in runs)
    folded = any(fold_of(run.config) is not None for run in runs)
    varying = varying_settings(runs)
    labels = case_labels(runs, varying) if labels is None else labels
    settings = setting_columns(varying)
    rows = []
    for run, label in zip(runs, labels, strict=True):
        res, cfg = run.result or {}, run.config
        milestones = cfg.get("scheduler.milestones")
        row = {"case": label}
        row.update({col: setting_value(cfg.get(k)) for k, col in settings.items()})
        row.update(
            {
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
                "run_dir": str(Path(run.path).resolve()),
            }
        )
        if folded:
            row["fold"] = fold_of(cfg)
        if tagged:
            row["tags"] = ",".join(str(tag) for tag in cfg.get("tags") or [])
        if averaged:
            row["test_acc_ema"] = res.get("test_acc_ema")
        rows.append(row)
    columns = list(RUN_COLUMNS[1:])
    if averaged:
        columns.insert(columns.index("test_acc_best_val") + 1, "test_acc_ema")
    extra = [name for name, wanted in (("fold", folded), ("tags", tagged)) if wanted]
    at = columns.index("seed") + 1
    columns[at:at] = extra
    table = pd.DataFrame(rows, columns=["case", *settings.values(), *columns])
    whole = [*settings.values(), *(["fold"] if folded else [])]
    for column in whole:  # 5 stays 5 beside a run without the key, not 5.0
        table[column] = setting_series([row[column] for row in rows])
    return table


def setting_series(values: Sequence[Any]) -> pd.Series:
    """A setting's column: whole numbers as Int64 (missing where a run has no such
    key), anything else as pandas infers it."""
    known = [v for v in values if v is not None]
    if known and all(isinstance(v, int) and not isinstance(v, bool) for v in known):
        return pd.Series(values, dtype="Int64")
    return pd.Series(values, dtype=object).infer_objects()
