"""`study=NAME`: a sweep carried by a config file (conf/study/), launched without `-m`.

The shipped studies and a user's own (`-cd myconf study=mine`) are planned in process
(flowers_sweep.plan lists Hydra's own expansion of the sweep, writing nothing); one real
launch of the report's study, one seed, checks that the command alone runs the jobs the
plan lists and writes the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from flowers_sweep import plan
from flowers_sweep.config.overrides import check_study
from flowers_sweep.errors import ConfigError
from flowers_sweep.record.runrecord import HYDRA_DIR, OVERRIDES_FILE, REPORT_DIRNAME

from .helpers.cli import CONF, TINY, result, run_cli

SEARCH = {"hparams_search": "optuna"}
REPORT_CASES = ["relu", "sigmoid", "leaky_relu", "baseline_cnn"]


def planned(capsys: pytest.CaptureFixture, *args: str) -> list[str]:
    """The jobs' override columns of `python -m flowers_sweep.plan ARGS`, in job order."""
    assert plan.main([*args, "--no-estimate"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.split(" ", 1)[0].isdigit()]
    return [line.split("  ")[-1].strip() for line in rows]


def sweep_params(name: str) -> dict[str, str]:
    return yaml.safe_load((CONF / "study" / f"{name}.yaml").read_text())["hydra"]["sweeper"][
        "params"
    ]


def test_the_report_study_is_its_four_cases_by_three_seeds(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default sweep folder is only named, never made
    jobs = planned(capsys, "study=report")
    expected = [f"case={c} seed={s} study=report" for c in REPORT_CASES for s in (0, 1, 2)]
    assert jobs == expected
    # a command-line value replaces the file's axis; other settings are added to each job
    jobs = planned(capsys, "study=report", "seed=7", "trainer.epochs=3")
    assert jobs == [f"case={c} seed=7 study=report trainer.epochs=3" for c in REPORT_CASES]
    assert list(tmp_path.iterdir()) == []


def test_the_activations_study_sweeps_its_file_s_activations(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    activations = sweep_params("activations")["model.activation"].split(",")
    assert {"relu", "sigmoid", "leaky_relu"} < set(activations)
    jobs = planned(capsys, "study=activations", "model=resnet34")
    assert len(jobs) == 3 * len(activations)
    assert all("model=resnet34" in job for job in jobs)
    assert {job.split()[0] for job in jobs} == {f"model.activation={a}" for a in activations}


def test_a_users_own_study_in_their_config_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myconf" / "study").mkdir(parents=True)
    (tmp_path / "myconf" / "study" / "mine.yaml").write_text(
        "# @package _global_\n"
        "hydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n"
        "      model.activation: relu,gelu\n      optimizer: adam,sgd\n"
    )
    jobs = planned(capsys, "-cd", str(tmp_path / "myconf"), "study=mine")
    assert [job.removesuffix(" study=mine") for job in jobs] == [
        "model.activation=relu optimizer=adam",
        "model.activation=relu optimizer=sgd",
        "model.activation=gelu optimizer=adam",
        "model.activation=gelu optimizer=sgd",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myconf"]


@pytest.mark.e2e
def test_the_report_study_launches_its_jobs_and_writes_the_report(capsys, tmp_path, cache_dir):
    """The command alone (no -m) launches the jobs the plan lists, and the sweep ends with
    the report. Its seed axis is replaced by one seed, as a command-line value replaces
    a file's axis: the four cases, four tiny jobs (the study's 12 are planned above)."""
    sweep = tmp_path / "sweep"
    tiny = [s for s in TINY if not s.startswith(("dataset.", "trainer.epochs"))]
    args = [
        "study=report", "seed=0", "dataset.image_size=16", "trainer.epochs=1", *tiny,
        "dataset.train_size=16", "dataset.val_size=10", "dataset.test_size=10",
    ]  # fmt: skip
    proc = run_cli(*args, f"hydra.sweep.dir={sweep}", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in jobs] == [str(n) for n in range(len(REPORT_CASES))]
    assert {result(p)["status"] for p in jobs} == {"completed"}
    launched = [sorted(yaml.safe_load((p / HYDRA_DIR / OVERRIDES_FILE).read_text())) for p in jobs]
    assert launched == [sorted(job.split()) for job in planned(capsys, *args)]
    table = pd.read_csv(Path(sweep, REPORT_DIRNAME, "results.csv"))
    assert table["case"].tolist() == REPORT_CASES
    assert table["n"].tolist() == [1, 1, 1, 1]
    assert (Path(sweep, REPORT_DIRNAME, "results.md")).is_file()


@pytest.mark.parametrize(
    ("args", "choices", "message"),
    [
        (["-m", "study=report,activations"], {"study": "report"},
         "study=report,activations is invalid: a study is a whole sweep"),
        (["study=report", "hparams_search=optuna"], {"study": "report", **SEARCH},
         "study=report with hparams_search=optuna: a study is a grid"),
    ],
)  # fmt: skip
def test_two_sweeps_in_one_launch_are_refused_in_one_line(
    args, choices, message, capsys, tmp_path, monkeypatch
):
    """A sweep of studies would give each job a study's name but no study's axes; a
    study with a search would sample the study's axes as hyperparameters. The launch's
    start (callbacks.SweepEnd) and the plan check it alike (check_study)."""
    monkeypatch.chdir(tmp_path)
    assert plan.main([*args, "--no-estimate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    with pytest.raises(ConfigError, match=message):
        check_study([a for a in args if a != "-m"], choices)
    check_study(["study=report", "seed=0,1"], {"study": "report"})  # an axis replaced: fine
