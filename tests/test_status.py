"""`python -m flowers_sweep.status`: each job of a sweep folder in the state its files
and its launch's notes say, a summary, an exit status; and nothing written.

The sweep folders are written by hand (helpers/runfolders.write_run, with results as
the failure path records them), with one live process holding a run as a trainer does;
one real sweep (the shared report_cases_sweep) is read through the real command.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import yaml

from flowers_sweep import status
from flowers_sweep.errors import ConfigError, DivergedError, Terminated, TrialPrunedError
from flowers_sweep.record.runrecord import (
    LAUNCH_DIR,
    LOCK_FILE,
    RESULT_FILE,
    RUNNING_DIR,
    SWEEP_OWNER_FILE,
    read_metrics,
    stopped_record,
    write_metrics,
)
from flowers_sweep.record.sweepstate import grid_jobs, job_state, launch_owner, sweep_state

from .helpers.cli import HANG_GUARD_S, TINY, run_cli
from .helpers.holders import HOLD_RUN_FOLDER, start_holder
from .helpers.runfolders import write_run

DATA = Path(__file__).parent / "data"
CASES = ["relu", "sigmoid", "leaky_relu", "baseline_cnn"]
# A process that trains in a job folder as app.main does: the run folder's lock, and the
# note that says which job it runs (ARGS: the folder, the launch's folder, the job).
RUN_A_JOB = f"""
{HOLD_RUN_FOLDER}
from flowers_sweep.job.stopping import running_job
noting = running_job(ARGS[1], int(str(ARGS[2])))
noting.__enter__()
"""


def multirun(sweep: Path, task: list[str], sweeper: dict | None = None) -> None:
    """multirun.yaml as Hydra saves it (only what status reads)."""
    hydra = {
        "sweep": {"dir": str(sweep), "subdir": "${hydra.job.num}"},
        "sweeper": sweeper or {"_target_": "hydra._internal.core_plugins.basic_sweeper."
                               "BasicSweeper", "max_batch_size": None, "params": None},
        "overrides": {"hydra": [f"hydra.sweep.dir={sweep}"], "task": task},
    }  # fmt: skip
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra, "seed": 0}))


def stopped(run_dir: Path, status_: str, exc: BaseException, **extra) -> None:
    """result.json of a run that did not complete, as app.record_failure writes it."""
    rows = read_metrics(run_dir)
    case = CASES[int(run_dir.name) % 4]
    record = stopped_record(status_, exc, len(rows), case=case, epochs=3, **extra)
    (run_dir / RESULT_FILE).write_text(json.dumps(record))


def job(sweep: Path, n: int, status_: str | None, epochs_done: int = 3, **kw) -> Path:
    """Job folder n: write_run's (3 epochs planned), with `epochs_done` metrics rows."""
    run_dir = write_run(sweep / str(n), case=CASES[n % 4], seed=n, status=status_, **kw)
    write_metrics(run_dir, [
        {**row, "epoch": int(row["epoch"])} for row in read_metrics(run_dir)[:epochs_done]
    ])  # fmt: skip
    return run_dir


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under the folder: (mtime_ns, size), to see that nothing was written."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def mixed_sweep(tmp_path):
    """A grid of 8 jobs (4 cases x seed 0,1): 0 completed, 1 failed, 2 pruned, 3
    diverged, 4 interrupted, 5 left without a result by a killed process (2 epochs), 6
    made by Hydra and not started, 7 without a folder; the running job is added by the
    test that needs it (job 6's folder, with a live process)."""
    sweep = tmp_path / "sweep"
    multirun(sweep, ["case=relu,sigmoid,leaky_relu,baseline_cnn", "seed=0,1", *TINY])
    job(sweep, 0, "completed")
    failed = ConfigError("dataset.root=/nope: no such folder\nmore")  # said on one line
    stopped(job(sweep, 1, None, 0), "failed", failed)
    stopped(job(sweep, 2, None, 1), "pruned", TrialPrunedError("trial 2 pruned at epoch 1"),
            best_of=read_metrics(sweep / "2"), traceback=False)  # fmt: skip
    stopped(job(sweep, 3, None, 2), "diverged", DivergedError("the training loss is nan"))
    stopped(job(sweep, 4, None, 1), "interrupted", Terminated("SIGTERM: the job was stopped"))
    job(sweep, 5, None, 2)
    job(sweep, 6, None, 0)
    return sweep


