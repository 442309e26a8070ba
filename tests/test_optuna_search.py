"""hparams_search=optuna end to end, as a user runs it: pruning from a folder outside the
clone, studies that Optuna's own tools open, an old study upgraded, and two launches of
one search started together (in a folder whose name looks like a URL query: the shared
raced_search fixture, whose report and continuation test_search.py checks)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from flowers_sweep.record.runrecord import SQLITE_FILE
from flowers_sweep.search.study import storage_url

from .helpers.cli import HANG_GUARD_S, result, run_app_in_process, run_cli
from .helpers.searches import RACED, TINY_SEARCH
from .helpers.services import free_port, get_json, serving
from .test_study import old_study

pytestmark = pytest.mark.e2e
# Prunes every trial after its second epoch, whatever its accuracy: a pruned trial
# that does not depend on how well a tiny model happened to learn (steps are epochs,
# from 1; Optuna prunes none before step n_warmup_steps).
PRUNE_AFTER_2 = (
    "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:1.1,n_warmup_steps:2}"
)


def load(sweep: Path) -> optuna.Study:
    return optuna.load_study(study_name="resnet18-relu", storage=storage_url("sqlite", sweep))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pruned_trials_stop_early_are_recorded_and_stay_pruned(
    tmp_path, cache_dir, capsys, monkeypatch
):
    """From a folder outside the clone, with runs in joblib workers that report to the
    study themselves: each trial stops after epoch 2 of 3, says so in result.json, is
    PRUNED in the study, and a relaunch (the same command) neither retrains it nor
    counts it as failed. The launch is the real command line; the relaunch is app.main
    in this process, as the CLI calls it."""
    sweep, outside = tmp_path / "search", tmp_path / "elsewhere"
    outside.mkdir()
    args = [*TINY_SEARCH, "trainer.epochs=3", PRUNE_AFTER_2, "hydra.sweeper.n_trials=2",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    joblib = ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2"]
    proc = run_cli(*args, *joblib, cache=cache_dir, cwd=outside)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n in ("0", "1"):
        res = result(sweep / n)
        assert res["status"] == "pruned" and res["epochs_done"] == 2, res
        assert "ThresholdPruner after epoch 2" in res["error"]
        assert not (sweep / n / "traceback.txt").exists()
    study = load(sweep)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert [sorted(t.intermediate_values) for t in study.trials] == [[1, 2], [1, 2]]
    trials = pd.read_csv(sweep / "report" / "trials.csv")
    assert trials["status"].tolist() == ["pruned", "pruned"]
    assert "did not complete" not in proc.stderr  # pruned is not failed

    # Killed between the run's result and the sweeper's tell: trial 0 is RUNNING again.
    # A relaunch runs it again (a RUNNING trial does not count as done: n_trials=2 has
    # one to go), and its run finds itself pruned already. On the basic launcher: a
    # joblib worker would cost seconds of imports to run the same code.
    with sqlite3.connect(sweep / SQLITE_FILE) as con:
        con.execute("UPDATE trials SET state='RUNNING', datetime_complete=NULL WHERE number=0")
    before = digest(sweep / "0" / "metrics.csv")
    monkeypatch.chdir(outside)
    capsys.readouterr()
    assert run_app_in_process(args, monkeypatch) == 0
    said = "".join(capsys.readouterr())
    assert "trial 0 was left running by an earlier launch" in said, said[-3000:]
    assert "did not complete" not in said
    assert digest(sweep / "0" / "metrics.csv") == before  # not trained again
    assert [t.state for t in load(sweep).trials] == [TrialState.PRUNED] * 2
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]

    # The study opens in the installed Optuna (above) and in optuna-dashboard.
    port = free_port()
    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    url = storage_url("sqlite", sweep)
    with serving([dashboard, url, "--port", str(port), "--host", "127.0.0.1", "--quiet"],
                 f"http://127.0.0.1:{port}/api/studies"):  # fmt: skip
        [summary] = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        assert summary["study_name"] == "resnet18-relu"
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}")
    assert [t["state"] for t in detail["trials"]] == ["Pruned"] * 2
    assert all(len(t["intermediate_values"]) == 2 for t in detail["trials"])


def test_a_study_of_the_old_sweeper_says_how_to_upgrade_and_then_continues(
    tmp_path, cache_dir, monkeypatch
):
    sweep = tmp_path / "search"
    sweep.mkdir()
    url = old_study(sweep)
    # No report: it reads the run folders, never the study (and its own tests are others').
    args = [
        *TINY_SEARCH,
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=3",
        "aggregate=false",
    ]
    proc = run_cli(*args, cache=cache_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"flowers_sweep: error: the study in {url} was made by optuna 2.10.1; upgrade it "
        f"once with: optuna storage upgrade --storage '{url}' (then run the same command "
        "again to continue it)"
    ]
    optuna_cli = shutil.which("optuna", path=str(Path(sys.executable).parent))
    upgrade = subprocess.run([optuna_cli, "storage", "upgrade", "--storage", url],
                             capture_output=True, text=True, timeout=HANG_GUARD_S)  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    # Continued: app.main in this process, as the CLI calls it (the refusal above is the
    # real command line's, and test_optuna_search_continues continues a search by it).
    assert run_app_in_process(args, monkeypatch) == 0
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["2"]
    study = load(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert study.trials[2].params["scheduler.milestones"] in study.trials[0].distributions[
        "scheduler.milestones"].choices  # fmt: skip


def test_two_launches_of_one_search_started_together(raced_search):
    """One search runs, the other says in one line that the folder is busy (or, when the
    first has ended by then, finds nothing left to do): never a traceback, never a trial
    run twice, never two trials with the same values, exactly n_trials trials.

    The folder is named like a URL query: before, `lr?1e-3` put its study in a file
    `lr` beside it (the next search in `lr?2e-3` found it there and trained nothing).
    Nor does a launch leave empty default sweep folders in the working directory
    (conf/config.yaml's `${fs.unique_dir:...}`, which the preset replaces)."""
    launches = json.loads((raced_search / "launches.json").read_text())
    sweep = raced_search / RACED
    codes = sorted(launch["returncode"] for launch in launches)
    errs = [launch["stderr"] for launch in launches]
    assert all("Traceback" not in err for err in errs), errs
    assert codes in ([0, 0], [0, 2]), (codes, errs)
    if codes == [0, 2]:
        [busy] = [launch["stderr"] for launch in launches if launch["returncode"] == 2]
        assert busy.strip().count("\n") == 0 and "in use by another launch" in busy
    study = load(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 2, params
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    assert result(sweep / "0")["status"] == "completed"
    assert sorted(p.name for p in raced_search.iterdir()) == [
        ".made", "cwd", "launches.json", RACED]  # fmt: skip
    assert list((raced_search / "cwd").rglob("*")) == []
