"""The search's study: Hydra's grammar as Optuna's space, storage, samplers, pruners, and
the sweeper's bookkeeping (with a launcher that records what it was asked to launch)."""

from __future__ import annotations

import math
import sqlite3
import warnings
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from flowers_sweep.errors import ConfigError, TrialPrunedError
from flowers_sweep.job import hydra_job
from flowers_sweep.job.launch import register_resolvers
from flowers_sweep.job.outcome import Pruned
from flowers_sweep.record.runrecord import FINAL_METRICS, METRIC_COLUMNS, SQLITE_FILE
from flowers_sweep.search.pruning import TrialReport
from flowers_sweep.search.space import override_text, search_space, trial_overrides
from flowers_sweep.search.study import (
    StudyStorageError,
    build_pruner,
    build_sampler,
    open_storage,
    storage_url,
)
from hydra_plugins.flowers_sweep_search._study import trials_at_once
from hydra_plugins.flowers_sweep_search.study_sweeper import StudySweeper

from .helpers.cli import CONF

DATA = Path(__file__).parent / "data"
PARAMS = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "trainer.batch_size": "choice(16, 32)"}


# --- the search space ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("grammar", "expected"),
    [
        ("interval(0.1, 0.5)", FloatDistribution(0.1, 0.5)),
        ("tag(log, interval(1e-4, 1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
        ("int(interval(8, 64))", IntDistribution(8, 64)),
        ("tag(log, int(interval(8, 64)))", IntDistribution(8, 64, log=True)),
        ("range(8, 65, 8)", IntDistribution(8, 64, step=8)),  # Hydra's range leaves out 65
        ("range(1, 5)", IntDistribution(1, 4)),
        ("choice(16, 32, 64)", CategoricalDistribution([16, 32, 64])),
        ("16,32,64", CategoricalDistribution([16, 32, 64])),
        ("choice([0.4,0.7], [0.6])", CategoricalDistribution(["[0.4,0.7]", "[0.6]"])),
        ("choice(relu, 'a b')", CategoricalDistribution(["relu", "'a b'"])),
    ],
)
def test_hydra_grammar_becomes_optuna_distributions(grammar, expected):
    space, fixed = search_space({"x": grammar}, [])
    assert space == {"x": expected} and fixed == {}


def test_the_command_line_wins_over_the_preset():
    space, fixed = search_space(PARAMS, ["trainer.batch_size=16", "case=relu",
                                         "scheduler.gamma=interval(0.1, 0.5)"])  # fmt: skip
    assert set(space) == {"optimizer.lr", "scheduler.gamma"}
    assert fixed == {"trainer.batch_size": "16", "case": "relu"}


@pytest.mark.parametrize(
    "value", [[0.4, 0.7], "a b", "it's", "x=y,z", {"a": [1, 2]}, None, True, 1e-4, "relu"]
)
def test_a_trials_value_reads_back_as_itself(value):
    """What a trial stores goes back to Hydra as an override: Hydra must read the value."""
    [text] = trial_overrides({"k": override_text(value)}, {})
    assert OverridesParser.create().parse_override(text).value() == value


@pytest.mark.parametrize(
    ("grammar", "says"),
    [
        ("range(5, 1)", "x=range(5, 1): holds no value"),
        ("glob(*)", "cannot be searched"),
        ("interval(1", "hydra.sweeper.params"),
        ("interval(5, 1)", "x=interval(5, 1): "),
        ("tag(log, interval(0, 1))", "x=tag(log, interval(0, 1)): "),
    ],
)
def test_a_space_optuna_cannot_sample_is_one_line(grammar, says):
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as err:
        search_space({"x": grammar}, [])
    assert says in str(err.value)


# --- storage, samplers, pruners ---------------------------------------------------------


