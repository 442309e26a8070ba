"""The report's text: results.md (the table of cases and the pairwise comparisons) and
what a terminal shows of it. Numbers come from the tables (tables.py, stats.py); this
module only words and rounds them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from flowers_sweep.aggregate.stats import ALPHA
from flowers_sweep.record.runrecord import TEST_ACC_OF

CASE_HEAD = ("| case | model | activation | epochs | accuracy |", "|---|---|---|---|---|")
SPREAD_HEAD = (" n | 95% CI |", "---|---|")  # columns added when a case has seeds
TESTS_HEAD = ("| case A | case B | A - B | p | p (Holm) | verdict |", "|---|---|---|---|---|---|")
MIXED_HEAD = (  # where some pairs had the paired test and some Welch's: a column says which
    "| case A | case B | A - B | test | p | p (Holm) | verdict |",
    "|---|---|---|---|---|---|---|",
)
TEST_NAMES = {  # stats.pairwise_tests' `test` column, as results.md names the tests
    "welch": "Welch's t-test",
    "paired": "Paired t-test (runs matched by seed and fold)",
    "mixed": "Welch's t-test, or the paired t-test where two cases ran the same seeds and "
    "folds (column test),",
}
UNTESTABLE = {  # why a pair has no p-value, by its test
    "welch": "no spread in either case",
    "paired": "the same difference in every pair of runs",
}
WEIGHTS = {
    "last": "the last epoch's weights, as in the report",
    "best_val": "the weights of each run's best validation epoch",
    "ema": "each run's model EMA (trainer.ema_decay) after its last epoch",
}


def _lacking(count: int, select: str) -> str:
    return f"{plural(count, 'completed run')} without {TEST_ACC_OF[select]}"


SHOWN_APART = 10  # runs listed by name below the table; runs.csv has them all


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`1 run`, `2 runs` (`nouns`: an irregular plural)."""
    return f"{n} {noun}" if n == 1 else f"{n} {nouns or noun + 's'}"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def results_markdown(
    results: pd.DataFrame,
    tests: pd.DataFrame,
    skipped: int,
    select: str = "last",
    pruned: int = 0,
    apart: pd.DataFrame | None = None,
    twins: Sequence[tuple[str, object, list[str]]] = (),
    lacking: int = 0,
) -> str:
    """results.md: a row per case, then the comparisons, then what was left out: runs
    that did not complete (`skipped`, a count), completed runs without the selected
    weights' accuracy (`lacking`: no EMA, say), and apart, runs the search's pruner
    stopped. `apart` (runs.csv's rows: case, status, run_dir) are the runs that did not
    complete with settings no case has: listed by label, so that their settings do not
    lengthen the cases' labels. `twins`: runs sharing a case and seed
    (tables.shared_seeds), each group named under the table."""
    if results.empty:  # no table without a row: say so instead
        lines = [
            "# Results",
            "",
            "No run has completed: runs.csv lists every run and its status.",
            "",
        ]
        if skipped:
            lines += [f"{plural(skipped, 'run')} not completed.", ""]
        if lacking:
            lines += [_lacking(lacking, select), ""]
        if pruned:
            lines += [f"{plural(pruned, 'run')} stopped early by the search's pruner.", ""]
        return "\n".join(lines)
    weights = WEIGHTS[select]
    lines = ["# Results", "", f"Test accuracy per case, of {weights}.", ""]
    lines += _cases(results)
    for case, seed, dirs in twins:  # tables.shared_seeds
        lines += [
            f"{len(dirs)} runs share a case and seed: {case} seed {seed}, "
            f"{', '.join(dirs)} (a run copied into two folders?)",
            "",
        ]
    if len(tests):
        lines += _comparisons(tests)
    if skipped:
        are = "is" if skipped == 1 else "are"
        lines += [
            f"{plural(skipped, 'run')} not completed {are} listed in runs.csv but left out here.",
            "",
        ]
    if lacking:
        lines += [f"{_lacking(lacking, select)}: listed in runs.csv, left out here.", ""]
    if apart is not None and len(apart):
        lines += _apart(apart)
    if pruned:
        stopped = f"{plural(pruned, 'run')} stopped early by the search's pruner"
        lines += [f"{stopped} (not a failure): listed in runs.csv, left out here.", ""]
    return "\n".join(lines)


