"""A confirmed search's last table: its best trials, each run again on fresh seeds.

With `hydra.sweeper.confirm.top_k=K` a search ends by running its K best trials again
on seeds they were not searched with (search/confirm.py), in SWEEP_DIR/confirm/
<trial>-seed<s>/. This module reads those runs back (by folder, without Optuna) into
confirmations.csv and a section of results.md: per confirmed trial its searched values,
the mean test accuracy over its confirmation runs with Student's t 95% interval, and
Welch's t-test against the best (highest mean) setting, Holm-adjusted over the others.
A winner is named only when it is significantly better than every other confirmed
setting.

The trial's own search run is not counted in its mean: it was chosen because it
scored best among many, so its score is biased upward (the winner's curse: a maximum
over noisy estimates overestimates the value it selects; Thaler, The Winner's Curse,
1992; in model selection, Cawley and Talbot, JMLR 11, 2010, pp. 2079-2107). The fresh
seeds alone give an unbiased estimate; the trial's own numbers are shown beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from flowers_sweep.aggregate.markdown import pct, plural
from flowers_sweep.aggregate.runs import fmt
from flowers_sweep.aggregate.search import Search, trial_number
from flowers_sweep.aggregate.stats import ALPHA, holm, t_interval, welch_p
from flowers_sweep.record.runrecord import RunRecord
from flowers_sweep.search.confirm import confirmation_of

CONFIRMATIONS_CSV = "confirmations.csv"
# results.md's columns after the searched settings (the searched metric's mean between)
COLUMNS = ("n", "test acc [95% CI]", "search run: value, test acc", "vs best: Holm p")


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
    """confirmations.csv: one row per confirmed trial, best mean test accuracy first;
    None when the search has no confirmation run.

    Columns: `trial`; each searched setting (the trial's values); `n` (completed
    confirmation runs, the only ones counted), `not_completed` (confirmation runs
    without a completed result), `seeds` (the counted runs' seeds, space-separated);
    `test_acc_mean`, `test_acc_std` (sample std, n - 1), `ci95_low`, `ci95_high`
    (Student's t 95% interval of the mean, stats.t_interval; empty when n < 2), all
    fractions; `value_mean`, the searched metric's mean over the same runs; `trial_value`
    and `trial_test_acc`, the trial's own search run (not counted: the winner's curse,
    see the module's docstring); `diff_best` (this mean minus the best's, <= 0), `p_value`
    (Welch's t-test against the best, stats.welch_p; empty for the best and where not
    testable), `p_holm` (Holm-adjusted over the testable comparisons), `significant`
    (p_holm < ALPHA). `table.attrs["winner"]` is the best trial's number when it is
    significantly better than every other confirmed trial, else None.
    """
    if not runs:
        return None
    by_trial: dict[int, list[RunRecord]] = {}
    for run in runs:
        trial, _ = confirmation_of(run.path) or (-1, -1)  # (-1: not a confirmation run)
        by_trial.setdefault(trial, []).append(run)
    own = {int(r["trial"]): r for r in trials.to_dict("records") if pd.notna(r["trial"])}
    rows = [_row(search, n, group, own.get(n)) for n, group in sorted(by_trial.items())]
    table = pd.DataFrame(rows)
    table = table.sort_values(
        ["test_acc_mean", "trial"], ascending=[False, True], na_position="last", kind="stable"
    ).reset_index(drop=True)
    return _tested(table, by_trial)


def _row(
    search: Search, trial: int, group: list[RunRecord], own: dict[str, Any] | None
) -> dict[str, Any]:
    done = [r for r in group if r.status == "completed" and r.result]
    accs = _accs(group)
    values = [_number((r.result or {}).get(search.metric)) for r in done]
    row: dict[str, Any] = {"trial": trial}
    for name in search.params:
        if own is not None:
            row[name] = own.get(name)
        else:  # the trial's own folder is missing: its values from a confirmation run
            value = group[0].config.get(name)
            row[name] = fmt(value) if isinstance(value, list) else value
    seeds = sorted(int(r.config.get("seed", confirmation_of(r.path)[1])) for r in done)
    low, high = t_interval(accs) if len(accs) >= 2 else (math.nan, math.nan)
    row.update(
        n=len(accs),
        not_completed=len(group) - len(done),
        seeds=" ".join(str(s) for s in seeds),
        test_acc_mean=sum(accs) / len(accs) if accs else math.nan,
        test_acc_std=float(pd.Series(accs).std()) if len(accs) >= 2 else math.nan,
        ci95_low=low,
        ci95_high=high,
        value_mean=_mean([v for v in values if not math.isnan(v)]),
        trial_value=_number((own or {}).get("value")),
        trial_test_acc=_number((own or {}).get("test_acc")),
    )
    return row


def _tested(table: pd.DataFrame, by_trial: dict[int, list[RunRecord]]) -> pd.DataFrame:
    """Welch's test of every other trial against the best (the first row), Holm-adjusted."""

    best = int(table["trial"].iloc[0])
    table["diff_best"] = table["test_acc_mean"] - table["test_acc_mean"].iloc[0]
    table["p_value"] = [
        math.nan if i == 0 else welch_p(_accs(by_trial[int(t)]), _accs(by_trial[best]))
        for i, t in enumerate(table["trial"])
    ]
    valid = table["p_value"].notna()
    table["p_holm"] = math.nan
    if valid.any():
        table.loc[valid, "p_holm"] = holm(table.loc[valid, "p_value"].tolist())
    table["significant"] = (table["p_holm"] < ALPHA) & (table["diff_best"] < 0)
    others = table.iloc[1:]
    wins = len(others) > 0 and bool(others["significant"].all())
    table.attrs["winner"] = best if wins else None
    return table


def _accs(group: Sequence[RunRecord]) -> list[float]:
    """The test accuracies of the group's completed runs (read_result checked each)."""
    return [float(r.result["test_acc"]) for r in group if r.status == "completed" and r.result]


def _number(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else math.nan


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def confirmations_markdown(search: Search, table: pd.DataFrame) -> str:
    """results.md's section on the confirmation: the table, then the verdict (a winner
    only when significantly better than every other confirmed setting)."""
    names = list(search.params)
    seeds = int(table["n"].max()) if len(table) else 0
    lines = [
        "## Confirmed on fresh seeds",
        "",
        f"The {plural(len(table), 'best trial')} by {search.metric}, each run again on "
        f"{plural(seeds, 'seed')} it was not searched with (SWEEP_DIR/confirm/). A trial's "
        "own search run is not counted: it was picked for scoring high, so its score is "
        "biased upward (the winner's curse). Test accuracy of the last epoch's weights: "
        "mean and Student's t 95% interval; each setting is compared with the best by "
        "Welch's t-test, Holm-adjusted. The search run is the trial's own (not counted).",
        "",
        "| "
        + " | ".join(["trial", *names, *COLUMNS[:2], f"{search.metric} (mean)", *COLUMNS[2:]])
        + " |",
        "|---" * (len(names) + 6) + "|",
    ]
    for i, r in enumerate(table.to_dict("records")):
        interval = f" [{pct(r['ci95_low'])}, {pct(r['ci95_high'])}]" if r["n"] >= 2 else ""
        acc = f"{pct(r['test_acc_mean'])}{interval}" if r["n"] else "none completed"
        own = f"{_cell(r['trial_value'])}, {_cell_pct(r['trial_test_acc'])}"
        versus = "best" if i == 0 else _p(r["p_holm"])
        cells = [str(r["trial"]), *(_cell(r[n]) for n in names), str(r["n"]), acc]
        lines.append("| " + " | ".join([*cells, _cell(r["value_mean"]), own, versus]) + " |")
    lines += ["", _verdict(table), ""]
    missing = int(table["not_completed"].sum())
    if missing:
        lines += [
            f"{plural(missing, 'confirmation run')} not completed (left out; runs.csv lists "
            "them): the same search command finishes them.",
            "",
        ]
    return "\n".join(lines)


def _verdict(table: pd.DataFrame) -> str:
    best = int(table["trial"].iloc[0])
    if len(table) == 1:
        return f"Only trial {best} was confirmed: there is nothing to compare it with."
    if table.attrs.get("winner") is not None:
        return (
            f"**Confirmed winner: trial {best}**: its mean test accuracy is significantly "
            f"higher than every other confirmed setting's (Holm-adjusted p < {ALPHA})."
        )
    close = table.iloc[1:][~table.iloc[1:]["significant"]]
    named = ", ".join(f"trial {r['trial']} ({_p(r['p_holm'])})" for r in close.to_dict("records"))
    return (
        "**No confirmed winner: the top settings are not distinguishable with these "
        f"seeds.** Trial {best} has the highest mean test accuracy, but not significantly "
        f"above {named}. More seeds (hydra.sweeper.confirm.seeds) narrow the intervals."
    )


def _p(p_holm: float) -> str:
    return "not testable" if math.isnan(p_holm) else f"p = {p_holm:.3g}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _cell_pct(value: float) -> str:
    return "" if math.isnan(value) else pct(value)