def test_a_question_mark_in_the_folder_keeps_the_study_inside_it(tmp_path):
    """Before, `sqlite:///DIR/lr?1e-3/optuna.db` put the study in a file DIR/lr."""
    first, second = tmp_path / "lr?1e-3", tmp_path / "lr?5e-4"
    for folder in (first, second):
        folder.mkdir()
        optuna.create_study(study_name="s", storage=open_storage("sqlite", folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr?1e-3", "lr?5e-4"]
    assert (first / SQLITE_FILE).is_file() and (second / SQLITE_FILE).is_file()
    url = storage_url("sqlite", first)
    assert "?" not in url and optuna.load_study(study_name="s", storage=url)


def test_the_journal_storage_lives_in_the_sweep_folder(tmp_path):
    study = optuna.create_study(study_name="s", storage=open_storage("journal", tmp_path))
    study.tell(study.ask({"x": FloatDistribution(0, 1)}), 0.5)
    assert (tmp_path / "optuna.journal").stat().st_size > 0
    again = optuna.load_study(study_name="s", storage=open_storage("journal", tmp_path))
    assert [t.value for t in again.trials] == [0.5]


@pytest.mark.parametrize(
    ("build", "spec", "says"),
    [
        (lambda s: build_sampler(s, 0), "bayes", "hydra.sweeper.sampler=bayes: allowed values "
         "are tpe, random, cmaes, gp, qmc, or a _target_ node"),
        (build_pruner, "asha", "hydra.sweeper.pruner=asha: allowed values are none, median, "
         "successive_halving, hyperband, or a _target_ node"),
        (build_pruner, {"_target_": "optuna.pruners.Nope"}, "hydra.sweeper.pruner"),
        (build_pruner, {"_target_": "optuna.samplers.RandomSampler"}, "is not an optuna "
         "BasePruner"),
        (lambda s: storage_url(s, Path(".")), "mysql", "hydra.sweeper.storage=mysql: allowed"),
    ],
)  # fmt: skip
def test_an_unknown_name_says_what_is_allowed(build, spec, says):
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as err:
        build(spec)
    assert says in str(err.value)


def test_samplers_and_pruners_by_name_or_node(monkeypatch):
    tpe = build_sampler("tpe", 3)
    # constant liar: Optuna 5's default, not Optuna 4's, so study.py sets it
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._constant_liar
    assert isinstance(build_sampler("random", 3), optuna.samplers.RandomSampler)
    node = {"_target_": "optuna.pruners.MedianPruner", "n_warmup_steps": 2}
    assert build_pruner(node)._n_warmup_steps == 2
    assert isinstance(build_pruner("hyperband"), optuna.pruners.HyperbandPruner)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs the cmaes package: pip install cmaes"):
        build_sampler("cmaes", 0)


def old_study(folder: Path) -> str:
    """SWEEP_DIR/optuna.db as the hydra-optuna-sweeper search (optuna 2.10.1) left it:
    two completed trials of study resnet18-relu (tests/data: its SQL dump)."""
    con = sqlite3.connect(folder / SQLITE_FILE)
    con.executescript((DATA / "optuna_2_10_study.sql").read_text())
    con.close()
    return storage_url("sqlite", folder)


def test_a_study_of_optuna_2_10_says_how_to_upgrade_it(tmp_path):
    url = old_study(tmp_path)
    with pytest.raises(StudyStorageError, match=r"^[^\n]*$") as err:
        open_storage("sqlite", tmp_path)
    assert "made by optuna 2.10.1" in str(err.value)
    assert f"optuna storage upgrade --storage '{url}'" in str(err.value)


# --- the run's side: reporting and pruning --------------------------------------------


def test_a_trial_reports_each_epoch_once_and_stops_when_pruned():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=0.3))  # fmt: skip
    trial = study.ask()
    report = TrialReport(trial, "ThresholdPruner", "val_acc", reported=set())
    report(1, {"val_acc": 0.5, "val_loss": 1.0})
    with warnings.catch_warnings():  # Optuna warns at a second report of one step
        warnings.simplefilter("error")
        report(1, {"val_acc": 0.9, "val_loss": 1.0})  # a resumed run: not reported again
    with pytest.raises(TrialPrunedError, match=r"ThresholdPruner after epoch 2 \(val_acc 0\.2\)"):
        report(2, {"val_acc": 0.2, "val_loss": 1.0})
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.2}
    last = TrialReport(study.ask(), "ThresholdPruner", "val_acc", reported=set(), last=2)
    last(2, {"val_acc": 0.2, "val_loss": 1.0})  # the run is done: reported, not pruned
    assert study.trials[1].intermediate_values == {2: 0.2}


def test_each_final_metric_is_tracked_by_an_epoch_column_in_its_own_direction():
    for metric, (column, direction) in FINAL_METRICS.items():
        assert column in METRIC_COLUMNS and column.endswith("loss") == metric.endswith("loss")
        assert direction == ("minimize" if metric.endswith("loss") else "maximize")