def _apart(apart: pd.DataFrame) -> list[str]:
    """The runs left out (not completed, or without the selected accuracy) with settings
    of no case, each by its label and status."""
    have = "has" if len(apart) == 1 else "have"
    lines = [f"{plural(len(apart), 'run')} left out {have} settings no case has:", ""]
    for r in apart.head(SHOWN_APART).itertuples():
        lines.append(f"- {r.case} ({r.status}): {r.run_dir}")
    if len(apart) > SHOWN_APART:
        lines.append(f"- and {len(apart) - SHOWN_APART} more (runs.csv lists them)")
    return [*lines, ""]


def _cases(results: pd.DataFrame) -> list[str]:
    """The table of cases: accuracy, with std, n and interval where a case has seeds."""
    multi = bool((results["n"] > 1).any())
    head, rule = CASE_HEAD
    if multi:
        head, rule = head + SPREAD_HEAD[0], rule + SPREAD_HEAD[1]
    lines = [head, rule]
    for r in results.itertuples():
        acc = pct(r.test_acc_mean)
        row = f"| {r.case} | {r.model} | {r.activation} | {r.epochs} |"
        if r.n > 1:
            acc += f" ± {100 * r.test_acc_std:.1f}"
            row += f" {acc} | {r.n} | {pct(r.ci95_low)} to {pct(r.ci95_high)} |"
        else:
            row += f" {acc} |" + (f" {r.n} | |" if multi else "")
        lines.append(row)
    lines.append("")
    if multi:
        over = results.attrs.get("over", "seeds")  # tables.replicates
        lines += [
            f"Accuracy is mean ± std over {over}; the interval is Student's t for the mean.",
            "",
        ]
    return lines


def _comparisons(tests: pd.DataFrame) -> list[str]:
    """The pairwise tests: one row per pair, then which pairs are not told apart."""
    testable_count = plural(int(tests["p_value"].notna().sum()), "testable comparison")
    kinds = tests["test"].tolist() if "test" in tests else ["welch"] * len(tests)
    mixed = len(set(kinds)) > 1
    lines = [
        "## Pairwise comparisons",
        "",
        f"{TEST_NAMES['mixed' if mixed else kinds[0]]} on test accuracy, "
        f"{tests.attrs.get('scope', 'all pairs')}, p-values Holm-adjusted over "
        f"{testable_count} (significant: adjusted p < {ALPHA}).",
        "",
        *(MIXED_HEAD if mixed else TESTS_HEAD),
    ]
    untestable, not_significant, same_step = [], [], []
    for t, kind in zip(tests.itertuples(), kinds, strict=True):
        pair = f"{t.case_a} vs {t.case_b}"
        diff = f"| {t.case_a} | {t.case_b} | {100 * t.diff:+.1f} pts |"
        if mixed:
            diff += f" {kind} |"
        if math.isnan(t.p_value):
            (untestable if kind == "welch" else same_step).append(pair)
            lines.append(f"{diff} - | - | not testable ({UNTESTABLE[kind]}) |")
            continue
        if not t.significant:
            not_significant.append(pair)
        verdict = "significant" if t.significant else "not significant"
        lines.append(f"{diff} {t.p_value:.3g} | {t.p_holm:.3g} | {verdict} |")
    lines += ["", "Not significant: " + (", ".join(not_significant) or "none") + "."]
    if untestable:
        lines.append(
            f"Not testable (every run of both cases scored the same): {', '.join(untestable)}."
        )
    if same_step:
        shown = ", ".join(same_step)
        lines.append(f"Not testable (every pair of runs differed by the same): {shown}.")
    lines.append("")
    return lines
