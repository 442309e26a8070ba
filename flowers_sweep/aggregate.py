"""Run folders -> the report's accuracy table and figures, with honest statistics.

    python -m flowers_sweep.aggregate SWEEP_DIR [SWEEP_DIR ...] [--out DIR]

Reads only files (each run's result.json, metrics.csv and Hydra's .hydra/ folder), never
the training code, so it is quick and works on folders copied from a cluster. Runs
that differ only in their seed form one case; a case's accuracy is given as mean, std
and a 95% confidence interval, and cases are compared pairwise with Welch's t-test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowers_sweep.atomic import atomic_write, atomic_write_text
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.runrecord import (
    CONFIG_FILE,
    EXECUTION_SETTINGS,
    HYDRA_DIR,
    natural_key,
    read_yaml,
)
from flowers_sweep.runrecord import RunRecord as Run
from flowers_sweep.runrecord import find_run_dirs as find_run_dirs_under
from flowers_sweep.runrecord import read_run as read_run_record
from flowers_sweep.search import (
    Search,
    plot_search,
    ranked,
    read_search,
    search_markdown,
    trial_number,
    trials_table,
)

log = logging.getLogger(__name__)
RUN_COLUMNS = [
    "case", "model", "activation", "optimizer", "lr", "milestones", "gamma", "epochs",
    "seed", "status", "test_acc", "test_acc_best_val", "best_epoch", "best_val_acc", "params",
    "wall_s", "run_dir",
]  # fmt: skip
# Which weights a case's accuracy is of: the last epoch's (the report's), or the best
# validation epoch's (each run records both).
SELECT = {"last": "test_acc", "best_val": "test_acc_best_val"}
ALPHA = 0.05
REPORT_DIRNAME = "report"
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "lr")  # what the figures read
# Up to this many cases every pair is tested; beyond, each case against the best one
# (a grid of 2,000 cases would be 2 million pairs, and nobody reads them).
ALL_PAIRS_MAX = 12
# Figures show at most this many cases (the best by mean test accuracy) and summarise
# the rest, so they stay readable, and under matplotlib's size limit, at any scale.
FIGURE_CASES = 12


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


def read_run(path: Path) -> Run:
    return read_run_record(path, CURVE_COLUMNS)


def load_runs(roots: Sequence[Path]) -> list[Run]:
    dirs = find_run_dirs(roots)
    if not dirs:
        names = ", ".join(str(r) for r in roots)
        raise AggregateError(f"{names}: no run folders found (none has {HYDRA_DIR}/{CONFIG_FILE})")
    return [read_run(d) for d in dirs]


def _short(key: str, keys: Sequence[str]) -> str:
    """The last part of a dotted key, unless another varying key ends the same way."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _key(value: Any) -> str:
    return json.dumps(value, default=str)


def case_labels(runs: Sequence[Run]) -> list[str]:
    """The run's `case`, else model-activation; plus whatever else varies but the seed.

    Settings that do not change the experiment (device, threads, workers, resume: the
    ones a relaunch may change) never split a case, so sweeps merged from several
    machines give one row per case.

    Model keys that only follow the model's name (its block counts, say) are implied by
    it and left out, so `model=resnet18,resnet34` labels as resnet18-relu, resnet34-relu.
    """
    keys = sorted({k for r in runs for k in r.config} - {"seed", *EXECUTION_SETTINGS})
    varying = [
        k for k in keys if len({json.dumps(r.config.get(k), default=str) for r in runs}) > 1
    ]

    def implied(key: str) -> bool:
        if key == "model.activation":
            return True
        if not key.startswith("model."):
            return False
        by_base: dict[str, set[str]] = {}
        for r in runs:
            base = r.case or r.model
            by_base.setdefault(base, set()).add(_key(r.config.get(key)))
        return all(len(v) == 1 for v in by_base.values())

    extras = [k for k in varying if not implied(k)]
    labels = []
    for r in runs:
        base = r.case or f"{r.model}-{r.config.get('model.activation')}"
        parts = [f"{_short(k, extras)}={_fmt(r.config.get(k))}" for k in extras]
        labels.append("-".join([str(base), *parts]))
    return labels