# --- the sweeper ----------------------------------------------------------------------


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


def sweeper(tmp_path, n_trials, launcher, n_jobs=2):
    s = StudySweeper(study_name="s", storage="sqlite", n_trials=n_trials, n_jobs=n_jobs,
                     sampler="random", seed=0, params=OmegaConf.create(PARAMS))  # fmt: skip
    s.config = OmegaConf.create(
        {"optimized_metric": "best_val_acc", "hydra": {"sweep": {"dir": str(tmp_path)}}}
    )
    s.sweep_dir, s.launcher = tmp_path, launcher
    return s


def study(tmp_path):
    return optuna.load_study(study_name="s", storage=storage_url("sqlite", tmp_path))


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


def test_failed_pruned_and_busy_runs_are_told_as_such_and_the_search_goes_on(tmp_path):
    values = {0: math.nan, 1: None, 2: Pruned("pruned by the search's MedianPruner")}
    launcher = FakeLauncher(values)  # diverged; busy elsewhere; pruned
    sweeper(tmp_path, 4, launcher).sweep([])
    assert [num for num, _ in launcher.launched] == [0, 1, 2, 3]
    states = [t.state for t in study(tmp_path).trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.PRUNED,
                      TrialState.COMPLETE]  # fmt: skip


def test_a_trial_left_running_is_resumed_with_its_own_values_in_its_own_folder(tmp_path):
    s = optuna.create_study(study_name="s", storage=storage_url("sqlite", tmp_path),
                            direction="maximize")  # fmt: skip
    s.tell(s.ask({"x": FloatDistribution(0, 1)}), 0.2)
    killed = s.ask()
    killed.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
    killed.suggest_categorical("trainer.batch_size", [16, 32])
    launcher = FakeLauncher()
    sweeper(tmp_path, 3, launcher).sweep([])
    (num, overrides), *rest = launcher.launched
    assert num == 1
    assert overrides == tuple(f"{k}={override_text(v)}" for k, v in killed.params.items())
    assert [n for n, _ in rest] == [2]
    assert [t.state for t in study(tmp_path).trials] == [TrialState.COMPLETE] * 3


def test_trials_whose_numbers_do_not_follow_each_other_are_launched_apart(tmp_path):
    """Two trials left running (1 and 3) go to their own folders, not to 1 and 2."""
    s = optuna.create_study(study_name="s", storage=storage_url("sqlite", tmp_path))
    for number in range(4):
        t = s.ask({"optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True)})
        if number in (0, 2):
            s.tell(t, 0.1)
    launcher = FakeLauncher()
    sweeper(tmp_path, 4, launcher).sweep([])
    assert [n for n, _ in launcher.launched] == [1, 3]


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("n_trials", 0, "hydra.sweeper.n_trials=0: must be an integer >= 1"),
        ("n_jobs", "many", "hydra.sweeper.n_jobs=many: must be an integer >= 1 or auto"),
        ("seed", "abc", "hydra.sweeper.seed=abc: must be an integer or null"),
        ("direction", "up", "hydra.sweeper.direction=up: allowed values are maximize, minimize"),
        ("direction", "minimize", "hydra.sweeper.direction=minimize with optimized_metric="
         "best_val_acc: a search must maximize it"),
        ("optimized_metric", "nonsense", "optimized_metric=nonsense: allowed values are "),
        ("test_loss", "maximize", "hydra.sweeper.direction=maximize with optimized_metric="
         "test_loss: a search must minimize it"),
    ],
)  # fmt: skip
def test_bad_sweeper_settings_end_in_one_line_and_exit_2(tmp_path, capsys, setting, value, says):
    s = sweeper(tmp_path, 2, launcher := FakeLauncher())
    if setting == "optimized_metric":
        s.config.optimized_metric = value
    elif setting == "test_loss":  # a loss metric with the accuracies' direction
        s.config.optimized_metric, s.direction = setting, value
    else:
        setattr(s, setting, value)
    with pytest.raises(SystemExit) as exit_:
        s.sweep([])
    assert exit_.value.code == 2 and launcher.launched == []
    err = capsys.readouterr().err
    assert err.startswith(f"flowers_sweep: error: {says}") and err.count("\n") == 1, err
    assert not (tmp_path / SQLITE_FILE).exists()  # nothing was opened