def by_name(jobs):
    return {j.name: j for j in jobs}


def test_each_job_of_a_mixed_sweep_is_in_its_state_with_a_live_run(mixed_sweep, capsys):
    launch = mixed_sweep / LAUNCH_DIR
    holder = start_holder(RUN_A_JOB, mixed_sweep / "6", launch, "6")
    try:
        write_metrics(mixed_sweep / "6", [{**read_metrics(mixed_sweep / "0")[0], "epoch": 1}])
        before = files_of(mixed_sweep)
        jobs = by_name(sweep_state(mixed_sweep))
        code = status.main([str(mixed_sweep)])
        assert files_of(mixed_sweep) == before  # read only: no lock file, no mtime moved
        assert not (mixed_sweep / "5" / LOCK_FILE).exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=HANG_GUARD_S)
    out = capsys.readouterr().out
    assert list(jobs) == [str(n) for n in range(8)]
    states = {n: j.state for n, j in jobs.items()}
    assert states == {
        "0": "completed", "1": "failed", "2": "pruned", "3": "diverged", "4": "interrupted",
        "5": "pending", "6": "running", "7": "pending",
    }  # fmt: skip
    assert jobs["1"].reason == "ConfigError: dataset.root=/nope: no such folder"
    assert jobs["3"].reason == "DivergedError: the training loss is nan"
    assert jobs["4"].reason == "Terminated: SIGTERM: the job was stopped"
    assert (jobs["6"].pid, jobs["6"].host) == (holder.pid, socket.gethostname())
    assert (jobs["6"].epochs_done, jobs["6"].epochs_planned) == (1, 3)
    assert [jobs[n].epochs_done for n in "01234"] == [3, 0, 1, 2, 1]
    assert "killed" in jobs["5"].reason and jobs["5"].pid is None
    assert jobs["7"].path is None and jobs["7"].reason == "case=baseline_cnn seed=1"
    assert jobs["7"].epochs_done is None and jobs["7"].last_write is None
    assert [jobs[n].label for n in "0123"] == CASES
    assert all(jobs[n].last_write is not None for n in "0123456")
    assert code == 1
    lines = out.splitlines()
    assert lines[-1] == ("8 jobs: 1 completed, 1 pruned, 1 failed, 1 diverged, 1 interrupted, "
                         "1 running, 2 pending")  # fmt: skip
    row6 = next(line for line in lines if line.startswith("6 "))
    assert "running" in row6 and f"pid {holder.pid} on {socket.gethostname()}" in row6
    assert "1/3" in row6 and " ago" in row6 and "leaky_relu" in row6
    # its process killed, the note it left no longer says running
    dead = by_name(sweep_state(mixed_sweep))["6"]
    assert dead.state == "pending" and f"pid {holder.pid}" in dead.reason


def test_a_run_on_another_host_is_running_by_its_note(mixed_sweep):
    note = mixed_sweep / LAUNCH_DIR / RUNNING_DIR / "5.json"
    note.parent.mkdir(parents=True)
    note.write_text(json.dumps({"pid": 4321, "host": "node-7.cluster"}))
    jobs = by_name(sweep_state(mixed_sweep))
    assert (jobs["5"].state, jobs["5"].host, jobs["5"].pid) == ("running", "node-7.cluster", 4321)
    assert "lock is not held" in jobs["5"].reason
    assert "on node-7.cluster" in status.detail(jobs["5"])


