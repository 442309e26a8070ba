"""The report's tables built from runs.csv's: which accuracy counts (`selected`), one
row per case (`results_table`, results.csv), every run's metrics per epoch
(`curves_table`, curves.csv) and the long form of the losses the figures draw."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from flowers_sweep.aggregate.runs import fmt
from flowers_sweep.aggregate.stats import t_interval
from flowers_sweep.record.runrecord import METRIC_COLUMNS, TEST_ACC_OF, RunRecord

log = logging.getLogger(__name__)
# Which weights a case's accuracy is of: the last epoch's (the report's), the best
# validation epoch's (each run records both), or the model EMA's (a run with
# trainer.ema_decay records it too).
SELECT = TEST_ACC_OF  # whose test accuracy: last, best_val or ema -> result.json's key


def selected(runs_df: pd.DataFrame, select: str) -> pd.DataFrame:
    """The runs with `test_acc` being the chosen weights' accuracy; runs that did not
    record it (older ones, for best_val; those without EMA, for ema) count as not
    completed for the statistics."""
    if select == "last":
        return runs_df
    key = SELECT[select]
    chosen = runs_df[key] if key in runs_df else pd.Series(float("nan"), index=runs_df.index)
    scored = runs_df.assign(test_acc=chosen)
    missing = (scored["status"] == "completed") & scored["test_acc"].isna()
    for run_dir in scored.loc[missing, "run_dir"]:
        log.warning("%s: no %s recorded, left out of the statistics", run_dir, SELECT[select])
    return scored.assign(status=scored["status"].where(~missing, "no " + SELECT[select]))


def results_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    """One row per case from the completed runs: n, mean, std, and a CI when n > 1.

    A `tags` column, when runs.csv has one, holds the tags of the case's runs.
    The std is the sample standard deviation (n - 1 in the denominator, Bessel's
    correction); the interval is Student's t for the mean (see stats.t_interval).
    n counts runs: seeds, or seeds x folds with cross-validation, whose runs are
    `attrs["over"]`: "seeds", "folds" or "seeds and folds" (results.md's words).
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
        if "tags" in group:  # the case's runs' tags, each once
            tags = {t for cell in group["tags"].fillna("") for t in str(cell).split(",") if t}
            rows[-1]["tags"] = ",".join(sorted(tags))
    table = pd.DataFrame(rows)
    table.attrs["over"] = replicates(done)
    return table


def replicates(done: pd.DataFrame) -> str:
    """What the runs of a case are over: "seeds", "folds" (one seed, several folds) or
    "seeds and folds"."""
    if "fold" not in done or not done["fold"].notna().any():
        return "seeds"
    return "folds" if done["seed"].nunique() <= 1 else "seeds and folds"


def shared_seeds(runs_df: pd.DataFrame) -> list[tuple[str, object, list[str]]]:
    """Completed runs that share a case and seed (and fold, with cross-validation: a run
    copied into two folders, say, counted twice): (case, seed, their run_dirs) per such
    pair or more, each logged; the seed as `0 fold 3` where runs have folds."""
    done = runs_df[runs_df["status"] == "completed"]
    keys = ["case", "seed", "fold"] if "fold" in done else ["case", "seed"]
    twins = []
    for (case, seed, *fold), group in done.groupby(keys, sort=False, dropna=False):
        if fold and not pd.isna(fold[0]):
            seed = f"{seed} fold {fold[0]}"
        if len(group) > 1:
            dirs = group["run_dir"].tolist()
            times = "twice" if len(dirs) == 2 else f"{len(dirs)} times"
            log.warning(
                "%s seed %s: same case and seed: counted %s; %s",
                case,
                seed,
                times,
                ", ".join(dirs),
            )
            twins.append((case, seed, dirs))
    return twins


def curves_table(runs: Sequence[RunRecord], runs_df: pd.DataFrame) -> pd.DataFrame:
    """curves.csv: one row per run and epoch (wide form), for every run with metrics,
    whatever its status (filter on `status`).

    Columns: `case`, the varying settings' columns of `runs_df` (runs.csv's, which must
    be the table of these runs, in their order), `seed` (and `fold`, where runs.csv
    has it), `status`, `run_dir` (absolute),
    then every column of the run's metrics.csv: `epoch` (1-based, an integer),
    `train_loss`, `val_loss` (mean cross-entropy, nats), `train_acc`, `val_acc`
    (fractions in [0, 1]), `lr` (the rate used in that epoch), `epoch_s` (seconds);
    with model EMA, `val_loss_ema` and `val_acc_ema` (empty for runs without).
    Ready for seaborn: `sns.lineplot(data=curves, x="epoch", y="val_loss", hue="case")`.
    """
    first = runs_df.columns.get_loc("model")
    replicate = ["seed", "fold"] if "fold" in runs_df else ["seed"]
    head = ["case", *runs_df.columns[1:first], *replicate, "status", "run_dir"]
    if len(runs) != len(runs_df):
        raise ValueError(f"{len(runs)} runs but {len(runs_df)} rows of runs.csv's table")
    counts = [len(run.metrics) for run in runs]  # rows per run: its epochs
    runs_part = runs_df[head].iloc[[i for i, n in enumerate(counts) for _ in range(n)]]
    records = [m for run in runs for m in run.metrics]
    metrics = pd.DataFrame.from_records(records, columns=None if records else METRIC_COLUMNS)
    metrics = metrics.drop(columns=[c for c in head if c in metrics.columns])
    table = pd.concat([runs_part.reset_index(drop=True), metrics], axis=1)
    return table.astype({"epoch": int})


def long_curves(curves: pd.DataFrame, runs_df: pd.DataFrame) -> pd.DataFrame:
    """What the figures draw, from curves.csv's table and runs_df (whose `status` says
    which runs count): the completed runs' losses in long form, one row per run, epoch
    and split (`loss`), with `lr` and `schedule`, the schedule's words."""
    done = runs_df[runs_df["status"] == "completed"].drop_duplicates("run_dir")
    sched = {
        r.run_dir: f"{r.optimizer} lr {fmt(r.lr)}, "
        + (f"milestones {r.milestones} x{fmt(r.gamma)}" if r.milestones else "constant")
        for r in done.itertuples()
    }
    rows = curves[curves["run_dir"].isin(sched)]
    long = rows.melt(
        id_vars=["case", "seed", "run_dir", "epoch", "lr"],
        value_vars=["train_loss", "val_loss"],
        var_name="split",
        value_name="loss",
    )
    long["split"] = long["split"].str.removesuffix("_loss")
    long["schedule"] = long["run_dir"].map(sched)
    return long.astype({"loss": float, "lr": float})