def test_a_study_is_continued_only_by_the_same_search(tmp_path, capsys):
    """A study's name is only model and activation: another optimizer or epoch count in
    the same folder must not find the study full and report its trials as its own."""
    sweeper(tmp_path, 2, FakeLauncher()).sweep(["trainer.epochs=6"])
    again = FakeLauncher()
    sweeper(tmp_path, 3, again).sweep(["trainer.epochs=6"])  # the same search, continued
    assert [n for n, _ in again.launched] == [2]
    other = FakeLauncher()
    with pytest.raises(SystemExit) as exit_:
        sweeper(tmp_path, 4, other).sweep(["trainer.epochs=2", "optimizer=adamw"])
    assert exit_.value.code == 2 and other.launched == []
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds another search (fixed: trainer.epochs=6 there, optimizer=adamw " in err
    assert len(study(tmp_path).trials) == 3


def test_a_shared_storage_url_belongs_to_one_sweep_folder(tmp_path, capsys):
    """With a storage outside the sweep folder, a second folder's launch would take the
    first's running trials for a killed launch's and run them again."""
    url = storage_url("sqlite", tmp_path)
    first = sweeper(tmp_path / "a", 1, FakeLauncher())
    first.storage = url
    first.sweep([])
    second = sweeper(tmp_path / "b", 2, other := FakeLauncher())
    second.storage = url
    with pytest.raises(SystemExit):
        second.sweep([])
    assert other.launched == [] and "sweep_dir: " in capsys.readouterr().err


def test_the_presets_study_name_takes_an_activation_node():
    """The preset's study name (and so its folder) for `model.activation={_target_: ...}`:
    interpolating the node into a string, as it once did, fails."""
    register_resolvers()
    preset = OmegaConf.to_container(OmegaConf.load(CONF / "hparams_search" / "optuna.yaml"))
    name = preset["hydra"]["sweeper"]["study_name"].replace(
        "hydra.runtime.choices.model", "choice"
    )
    model = {"_target_": "flowers_sweep.models.ResNet", "block": "basic",
             "layers": [2, 2, 2, 2], "activation": {"_target_": "torch.nn.GELU"}}  # fmt: skip
    cfg = OmegaConf.create({"model": model, "choice": "resnet18", "name": name})
    assert cfg.name == "resnet18-gelu"
    cfg.model.activation = "relu"
    assert cfg.name == "resnet18-relu"


@pytest.mark.parametrize(
    ("launcher", "n_jobs", "at_once"),
    [
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, "auto", 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
          "n_jobs": 2}, "auto", 2),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
          "n_jobs": -1}, "auto", 8),  # joblib's count: every CPU
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
          "n_jobs": -2}, "auto", 7),  # all but one
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
          "array_parallelism": 16}, "auto", 16),
        ({"_target_": "some.other.Launcher"}, "auto", 1),
        (None, "auto", 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
          "n_jobs": 4}, 3, 3),  # a number given is the number used
    ],
)  # fmt: skip
def test_a_search_runs_as_many_trials_at_once_as_its_launcher_runs_jobs(
    launcher, n_jobs, at_once, monkeypatch
):
    monkeypatch.setattr(hydra_job, "available_cpus", lambda: 8)
    assert trials_at_once(n_jobs, launcher) == at_once


def test_a_parallel_launcher_gets_parallel_trials_by_default(tmp_path, caplog):
    """The sweeper's default n_jobs (auto) batches trials by the launcher's n_jobs; a
    smaller n_jobs given says that the launcher could run more."""
    assert StudySweeper(study_name="s").n_jobs == "auto"
    assert OmegaConf.load(CONF / "hydra" / "sweeper" / "optuna.yaml").n_jobs == "auto"
    launcher = FakeLauncher()
    s = sweeper(tmp_path, 5, launcher, n_jobs="auto")
    s.config.hydra.launcher = {"_target_": "JoblibLauncher", "n_jobs": 2}
    calls = []
    real = launcher.launch
    launcher.launch = lambda overrides, initial_job_idx: (
        calls.append(len(overrides)) or real(overrides, initial_job_idx)
    )
    s.sweep([])
    assert calls == [2, 2, 1]
    caplog.set_level("INFO")
    assert trials_at_once(1, {"_target_": "JoblibLauncher", "n_jobs": 2}) == 1
    assert (
        "hydra.sweeper.n_jobs=1: 1 trial(s) at a time, though the launcher runs 2" in caplog.text
    )
