"""A confirmed search's last table: its best trials, each run again on fresh seeds.

With `hydra.sweeper.confirm.top_k=K` a search ends by running its K best trials again
on seeds they were not searched with (search/confirm.py), in SWEEP_DIR/confirm/
<trial>-seed<s>/. This module reads those runs back (by folder, without Optuna) into
confirmations.csv and a section of results.md.

The confirmed settings are ranked and tested on the searched metric (the search's
`optimized_metric`, best_val_acc by default, in the search's direction), never on test
accuracy: per confirmed trial the metric's mean over its confirmation runs with
Student's t 95% interval, and Welch's t-test against the best mean, Holm-adjusted over
the others. A winner is named only when it is significantly better than every other
confirmed setting. Each setting's mean test accuracy over the same runs, with its t
interval, is then shown as the estimate to report, not chosen on: were the test split
to pick the winner, the winner's test accuracy would be biased upward by the choice
itself.

The trial's own search run is not counted either: it was chosen because it scored best
among many, so its score is biased upward (the winner's curse: a maximum over noisy
estimates overestimates the value it selects; Thaler, The Winner's Curse, 1992; in
model selection, Cawley and Talbot, JMLR 11, 2010, pp. 2079-2107). The fresh seeds
alone give an unbiased estimate; the trial's own numbers are shown beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flowers_sweep.aggregate.markdown import pct, plural
from flowers_sweep.aggregate.runs import fmt
from flowers_sweep.aggregate.search import Search, trial_number
from flowers_sweep.aggregate.stats import ALPHA, holm, t_interval, welch_p
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.record.runrecord import MULTIRUN_FILE, RunRecord, read_yaml
from flowers_sweep.search.confirm import (
    confirm_seeds,
    confirm_settings,
    confirmation_of,
    read_chosen,
)

CONFIRMATIONS_CSV = "confirmations.csv"
NOT_STARTED = "not started"  # a confirmation run the sweep's settings ask for, no folder yet
# confirmations.csv's columns after `trial` and the searched settings
STAT_COLUMNS = (
    *("n", "not_completed", "seeds"),
    *("value_mean", "value_std", "value_ci95_low", "value_ci95_high"),  # the searched metric
    *("diff_best", "p_value", "p_holm", "significant"),  # its tests against the best
    *("test_acc_mean", "test_acc_std", "test_acc_ci95_low", "test_acc_ci95_high"),
    *("trial_value", "trial_test_acc"),  # the trial's own search run
)


def split_runs(runs: Sequence[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """A search's runs as (trials' runs, confirmation runs), each in the given order."""
    confirming = [r for r in runs if confirmation_of(r.path) is not None]
    return [r for r in runs if confirmation_of(r.path) is None], confirming


def search_run_label(run: RunRecord) -> str:
    """A search's run as runs.csv and curves.csv label it: `trial 3`, or for a
    confirmation run `trial 3 confirm seed 1` (never a trial's label, so the figures of
    the best trials draw no confirmation run)."""
    confirming = confirmation_of(run.path)
    if confirming is None:
        return f"trial {trial_number(run.path)}"
    return f"trial {confirming[0]} confirm seed {confirming[1]}"


def confirmations_table(
    search: Search, trials: pd.DataFrame, runs: Sequence[RunRecord]
) -> pd.DataFrame | None:
    """confirmations.csv: one row per confirmed trial, best mean of the searched metric
    first (in the search's direction; ties to the lower trial number); None when the
    search has no confirmation run.

    Columns: `trial`; each searched setting (the trial's values); `n` (completed
    confirmation runs, the only ones counted), `not_completed` (confirmation runs
    without a completed result: stopped, killed, or not started yet where the sweep's
    multirun.yaml and chosen.json say which runs are due), `seeds` (the counted runs'
    seeds, space-separated);
    on the searched metric (`search.metric`, what ranks and tests): `value_mean`,
    `value_std` (sample std, n - 1), `value_ci95_low`, `value_ci95_high` (Student's t
    95% interval of the mean; empty when fewer than 2 values), `diff_best` (this mean
    minus the best's: <= 0 when maximized, >= 0 when minimized), `p_value` (Welch's
    t-test against the best, stats.welch_p; empty for the best and where not testable),
    `p_holm` (Holm-adjusted over the testable comparisons), `significant` (p_holm <
    ALPHA and worse than the best);
    the estimate, shown and never chosen on: `test_acc_mean`, `test_acc_std`,
    `test_acc_ci95_low`, `test_acc_ci95_high` (fractions, stats.t_interval);
    `trial_value` and `trial_test_acc`, the trial's own search run (not counted: the
    winner's curse, see the module's docstring).

    `table.attrs`: "winner", the best trial's number when it is significantly better
    than every other confirmed trial, else None; "seeds", the seeds per trial asked for
    (hydra.sweeper.confirm.seeds in multirun.yaml; None where it does not say: the
    most runs any trial has then stand for it);
    "missing", the runs not completed by status ({"diverged": 1, "not started": 2}).
    """
    if not runs:
        return None
    sweep_dir = Path(runs[0].path).parent.parent
    asked, due = _due(sweep_dir)
    by_trial: dict[int, list[RunRecord]] = {trial: [] for trial in due}
    for run in runs:
        trial, _ = confirmation_of(run.path) or (-1, -1)  # (-1: not a confirmation run)
        by_trial.setdefault(trial, []).append(run)
    seeds = asked or max(len(group) for group in by_trial.values())
    own = {int(r["trial"]): r for r in trials.to_dict("records") if pd.notna(r["trial"])}
    missing: dict[str, int] = {}
    rows = []
    for trial, group in sorted(by_trial.items()):
        found = {confirmation_of(r.path)[1] for r in group}
        unstarted = len(due[trial] - found) if trial in due else max(0, seeds - len(group))
        for status in [r.status for r in group if not _counted(r)] + [NOT_STARTED] * unstarted:
            missing[status] = missing.get(status, 0) + 1
        rows.append(_row(search, trial, group, own.get(trial), unstarted))
    table = (
        pd.DataFrame(rows)
        .sort_values(
            ["value_mean", "trial"],
            ascending=[not search.maximize, True],
            na_position="last",
            kind="stable",
        )
        .reset_index(drop=True)
    )
    table = _tested(table, {t: _values(g, search.metric) for t, g in by_trial.items()}, search)
    winner = table.attrs.get("winner")
    table = table[["trial", *search.params, *STAT_COLUMNS]].copy()
    table.attrs.update(winner=winner, seeds=asked, missing=dict(sorted(missing.items())))
    return table


def _due(sweep_dir: Path) -> tuple[int | None, dict[int, set[int]]]:
    """The seeds per trial the sweep's last launch asked for (multirun.yaml's
    hydra.sweeper.confirm) and each chosen trial's due seeds (chosen.json's first
    top_k); (None, {}) where either cannot be read: the folders alone then tell."""
    try:
        tree = read_yaml(sweep_dir / MULTIRUN_FILE) or {}
        node = ((tree.get("hydra") or {}).get("sweeper") or {}).get("confirm")
        top_k, seeds = confirm_settings(node) if node is not None else (0, 0)
        chosen = read_chosen(sweep_dir) or []
    except (OSError, ValueError, AttributeError, FlowersSweepError):
        return None, {}
    if top_k == 0:
        return None, {}
    return seeds, {c.trial: set(confirm_seeds(c.seed, seeds)) for c in chosen[:top_k]}


def _row(
    search: Search, trial: int, group: list[RunRecord], own: dict[str, Any] | None, unstarted: int
) -> dict[str, Any]:
    done = [r for r in group if _counted(r)]
    row: dict[str, Any] = {"trial": trial}
    for name in search.params:
        if own is not None:
            row[name] = own.get(name)
        elif group:  # the trial's own folder is missing: its values from a confirmation run
            value = group[0].config.get(name)
            row[name] = fmt(value) if isinstance(value, list) else value
        else:
            row[name] = None
    seeds = sorted(int(r.config.get("seed", confirmation_of(r.path)[1])) for r in done)
    row.update(n=len(done), not_completed=len(group) - len(done) + unstarted)
    row["seeds"] = " ".join(str(s) for s in seeds)
    fraction = _is_fraction(search.metric)
    row.update(_summary("value", _values(group, search.metric), fraction))
    row.update(_summary("test_acc", _values(group, "test_acc"), fraction=True))
    row["trial_value"] = _number((own or {}).get("value"))
    row["trial_test_acc"] = _number((own or {}).get("test_acc"))
    return row


def _summary(prefix: str, values: list[float], fraction: bool) -> dict[str, float]:
    """{prefix}_mean, _std (n - 1), _ci95_low, _ci95_high: Student's t 95% interval, cut
    to [0, 1] for a fraction (stats.t_interval); NaN where there are too few values."""
    low, high = _interval(values, fraction) if len(values) >= 2 else (math.nan, math.nan)
    return {
        f"{prefix}_mean": sum(values) / len(values) if values else math.nan,
        f"{prefix}_std": float(pd.Series(values).std()) if len(values) >= 2 else math.nan,
        f"{prefix}_ci95_low": low,
        f"{prefix}_ci95_high": high,
    }


def _interval(values: Sequence[float], fraction: bool) -> tuple[float, float]:
    """Student's t 95% interval of the mean (Student, Biometrika 6(1), 1908): for a
    fraction stats.t_interval, cut to [0, 1]; for another metric (test_loss) uncut."""
    if fraction:
        return t_interval(values)
    from scipy import stats

    mean, sem = sum(values) / len(values), float(stats.sem(values))
    if sem == 0:  # all equal: scipy wants a positive scale; the interval is the point
        return mean, mean
    low, high = stats.t.interval(1 - ALPHA, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def _is_fraction(metric: str) -> bool:
    """Whether the searched metric is an accuracy (a fraction in [0, 1]), not a loss."""
    return "acc" in metric


def _tested(table: pd.DataFrame, values: dict[int, list[float]], search: Search) -> pd.DataFrame:
    """Welch's test, on the searched metric, of every other trial against the best (the
    first row), Holm-adjusted; the winner only where it beats every other one."""
    best = int(table["trial"].iloc[0])
    table["diff_best"] = table["value_mean"] - table["value_mean"].iloc[0]
    table["p_value"] = [
        math.nan if i == 0 else welch_p(values[int(t)], values[best])
        for i, t in enumerate(table["trial"])
    ]
    valid = table["p_value"].notna()
    table["p_holm"] = math.nan
    if valid.any():
        table.loc[valid, "p_holm"] = holm(table.loc[valid, "p_value"].tolist())
    worse = table["diff_best"] < 0 if search.maximize else table["diff_best"] > 0
    table["significant"] = (table["p_holm"] < ALPHA) & worse
    others = table.iloc[1:]
    wins = len(others) > 0 and bool(others["significant"].all())
    table.attrs["winner"] = best if wins else None
    return table


def _counted(run: RunRecord) -> bool:
    """A completed run with a result (read_result checked its test_acc)."""
    return run.status == "completed" and bool(run.result)


def _values(group: Sequence[RunRecord], key: str) -> list[float]:
    """`key` of the group's completed runs, where a number (an older run may lack one)."""
    found = [_number((r.result or {}).get(key)) for r in group if _counted(r)]
    return [v for v in found if not math.isnan(v)]