def test_a_run_holding_its_folder_without_a_note_is_running(tmp_path):
    run_dir = job(tmp_path, 0, None, 1)
    assert job_state(run_dir, {}).state == "pending"
    holder = start_holder(HOLD_RUN_FOLDER, run_dir)
    try:
        [one] = sweep_state(run_dir)  # a run folder alone is one job
        assert (one.name, one.state, one.pid) == ("0", "running", None)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=HANG_GUARD_S)


def test_exit_0_only_when_every_job_completed_or_was_pruned(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    multirun(sweep, ["seed=0,1,2"])
    job(sweep, 0, "completed")
    stopped(job(sweep, 1, None, 1), "pruned", TrialPrunedError("pruned"), traceback=False)
    assert status.main([str(sweep)]) == 1  # job 2 is pending: no folder yet
    job(sweep, 2, "completed")
    assert status.main([str(sweep)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 jobs: 2 completed, 1 pruned"
    (sweep / "2" / RESULT_FILE).write_text("{not json")
    assert status.main([str(sweep)]) == 1
    assert by_name(sweep_state(sweep))["2"].state == "unreadable"


def test_a_search_plans_n_trials_jobs(tmp_path):
    sweep = tmp_path / "search"
    sweeper = {"_target_": "hydra_plugins.flowers_sweep_search.study_sweeper.StudySweeper",
               "n_trials": 4, "params": {"optimizer.lr": "interval(0.0001, 0.1)"}}  # fmt: skip
    multirun(sweep, ["hparams_search=optuna"], sweeper)
    job(sweep, 0, "completed")
    job(sweep, 1, "completed")
    jobs = sweep_state(sweep)
    assert [(j.name, j.state) for j in jobs] == [
        ("0", "completed"), ("1", "completed"), ("2", "pending"), ("3", "pending")]  # fmt: skip
    # its confirmation runs (search/confirm.py) are listed by their folder, after the trials
    write_run(sweep / "confirm" / "1-seed1", case="relu", seed=1, status="completed")
    write_run(sweep / "confirm" / "1-seed2", case="relu", seed=2, status=None)
    (sweep / "report" / "x").mkdir(parents=True)  # a report folder holds no job
    jobs = sweep_state(sweep)
    assert [(j.name, j.state) for j in jobs][-2:] == [
        ("confirm/1-seed1", "completed"), ("confirm/1-seed2", "pending")]  # fmt: skip
    assert len(jobs) == 6


def test_the_grid_is_split_as_hydra_splits_it():
    assert grid_jobs(["a=1,2", "+b=range(2)", "c=3", "hydra/launcher=joblib"]) == [
        ("a=1", "+b=0"), ("a=1", "+b=1"), ("a=2", "+b=0"), ("a=2", "+b=1")]  # fmt: skip
    assert grid_jobs(["c=3"]) == [()]  # -m without a sweep: one job
    assert grid_jobs(["case=glob(*)"]) is None  # needs the config: the folders say
    # an old sweep: its folders beyond its last grid (7 for 6) are all listed, once
    jobs = sweep_state(DATA / "sweep_v1")
    assert [j.name for j in jobs] == [str(n) for n in range(7)]
    assert jobs[6].state == "interrupted" and jobs[0].label == "relu"


def test_the_launch_that_holds_the_sweep(tmp_path):
    owner = tmp_path / SWEEP_OWNER_FILE
    assert launch_owner(tmp_path) is None
    owner.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "t"}))
    assert launch_owner(tmp_path).checked
    owner.write_text(json.dumps({"pid": os.getpid(), "host": "node-7", "since": "t"}))
    assert not launch_owner(tmp_path).checked
    dead = start_holder("", "")  # a process, ended: its pid is gone
    dead.communicate("", timeout=HANG_GUARD_S)
    owner.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "t"}))
    assert launch_owner(tmp_path) is None  # a killed launch's note


