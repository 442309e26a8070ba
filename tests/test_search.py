"""Hyperparameter search: resumable studies, failed trials, and the search's report."""

import hashlib
import math

import optuna
import pandas as pd
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from flowers_sweep.aggregate import aggregate
from flowers_sweep.aggregate.search import ranked, read_search
from hydra_plugins.flowers_sweep_search._study import StudyImpl

from .helpers.cli import TINY, run_cli
from .helpers.runfolders import write_run

PARAMS = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "trainer.batch_size": "choice(16, 32)"}


class FakeLauncher:
    """Records what it was asked to launch; a job's value comes from `values`."""

    def __init__(self, values=None):
        self.launched = []  # (job number, overrides)
        self.values = values or {}

    def launch(self, overrides, initial_job_idx):
        returns = []
        for i, ov in enumerate(overrides):
            num = initial_job_idx + i
            self.launched.append((num, tuple(ov)))
            ret = JobReturn(overrides=list(ov), status=JobStatus.COMPLETED)
            ret.return_value = self.values.get(num, 0.1 * (num + 1))
            returns.append(ret)
        return returns


def sweeper(tmp_path, n_trials, launcher):
    impl = StudyImpl(
        sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize",
        storage=f"sqlite:///{tmp_path}/optuna.db", study_name="s", n_trials=n_trials,
        n_jobs=2, max_failure_rate=0.0, search_space=None, custom_search_space=None,
        params=OmegaConf.create(PARAMS),
    )  # fmt: skip
    impl.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    impl.sweep_dir, impl.launcher = str(tmp_path), launcher
    return impl


def study(tmp_path):
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")


def test_n_trials_is_the_study_size_and_folders_follow_trial_numbers(tmp_path):
    first = FakeLauncher()
    sweeper(tmp_path, 3, first).sweep([])
    assert [num for num, _ in first.launched] == [0, 1, 2]
    again = FakeLauncher()
    sweeper(tmp_path, 5, again).sweep([])
    assert [num for num, _ in again.launched] == [3, 4]  # not 0, 1: those folders are done
    assert len(study(tmp_path).trials) == 5
    params = [ov for _, ov in first.launched + again.launched]
    assert len(set(params)) == 5  # the continued search drew new values, not the first ones
    sweeper(tmp_path, 5, nothing := FakeLauncher()).sweep([])
    assert nothing.launched == []
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert results.best_trial == 4 and results.best_value == pytest.approx(0.5)


def test_failed_runs_are_failed_trials_and_the_search_goes_on(tmp_path):
    launcher = FakeLauncher(values={0: math.nan, 1: None})  # diverged; busy elsewhere
    sweeper(tmp_path, 4, launcher).sweep([])
    assert [num for num, _ in launcher.launched] == [0, 1, 2, 3]
    states = [t.state for t in study(tmp_path).trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.COMPLETE,
                      TrialState.COMPLETE]  # fmt: skip


def test_a_trial_left_running_is_resumed_with_its_own_values_in_its_own_folder(tmp_path):
    s = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db",
                            direction="maximize")  # fmt: skip
    s.tell(s.ask({"x": optuna.distributions.UniformDistribution(0, 1)}), 0.2)
    killed = s.ask()
    killed.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
    killed.suggest_categorical("trainer.batch_size", [16, 32])
    launcher = FakeLauncher()
    sweeper(tmp_path, 3, launcher).sweep([])
    (num, overrides), *rest = launcher.launched
    assert num == 1
    assert overrides == tuple(f"{k}={v}" for k, v in killed.params.items())
    assert [n for n, _ in rest] == [2]
    assert [t.state for t in study(tmp_path).trials] == [TrialState.COMPLETE] * 3


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
def test_optuna_search_runs_continues_and_reports(tmp_path, cache_dir):
    sweep = tmp_path / "search"
    args = ["-m", "hparams_search=optuna", *TINY, f"hydra.sweep.dir={sweep}"]
    proc = run_cli(*args, "hydra.sweeper.n_trials=3", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "optimization_results.yaml").is_file()
    trials = pd.read_csv(sweep / "report" / "trials.csv")
    assert trials["trial"].tolist() == [0, 1, 2]
    assert set(trials["status"]) == {"completed"}
    assert {"optimizer.lr", "scheduler.milestones", "scheduler.gamma",
            "trainer.batch_size"} <= set(trials.columns)  # fmt: skip
    best = trials.loc[trials["value"].idxmax()]
    results_md = (sweep / "report" / "results.md").read_text()
    assert f"**Best trial: {best['trial']}**" in results_md
    assert (sweep / "report" / "search.png").stat().st_size > 10_000
    before = {n: digest(sweep / n) for n in ("0", "1", "2")}

    proc = run_cli(*args, "hydra.sweeper.n_trials=5", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == list("01234")
    assert {n: digest(sweep / n) for n in ("0", "1", "2")} == before
    assert proc.stdout.count("Launching 1 jobs locally") == 2
    assert pd.read_csv(sweep / "report" / "trials.csv")["trial"].tolist() == [0, 1, 2, 3, 4]