def _number(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else math.nan


def confirmations_markdown(search: Search, table: pd.DataFrame) -> str:
    """results.md's section on the confirmation: what ranks and what estimates, the
    table, the verdict (a winner only when significantly better than every other
    confirmed setting on the searched metric), and the runs not completed."""
    names, metric = list(search.params), search.metric
    done, due = int(table["n"].sum()), int((table["n"] + table["not_completed"]).sum())
    asked = table.attrs.get("seeds")
    seeds = int(asked or (table["n"] + table["not_completed"]).max())
    key = f"hydra.sweeper.confirm.seeds={seeds}; " if asked else ""
    so_far = f"; {done} of {due} confirmation runs completed, and only those are counted"
    better = "higher" if search.maximize else "lower"
    lines = [
        "## Confirmed on fresh seeds",
        "",
        f"The {plural(len(table), 'best trial')} by {metric}, each run again on "
        f"{plural(seeds, 'seed')} it was not searched with ({key}SWEEP_DIR/confirm/)"
        f"{so_far if done < due else ''}. They are ranked and "
        f"tested on {metric}, the searched metric ({better} is better): its mean with "
        "Student's t 95% interval, each setting against the best by Welch's t-test, "
        "Holm-adjusted. The test accuracy (last epoch's weights, mean and 95% interval) "
        "takes no part in that choice: it is each setting's estimate to report. A trial's "
        "own search run is not counted: it was picked for scoring high, so its score is "
        "biased upward (the winner's curse); it is shown as the search run.",
        "",
    ]
    if metric.startswith("test"):
        lines += [
            f"This search optimized {metric}, a test-split number: the test split did "
            "choose here, so these test accuracies are biased upward too; search on "
            "best_val_acc (the default) to keep them unbiased.",
            "",
        ]
    header = [
        "trial",
        *names,
        "n",
        f"{metric} [95% CI]",
        "vs best: Holm p",
        "test acc [95% CI]",
        f"search run: {metric}, test acc",
    ]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for i, r in enumerate(table.to_dict("records")):
        own = f"{_value(metric, r['trial_value'])}, {_value('test_acc', r['trial_test_acc'])}"
        versus = "best" if i == 0 else _p(r["p_holm"])
        cells = [str(r["trial"]), *(_cell(r[n]) for n in names), str(r["n"])]
        cells += [_estimate(r, "value", metric), versus, _estimate(r, "test_acc", "test_acc")]
        lines.append("| " + " | ".join([*cells, own]) + " |")
    lines += ["", _verdict(search, table), ""]
    if done < due:
        lines += [_missing_line(table.attrs.get("missing") or {}, due - done), ""]
    return "\n".join(lines)


def _estimate(row: dict[str, Any], prefix: str, metric: str) -> str:
    """`81.0% [79.5%, 82.5%]`: a mean with its interval ("none completed" without)."""
    mean = row[f"{prefix}_mean"]
    if math.isnan(mean):
        return "none completed"
    low, high = row[f"{prefix}_ci95_low"], row[f"{prefix}_ci95_high"]
    interval = "" if math.isnan(low) else f" [{_value(metric, low)}, {_value(metric, high)}]"
    return f"{_value(metric, mean)}{interval}"


def _verdict(search: Search, table: pd.DataFrame) -> str:
    best, metric = table.iloc[0], search.metric
    trial = int(best["trial"])
    acc = _estimate(best.to_dict(), "test_acc", "test_acc")
    estimate = f"Its test accuracy on the fresh seeds, {acc}, is the estimate to report for it."
    if len(table) == 1:
        return f"Only trial {trial} was confirmed: there is nothing to compare it with. {estimate}"
    higher, above = ("higher", "above") if search.maximize else ("lower", "below")
    if table.attrs.get("winner") is not None:
        return (
            f"**Confirmed winner: trial {trial}**: its mean {metric} is significantly "
            f"{higher} than every other confirmed setting's (Holm-adjusted p < {ALPHA}). "
            f"{estimate}"
        )
    close = table.iloc[1:][~table.iloc[1:]["significant"]]
    named = ", ".join(f"trial {r['trial']} ({_p(r['p_holm'])})" for r in close.to_dict("records"))
    return (
        "**No confirmed winner: the top settings are not distinguishable with these "
        f"seeds.** Trial {trial} has the {'highest' if search.maximize else 'lowest'} mean "
        f"{metric}, but not significantly {above} {named}: any of them is as good a choice, "
        "and more seeds (hydra.sweeper.confirm.seeds) narrow the intervals."
    )


def _missing_line(missing: dict[str, int], total: int) -> str:
    """The confirmation runs not completed, by status, and what the relaunch does with
    them: it runs each again, from its last checkpoint, as a relaunch of any sweep does
    (app.execute skips only a completed run; search/confirm.py's `pending`)."""
    said = ", ".join(f"{n} {status}" for status, n in missing.items())
    again = (
        " (from the same checkpoint a diverged run may diverge again)"
        if "diverged" in missing
        else ""
    )
    return (
        f"{plural(total, 'confirmation run')} not completed ({said}): left out of the "
        "means; runs.csv lists those with a folder. The same search command runs them, the "
        "failed and diverged ones again too, each from its last checkpoint, as a relaunch "
        f"of any sweep does{again}."
    )


def _p(p_holm: float) -> str:
    return "not testable" if math.isnan(p_holm) else f"p = {p_holm:.3g}"


def _value(metric: str, value: float) -> str:
    """A number of `metric`: a percentage for an accuracy, 4 significant digits else."""
    if math.isnan(value):
        return ""
    return pct(value) if _is_fraction(metric) else f"{value:.4g}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)