def runs_table(runs: Sequence[Run]) -> pd.DataFrame:
    rows = []
    for run, label in zip(runs, case_labels(runs), strict=True):
        res, cfg = run.result or {}, run.config
        milestones = cfg.get("scheduler.milestones")
        rows.append(
            {
                "case": label,
                "model": run.model,
                "activation": cfg.get("model.activation"),
                "optimizer": cfg.get("optimizer.name"),
                "lr": cfg.get("optimizer.lr"),
                "milestones": _fmt(milestones) if milestones is not None else "",
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


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Student-t 95% interval of the mean accuracy; needs at least two values.

    Cut to [0, 1]: with few seeds near 100% the t-interval reaches past what an accuracy
    can be, and a table reading "101%" is read as a bug, not as a wide interval.
    """
    from scipy import stats

    mean, sem = sum(values) / len(values), float(stats.sem(values))
    if sem == 0:  # all equal: scipy wants a positive scale; the interval is the point
        return mean, mean
    low, high = stats.t.interval(1 - ALPHA, len(values) - 1, loc=mean, scale=sem)
    return max(float(low), 0.0), min(float(high), 1.0)


def results_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    """One row per case from the completed runs: n, mean, std, and a CI when n > 1."""
    done = runs_df[runs_df["status"] == "completed"]
    rows = []
    for label, group in done.groupby("case", sort=False):
        accs = group["test_acc"].astype(float).tolist()
        n = len(accs)
        low, high = t_interval(accs) if n > 1 else (float("nan"), float("nan"))
        rows.append(
            {
                "case": label,
                "model": group["model"].iloc[0],
                "activation": group["activation"].iloc[0],
                "epochs": group["epochs"].iloc[0],
                "n": n,
                "test_acc_mean": sum(accs) / n,
                "test_acc_std": pd.Series(accs).std(ddof=1) if n > 1 else float("nan"),
                "ci95_low": low,
                "ci95_high": high,
            }
        )
    return pd.DataFrame(rows)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: many pairs are compared at once."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def testable(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether Welch's t-test is defined for two samples: at least two values each and
    some spread. With no spread in either group its standard error is zero, so t is
    x/0: scipy answers p = 0 (or nan) for any difference, a certainty no data gave."""
    return len(a) >= 2 and len(b) >= 2 and (has_spread(a) or has_spread(b))


def has_spread(values: Sequence[float]) -> bool:
    """More than float64 rounding apart (a few ulps: 0.5 and 0.5000000000000001, as a
    sum of fractions may give, are the same accuracy)."""
    scale = max(abs(v) for v in values) or 1.0
    return max(values) - min(values) > 4 * sys.float_info.epsilon * scale


def pairwise_tests(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Welch's t-test between cases that both have n > 1, Holm-adjusted; a pair where
    the test is undefined (see `testable`) gets no p-value and is not significant.

    Every pair in a small sweep; in a larger one, each case against the best (highest
    mean test accuracy), which is the question a reader of a search asks: what is not
    distinguishable from the winner. `table.attrs["scope"]` says which.
    """
    from scipy import stats

    done = runs_df[runs_df["status"] == "completed"]
    groups = {k: g["test_acc"].astype(float).tolist() for k, g in done.groupby("case", sort=False)}
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    means = {k: sum(v) / len(v) for k, v in groups.items()}
    if len(groups) <= ALL_PAIRS_MAX:
        pairs, scope = list(itertools.combinations(groups, 2)), "all pairs"
    else:
        best = max(means, key=means.get)
        pairs, scope = [(best, k) for k in groups if k != best], f"each case against {best}"
    rows = []
    for a, b in pairs:
        p = float("nan")  # not testable: no p-value, never significant
        if testable(groups[a], groups[b]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(stats.ttest_ind(groups[a], groups[b], equal_var=False).pvalue)
        rows.append({"case_a": a, "case_b": b, "diff": means[a] - means[b], "p_value": p})
    table = pd.DataFrame(rows, columns=["case_a", "case_b", "diff", "p_value"])
    valid = table["p_value"].notna()
    table["p_holm"] = float("nan")
    if valid.any():
        table.loc[valid, "p_holm"] = holm(table.loc[valid, "p_value"].tolist())
    table["significant"] = table["p_holm"] < ALPHA
    table.attrs["scope"] = scope
    return table


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def results_markdown(
    results: pd.DataFrame, tests: pd.DataFrame, skipped: int, select: str = "last"
) -> str:
    multi = (results["n"] > 1).any() if len(results) else False
    head = "| case | model | activation | epochs | accuracy |"
    rule = "|---|---|---|---|---|"
    if multi:
        head, rule = head + " n | 95% CI |", rule + "---|---|"
    weights = ("the last epoch's weights, as in the report" if select == "last"
               else "the weights of each run's best validation epoch")  # fmt: skip
    if results.empty:  # no table without a row: say so instead
        lines = ["# Results", "", "No run has completed: runs.csv lists every run and its "
                 "status.", ""]  # fmt: skip
        if skipped:
            lines += [f"{plural(skipped, 'run')} not completed.", ""]
        return "\n".join(lines)
    lines = ["# Results", "", f"Test accuracy per case, of {weights}.", "", head, rule]
    for r in results.itertuples():
        acc = _pct(r.test_acc_mean)
        row = f"| {r.case} | {r.model} | {r.activation} | {r.epochs} |"
        if r.n > 1:
            acc += f" ± {100 * r.test_acc_std:.1f}"
            row += f" {acc} | {r.n} | {_pct(r.ci95_low)} to {_pct(r.ci95_high)} |"
        else:
            row += f" {acc} |" + (f" {r.n} | |" if multi else "")
        lines.append(row)
    lines.append("")
    if multi:
        lines.append(
            "Accuracy is mean ± std over seeds; the interval is Student's t for the mean."
        )
        lines.append("")
    if len(tests):
        testable_count = plural(int(tests["p_value"].notna().sum()), "testable comparison")
        lines += [
            "## Pairwise comparisons",
            "",
            f"Welch's t-test on test accuracy, {tests.attrs.get('scope', 'all pairs')}, "
            f"p-values Holm-adjusted over {testable_count} "
            f"(significant: adjusted p < {ALPHA}).",
            "",
            "| case A | case B | A - B | p | p (Holm) | verdict |",
            "|---|---|---|---|---|---|",
        ]
        untestable = [
            f"{t.case_a} vs {t.case_b}" for t in tests.itertuples() if math.isnan(t.p_value)
        ]
        for t in tests.itertuples():
            diff = f"| {t.case_a} | {t.case_b} | {100 * t.diff:+.1f} pts |"
            if math.isnan(t.p_value):
                lines.append(f"{diff} - | - | not testable (no spread in either case) |")
                continue
            verdict = "significant" if t.significant else "not significant"
            lines.append(f"{diff} {t.p_value:.3g} | {t.p_holm:.3g} | {verdict} |")
        not_sig = [f"{t.case_a} vs {t.case_b}" for t in tests.itertuples()
                   if not t.significant and not math.isnan(t.p_value)]  # fmt: skip
        lines += ["", "Not significant: " + (", ".join(not_sig) if not_sig else "none") + "."]
        if untestable:
            lines.append("Not testable (every run of both cases scored the same): "
                         + ", ".join(untestable) + ".")  # fmt: skip
        lines.append("")
    if skipped:
        lines += [f"{skipped} run(s) not completed are listed in runs.csv but left out here.", ""]
    return "\n".join(lines)


def curves_table(runs: Sequence[Run], runs_df: pd.DataFrame) -> pd.DataFrame:
    """Long form of every run's metrics: one row per run, epoch and split."""
    rows = []
    for run, r in zip(runs, runs_df.itertuples(), strict=True):
        if r.status != "completed":
            continue
        sched = f"{r.optimizer} lr {_fmt(r.lr)}, " + (
            f"milestones {r.milestones} x{_fmt(r.gamma)}" if r.milestones else "constant"
        )
        for m in run.metrics:
            epoch, lr = int(m["epoch"]), float(m["lr"])
            for split in ("train", "val"):
                loss = float(m[f"{split}_loss"])
                rows.append((r.case, r.seed, epoch, split, loss, lr, sched))
    return pd.DataFrame(rows, columns=["case", "seed", "epoch", "split", "loss", "lr", "schedule"])


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"))


def shown_cases(results: pd.DataFrame) -> tuple[list[str], str]:
    """The cases the figures draw, and a note for their titles when that is not all.

    A small sweep shows every case in its own order; a large one its FIGURE_CASES best
    by mean test accuracy, best first (results.csv has every case).
    """
    if len(results) <= FIGURE_CASES:
        return results["case"].tolist(), ""
    best = results.sort_values("test_acc_mean", ascending=False, kind="stable")
    note = f"the {FIGURE_CASES} best of {len(results)} cases by mean test accuracy"
    return best["case"].head(FIGURE_CASES).tolist(), note


def plot_loss_curves(curves: pd.DataFrame, path: Path, note: str = "") -> None:
    import seaborn as sns

    n = curves["case"].nunique()
    grid = sns.relplot(
        data=curves, x="epoch", y="loss", hue="split", col="case", col_wrap=min(n, 4),
        kind="line", errorbar="sd", height=3.6, aspect=1.5, facet_kws={"sharey": True},
    )  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.set_axis_labels("epoch", "cross-entropy loss")
    what = f", {note}" if note else ""
    grid.figure.suptitle(f"Training and validation loss{what} (band: std over seeds)", y=1.03)
    _save(grid.figure, path)


def plot_accuracy(
    runs_df: pd.DataFrame, path: Path, results: pd.DataFrame, cases: list[str], note: str = ""
) -> None:
    """Bars for the shown cases; with a note (a large sweep), a second panel beside them
    gives every case's mean, so the rest are summarised rather than dropped."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    done = runs_df[(runs_df["status"] == "completed") & runs_df["case"].isin(cases)].copy()
    done["test accuracy (%)"] = 100 * done["test_acc"].astype(float)
    n = len(cases)
    width = max(6.0, 1.3 * n + 2)
    if note:
        fig, (ax, rest) = plt.subplots(
            1, 2, figsize=(width + 4, 4.5), sharey=True, width_ratios=[width, 4]
        )
        sns.histplot(y=100 * results["test_acc_mean"], ax=rest, color="#9ecae1")
        rest.set_title(f"all {len(results)} case means")
    else:
        fig, ax = plt.subplots(figsize=(width, 4.5))
    sns.barplot(data=done, x="case", y="test accuracy (%)", errorbar="sd", ax=ax, order=cases,
                color="#9ecae1", capsize=0.15)  # fmt: skip
    sns.stripplot(data=done, x="case", y="test accuracy (%)", ax=ax, order=cases,
                  color="#08306b", size=5)  # fmt: skip
    what = f": {note}" if note else " per case"
    ax.set_title(f"Test accuracy{what} (bar: mean, whisker: std, dots: seeds)")
    ax.set_xlabel("case")
    ax.tick_params(axis="x", rotation=20 if n > 4 else 0)
    _save(fig, path)
    plt.close(fig)


def plot_lr_schedule(curves: pd.DataFrame, path: Path, note: str = "") -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    lr = curves[curves["split"] == "train"].drop_duplicates(["schedule", "epoch"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.lineplot(data=lr, x="epoch", y="lr", hue="schedule", drawstyle="steps-post",
                 marker="o" if lr["epoch"].max() <= 30 else None, ax=ax)  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    what = f" (schedules of {note})" if note else ""
    ax.set_title(f"Learning rate per epoch, one line per distinct schedule{what}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate (log scale)")
    _save(fig, path)
    plt.close(fig)


@dataclass
class Report:
    runs: pd.DataFrame
    results: pd.DataFrame
    tests: pd.DataFrame
    markdown: str
    out: Path
    problems: list[str] = field(default_factory=list)  # what keeps the report from whole
    search: bool = False  # results holds a search's trials, not cases


def write_figures(
    curves: pd.DataFrame, runs_df: pd.DataFrame, results: pd.DataFrame, out: Path
) -> list[str]:
    """The three figures of the report, each drawn on its own (see draw_each)."""
    if curves.empty:
        log.warning("no completed run has metrics: figures skipped")
        return []
    cases, note = shown_cases(results)
    shown = curves[curves["case"].isin(cases)]
    figures = (
        ("loss_curves.png", lambda path: plot_loss_curves(shown, path, note)),
        ("accuracy.png", lambda path: plot_accuracy(runs_df, path, results, cases, note)),
        ("lr_schedule.png", lambda path: plot_lr_schedule(shown, path, note)),
    )
    return draw_each(figures, out)


def draw_each(figures: Sequence[tuple[str, Any]], out: Path) -> list[str]:
    """Each figure on its own: one that cannot be drawn is reported, the others written.

    A figure that failed is removed rather than left from an earlier aggregation, where
    it would silently disagree with the tables beside it.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed or wanted
    import matplotlib.pyplot as plt

    problems = []
    for name, draw in figures:
        try:
            draw(out / name)
        except Exception as exc:
            (out / name).unlink(missing_ok=True)
            problems.append(f"{out / name} not written: {type(exc).__name__}: {exc}")
            log.warning("%s", problems[-1])
        finally:
            plt.close("all")
    return problems


def selected(runs_df: pd.DataFrame, select: str) -> pd.DataFrame:
    """The runs with `test_acc` being the chosen weights' accuracy; runs that did not
    record it (older ones, for best_val) count as not completed for the statistics."""
    if select == "last":
        return runs_df
    scored = runs_df.assign(test_acc=runs_df[SELECT[select]])
    missing = (scored["status"] == "completed") & scored["test_acc"].isna()
    for run_dir in scored.loc[missing, "run_dir"]:
        log.warning("%s: no %s recorded, left out of the statistics", run_dir, SELECT[select])
    return scored.assign(status=scored["status"].where(~missing, "no " + SELECT[select]))


def aggregate(roots: Sequence[Path], out: Path | None = None, select: str = "last") -> Report:
    """Read every run under the roots; write runs.csv, results.csv/.md and the figures."""
    roots = [Path(r) for r in roots]
    out = Path(out) if out is not None else roots[0] / REPORT_DIRNAME
    runs = load_runs(roots)
    search = read_search(roots[0], read_yaml) if len(roots) == 1 else None
    if search is not None:
        return aggregate_search(search, runs, out)
    all_runs = runs_table(runs)
    runs_df = selected(all_runs, select)
    skipped = runs_df[runs_df["status"] != "completed"]
    problems = broken_runs(runs)
    results = results_table(runs_df)
    tests = pairwise_tests(runs_df)
    markdown = results_markdown(results, tests, len(skipped), select)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", all_runs.to_csv(index=False))
    atomic_write_text(out / "results.csv", results.to_csv(index=False))
    atomic_write_text(out / "results.md", markdown)
    problems += write_figures(curves_table(runs, runs_df), runs_df, results, out)
    return Report(runs_df, results, tests, markdown, out, problems)


def broken_runs(runs: Sequence[Run]) -> list[str]:
    """The problems of runs that cannot be read, each also logged with the others."""
    for r in runs:
        if r.broken:
            log.warning("%s: cannot be read (%s), left out of the statistics", r.path, r.broken)
        elif r.status != "completed":
            log.warning("%s: status %s, left out of the statistics", r.path, r.status)
    return [f"{r.path}: broken: {r.broken}" for r in runs if r.broken]


def aggregate_search(search: Search, runs: Sequence[Run], out: Path) -> Report:
    """A search's report: trials.csv, results.md naming the best trial, search.png, and
    the loss curves and schedules of its best trials (see flowers_sweep.search)."""
    all_runs = runs_table(runs)
    all_runs["case"] = [f"trial {trial_number(r.path)}" for r in runs]
    problems = broken_runs(runs)
    trials = trials_table(search, runs, _fmt)
    markdown = search_markdown(search, trials)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", all_runs.to_csv(index=False))
    atomic_write_text(out / "trials.csv", trials.to_csv(index=False))
    atomic_write_text(out / "results.md", markdown)
    best = [f"trial {n}" for n in ranked(search, trials)["trial"].head(FIGURE_CASES)]
    curves = curves_table(runs, all_runs)
    shown = curves[curves["case"].isin(best)]
    note = f"the {len(best)} best trials by {search.metric}"
    figures = (
        ("search.png", lambda path: plot_search(search, trials, path, _save)),
        ("loss_curves.png", lambda path: plot_loss_curves(shown, path, note)),
        ("lr_schedule.png", lambda path: plot_lr_schedule(shown, path, note)),
    )
    if not best:
        log.warning("no trial has completed: figures skipped")
        figures = ()
    problems += draw_each(figures, out)
    return Report(all_runs, trials, pd.DataFrame(), markdown, out, problems, search=True)


def console_text(report: Report, limit: int = 30) -> str:
    """What a terminal shows: the whole results.md for a small sweep or a search, the best
    cases of a large sweep (results.md and results.csv hold every case)."""
    if report.search or len(report.results) <= limit:
        return report.markdown
    best = report.results.sort_values("test_acc_mean", ascending=False, kind="stable").head(10)
    lines = [f"{len(report.results)} cases; the 10 best by mean test accuracy "
             f"(every case in {report.out / 'results.md'}):"]  # fmt: skip
    lines += [f"  {r.case}: {_pct(r.test_acc_mean)} (n={r.n})" for r in best.itertuples()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowers_sweep.aggregate",
        description="Collect a sweep's run folders into the accuracy table and figures.",
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR")
    parser.add_argument("--out", type=Path, help="output folder (default SWEEP_DIR/report)")
    parser.add_argument("--select", choices=list(SELECT), default="last",
                        help="whose test accuracy: the last epoch's weights (default, as the "
                        "report) or the best validation epoch's")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        report = aggregate(args.sweep_dirs, args.out, args.select)
    except FlowersSweepError as exc:
        print(f"flowers_sweep.aggregate: error: {exc}", file=sys.stderr)
        return 2
    print(console_text(report))
    tables = "trials.csv" if report.search else "results.csv"
    print(f"wrote {report.out}/: runs.csv, {tables}, results.md and figures")
    for problem in report.problems:
        print(f"flowers_sweep.aggregate: incomplete: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