def test_watch_refreshes_until_interrupted_and_ends_quietly(mixed_sweep, monkeypatch, capsys):
    note = mixed_sweep / LAUNCH_DIR / RUNNING_DIR / "6.json"
    note.parent.mkdir(parents=True)
    note.write_text(json.dumps({"pid": 4321, "host": "node-7"}))  # running: never ends
    naps = []

    def nap(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(status.time, "sleep", nap)
    assert status.main([str(mixed_sweep), "--watch"]) == 1
    assert naps == [status.WATCH_DEFAULT_S] * 2
    out = capsys.readouterr().out
    assert out.count("8 jobs:") == 2 and "\x1b[" not in out  # not a terminal: no clearing
    note.unlink()  # nothing runs and no launch holds it: the first look is the last
    naps.clear()
    assert status.main([str(mixed_sweep), "--watch", "0.5"]) == 1
    assert naps == []


def test_a_path_that_is_no_sweep_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "nowhere"):
        assert status.main([str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{status.PROG}: error: {bad}") and err.count("\n") == 1
    with pytest.raises(SystemExit) as stop:
        status.main([str(tmp_path), "--watch", "0"])
    assert stop.value.code == 2
    assert "not a positive number" in capsys.readouterr().err


def test_ages_read_as_a_person_says_them():
    assert [status.ago(s) for s in (None, 5, 185, 8040, 273600)] == [
        "-", "5s", "3m05s", "2h14m", "3d04h"]  # fmt: skip


@pytest.mark.e2e
def test_a_real_finished_sweep_reads_completed_through_the_command(report_cases_sweep):
    before = files_of(report_cases_sweep)
    proc = run_cli(str(report_cases_sweep), cache=None, module="flowers_sweep.status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "8 jobs: 8 completed"
    assert "no launch holds it now" in proc.stdout.splitlines()[0]
    assert files_of(report_cases_sweep) == before


def test_a_launch_saves_the_sweep_description_a_refusal_puts_back(tmp_path):
    from flowers_sweep.job.launch import claim_sweep, release_sweep, restore_sweep_description

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("old: 1\n")
    claim_sweep(sweep, ["seed=2"])
    try:
        (sweep / "multirun.yaml").write_text("new: 2\n")  # what Hydra's sweeper does next
        restore_sweep_description(sweep)
        assert (sweep / "multirun.yaml").read_text() == "old: 1\n"
    finally:
        release_sweep(sweep)
    fresh = tmp_path / "fresh"
    claim_sweep(fresh, [])
    try:
        (fresh / "multirun.yaml").write_text("new: 2\n")
        restore_sweep_description(fresh)  # a new folder had none: this launch's stays
        assert (fresh / "multirun.yaml").read_text() == "new: 2\n"
    finally:
        release_sweep(fresh)


def test_a_refused_job_puts_back_the_sweeps_description(tmp_path, capsys):
    """A relaunch whose grid puts other settings on a finished job's folder is refused by
    that job (exit 2, the whole launch): the sweep's multirun.yaml, which Hydra rewrote
    for the refused launch, describes the runs the folder holds again, so status lists
    them and not the refused grid."""
    from hydra.types import RunMode

    from flowers_sweep.app import conclude
    from flowers_sweep.errors import RunFolderMismatchError
    from flowers_sweep.record.runrecord import LAUNCH_DIR, MULTIRUN_BEFORE

    from .test_fail_fast import job_in

    sweep = tmp_path / "sweep"
    job = job_in(sweep, 0)
    job.root.hydra.mode = RunMode.MULTIRUN  # as Hydra's config holds it: the enum
    assert job.multirun
    (sweep / LAUNCH_DIR).mkdir()
    (sweep / LAUNCH_DIR / MULTIRUN_BEFORE).write_text("the folder's own sweep\n")
    (sweep / "multirun.yaml").write_text("the refused launch's grid\n")
    with pytest.raises(SystemExit) as ended:
        conclude(job, "refused", exc=RunFolderMismatchError("holds a run with other settings"))
    assert ended.value.code == 2 and "other settings" in capsys.readouterr().err
    assert (sweep / "multirun.yaml").read_text() == "the folder's own sweep\n"
