"""The report's tables built from runs.csv's: which accuracy counts (`selected`), one
row per case (`results_table`, results.csv) and the loss curves the figures draw."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from flowers_sweep.aggregate.runs import fmt
from flowers_sweep.aggregate.stats import t_interval
from flowers_sweep.runrecord import TEST_ACC_OF, RunRecord

log = logging.getLogger(__name__)
# Which weights a case's accuracy is of: the last epoch's (the report's), or the best
# validation epoch's (each run records both).
SELECT = TEST_ACC_OF  # whose test accuracy: the last epoch's or the best val epoch's


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


def results_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    """One row per case from the completed runs: n, mean, std, and a CI when n > 1.

    The std is the sample standard deviation (n - 1 in the denominator, Bessel's
    correction); the interval is Student's t for the mean (see stats.t_interval).
    """
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


def curves_table(runs: Sequence[RunRecord], runs_df: pd.DataFrame) -> pd.DataFrame:
    """Long form of every run's metrics: one row per run, epoch and split."""
    rows = []
    for run, r in zip(runs, runs_df.itertuples(), strict=True):
        if r.status != "completed":
            continue
        sched = f"{r.optimizer} lr {fmt(r.lr)}, " + (
            f"milestones {r.milestones} x{fmt(r.gamma)}" if r.milestones else "constant"
        )
        for m in run.metrics:
            epoch, lr = int(m["epoch"]), float(m["lr"])
            for split in ("train", "val"):
                loss = float(m[f"{split}_loss"])
                rows.append((r.case, r.seed, epoch, split, loss, lr, sched))
    return pd.DataFrame(rows, columns=["case", "seed", "epoch", "split", "loss", "lr", "schedule"])
