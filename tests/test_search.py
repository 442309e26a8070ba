"""A search's report (trials ranked, pruned apart), and a search run and continued by
the CLI; the study's own bookkeeping is test_study.py's."""

import hashlib
import json
import math

import pandas as pd
import pytest
from omegaconf import OmegaConf

from flowers_sweep.aggregate import aggregate
from flowers_sweep.aggregate.search import ranked, read_search
from flowers_sweep.callbacks import unfinished_runs
from flowers_sweep.record.runrecord import write_result

from .helpers.runfolders import write_run
from .helpers.searches import RACED

PARAMS = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))"}


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_search_report_ranks_trials_by_the_metric_searched(tmp_path, direction):
    """The report of a search folder, read without Optuna: one row per trial, ranked by
    the metric the search optimised; a failed trial has no value."""
    sweep = tmp_path / "search"
    lrs, accs = [1e-3, 1e-2, 1e-4, 3e-3], [0.5, 0.7, 0.6, 0.0]
    for trial, (lr, acc) in enumerate(zip(lrs, accs, strict=True)):
        status = "failed" if trial == 3 else "completed"
        write_run(sweep / str(trial), case="relu", lr=lr, test_acc=acc, status=status)
    sweeper = {
        "_target_": "hydra_plugins.flowers_sweep_search.study_sweeper.StudySweeper",
        "direction": direction,
        "params": {"optimizer.lr": PARAMS["optimizer.lr"]},
    }
    (sweep / "multirun.yaml").write_text(OmegaConf.to_yaml({"hydra": {"sweeper": sweeper}}))
    report = aggregate([sweep])
    trials = report.results
    assert report.search and trials["trial"].tolist() == [0, 1, 2, 3]
    assert trials["status"].tolist() == ["completed"] * 3 + ["failed"]
    assert trials["value"].tolist()[:3] == pytest.approx(accs[:3])  # best_val_acc
    assert math.isnan(trials["value"].iloc[3])
    assert trials["optimizer.lr"].tolist() == pytest.approx(lrs)
    search = read_search(sweep)
    assert search.metric == "best_val_acc" and search.maximize == (direction == "maximize")
    best_first = [1, 2, 0] if direction == "maximize" else [0, 2, 1]
    assert ranked(search, trials)["trial"].tolist() == best_first
    for name in ("runs.csv", "trials.csv", "search.png", "loss_curves.png"):
        assert (sweep / "report" / name).is_file()


def digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.e2e
def test_optuna_search_runs_and_reports(raced_search):
    """The search of the raced_search fixture (2 trials; conftest.py), read back."""
    sweep = raced_search / RACED
    assert (sweep / "optimization_results.yaml").is_file()
    trials = pd.read_csv(sweep / "report" / "trials.csv")
    assert trials["trial"].tolist() == [0, 1]
    assert set(trials["status"]) == {"completed"}
    assert {"optimizer.lr", "scheduler.milestones", "scheduler.gamma",
            "trainer.batch_size"} <= set(trials.columns)  # fmt: skip
    best = trials.loc[trials["value"].idxmax()]
    results_md = (sweep / "report" / "results.md").read_text()
    assert f"**Best trial: {best['trial']}**" in results_md
    assert (sweep / "report" / "search.png").stat().st_size > 10_000


@pytest.mark.e2e
def test_optuna_search_continues(raced_search, confirmed_search):
    """confirmed_search (conftest.py) continues raced_search's 2 trials with a larger
    n_trials, 4: its launch runs only the 2 new trials, one at a time (the basic
    launcher), leaves the first trials' folders as they were, and the report (written
    by the relaunch that finished the confirmations) holds all 4."""
    sweep = confirmed_search / "search"
    launches = json.loads((confirmed_search / "launches.json").read_text())
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == list("0123")
    assert {n: digest(sweep / n) for n in ("0", "1")} == {
        n: digest(raced_search / RACED / n) for n in ("0", "1")
    }
    assert launches["killed_stdout"].count("Launching 1 jobs locally") == 2
    assert pd.read_csv(sweep / "report" / "trials.csv")["trial"].tolist() == [0, 1, 2, 3]


def pruned_result(epochs: int, epochs_done: int, best_val_acc: float) -> dict:
    """result.json of a run the search's pruner stopped (as the training run writes it)."""
    return {
        "status": "pruned", "case": "relu", "model": "resnet18", "activation": "relu",
        "epochs": epochs, "seed": 0, "error_type": "TrialPrunedError",
        "error": f"pruned by the search's MedianPruner after epoch {epochs_done}",
        "epochs_done": epochs_done, "best_val_acc": best_val_acc, "best_epoch": epochs_done,
    }  # fmt: skip


def test_a_pruned_trial_has_its_value_and_epochs_but_is_never_the_best(tmp_path):
    sweep = tmp_path / "search"
    write_run(sweep / "0", case="relu", lr=1e-3, test_acc=0.5, epochs=6)
    write_run(sweep / "1", case="relu", lr=1e-2, test_acc=0.6, epochs=6)
    write_run(sweep / "2", case="relu", lr=1e-4, status=None, epochs=6)
    write_result(sweep / "2", pruned_result(epochs=6, epochs_done=2, best_val_acc=0.9))
    write_run(sweep / "3", case="relu", lr=3e-3, test_acc=0.0, status="failed", epochs=6)
    sweeper = {
        "_target_": "hydra_plugins.flowers_sweep_search.study_sweeper.StudySweeper",
        "direction": "maximize",
        "params": {"optimizer.lr": PARAMS["optimizer.lr"]},
    }
    (sweep / "multirun.yaml").write_text(OmegaConf.to_yaml({"hydra": {"sweeper": sweeper}}))
    report = aggregate([sweep])
    trials = pd.read_csv(sweep / "report" / "trials.csv")
    assert trials["status"].tolist() == ["completed", "completed", "pruned", "failed"]
    assert trials["value"].tolist()[:3] == pytest.approx([0.5, 0.6, 0.9])
    assert math.isnan(trials["value"].iloc[3])
    assert trials["epochs"].tolist()[:3] == [6, 6, 2]
    assert ranked(read_search(sweep), report.results)["trial"].tolist() == [1, 0]
    results_md = (sweep / "report" / "results.md").read_text()
    assert "4 trials (2 completed, 1 pruned, 1 failed)" in results_md
    assert "The pruner stopped 1 trial early: it trained 2 of its 6 epochs." in results_md
    assert "**Best trial: 1**" in results_md
    assert (sweep / "report" / "search.png").is_file()
    assert not report.problems


def test_a_pruned_job_is_finished_for_the_sweeps_exit_status(tmp_path):
    sweep = tmp_path / "search"
    write_run(sweep / "0", case="relu")
    write_run(sweep / "1", case="relu", status=None)
    write_result(sweep / "1", pruned_result(epochs=3, epochs_done=1, best_val_acc=0.2))
    write_run(sweep / "2", case="relu", status="failed")
    assert [job.name for job, _ in unfinished_runs(sweep)] == ["2"]
    # a confirmation run (SWEEP_DIR/confirm/<trial>-seed<s>) that failed is listed too
    write_run(sweep / "confirm" / "0-seed1", case="relu", status="failed")
    write_run(sweep / "confirm" / "0-seed2", case="relu")
    assert [job.name for job, _ in unfinished_runs(sweep)] == ["2", "0-seed1"]
