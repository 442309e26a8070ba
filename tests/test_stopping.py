"""A launch told to stop (Ctrl-C, SIGTERM, SIGHUP) keeps the work of every running job,
under every launcher that runs jobs on this machine, and says so in one line."""

import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from flowers_sweep.errors import Terminated
from flowers_sweep.job import stopping
from flowers_sweep.job.outcome import RULES, outcome_of

from .helpers.cli import HANG_GUARD_S, ROOT, SLOW, cli_env, metrics, result

# One thread per job whatever the machine (SLOW says so; under joblib, see JOBLIB_SWEEP):
# job 0 must compute the same sums as conftest's `reference`, SLOW's uninterrupted run,
# its twin.
STOPPED_SWEEP = [*SLOW, "aggregate=false"]
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local"],
}


# ---------------------------------------------------------------- in one process


@pytest.fixture
def restored_signals():
    before = {s: signal.getsignal(s) for s in stopping.STOP_SIGNALS}
    env = os.environ.get(stopping.STOP_SIGNALS_ENV)
    yield
    for s, handler in before.items():
        signal.signal(s, handler)
    if env is None:
        os.environ.pop(stopping.STOP_SIGNALS_ENV, None)
    else:
        os.environ[stopping.STOP_SIGNALS_ENV] = env


def test_a_job_takes_the_first_stop_and_ignores_repeats_until_it_has_recorded(
    restored_signals,
):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    recorded = False
    with pytest.raises(KeyboardInterrupt), stopping.job_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs at the next bytecode
        finally:  # the run records its stop here: a repeat must not cut it short
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            recorded = True
    assert recorded
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    with pytest.raises(Terminated) as hup, stopping.job_signals():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(1)
    assert hup.value.signum == signal.SIGHUP and outcome_of(hup.value) == "hung_up"
    assert RULES["hung_up"].alone == 128 + signal.SIGHUP
    back = pickle.loads(pickle.dumps(hup.value))  # launchers carry it between processes
    assert back.signum == signal.SIGHUP and str(back) == str(hup.value)


def test_an_ignored_signal_stays_ignored_unless_the_launch_answers_it(restored_signals):
    """`nohup` ignores SIGHUP: a run started so must survive the terminal's closing; a
    job of a launch answers what its launch answers (its controller may ignore more)."""
    os.environ.pop(stopping.STOP_SIGNALS_ENV, None)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    assert signal.SIGHUP not in stopping.answered_signals()
    with stopping.job_signals():
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    os.environ[stopping.STOP_SIGNALS_ENV] = "SIGINT,SIGHUP"
    assert stopping.answered_signals() == [signal.SIGINT, signal.SIGHUP]


def job_process() -> None:
    """In a stand-in job before it starts: a process group of its own, and the stop
    signals answered (a job's own handlers; here their defaults), whatever this process
    ignores (under nohup: SIGHUP, which a child would inherit)."""
    os.setpgrp()
    for s in stopping.STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_a_stopping_launch_signals_its_running_jobs_and_waits_for_them(
    tmp_path, restored_signals, sig
):
    """The launching process marks the launch stopping, passes the signal on to each
    registered job of this host, waits until the jobs are gone, then says one line:
    a kill or a scheduler (SIGTERM: through a real launch too, below), or the terminal
    closed (SIGHUP)."""
    job = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], preexec_fn=job_process
    )
    launch = tmp_path / ".launch"
    (launch / stopping.RUNNING_DIR).mkdir(parents=True)
    note = launch / stopping.RUNNING_DIR / "3.json"
    note.write_text(f'{{"pid": {job.pid}, "host": "{os.uname().nodename}"}}')
    assert stopping.running_pids(launch) == [job.pid]
    stop = stopping.LaunchStop(launch, wait_s=HANG_GUARD_S)
    os.environ.pop(stopping.STOP_SIGNALS_ENV, None)
    # as a terminal's command has them (a pytest-xdist worker, a CI job ignore SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    stop.install()
    assert os.environ[stopping.STOP_SIGNALS_ENV].split(",") == ["SIGINT", "SIGTERM", "SIGHUP"]
    try:
        with pytest.raises(stopping.LaunchStopped) as stopped:
            os.kill(os.getpid(), sig)
            time.sleep(HANG_GUARD_S)
    finally:
        stop.uninstall()
        job.kill()
    assert job.wait() == -sig  # the signal was passed on
    assert stopping.is_stopping(launch)
    assert stopped.value.exit_status == 128 + sig
    said = str(stopped.value)
    assert said.startswith(f"flowers_sweep: sweep stopped ({sig.name}") and "\n" not in said
    assert "each run in progress wrote its last whole epoch" in said
    assert said.endswith(f"run the same command with hydra.sweep.dir={tmp_path}")
    assert signal.getsignal(sig) is signal.SIG_DFL


def test_submitit_controllers_start_deaf_to_ctrl_c(restored_signals):
    """A controller that took Ctrl-C would print a traceback and SIGKILL its task a
    second later, mid-write; the launching process answers it instead."""
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def start(code):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    code = "import signal; print(int(signal.getsignal(2)), int(signal.getsignal(1)))"
    deaf = stopping.controllers_ignore_ctrl_c(start)(code)
    assert deaf.stdout.split() == [str(int(signal.SIG_IGN))] * 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # here: unchanged


# ---------------------------------------------------------------- real launchers


def start_sweep(sweep, launcher, *extra, cache, cpus=None):
    """The sweep of STOPPED_SWEEP and `extra` (last: a sweep of SLOW's keys wins), on
    `cpus` (a set of CPU numbers) if given."""

    def as_a_terminal_starts_it():
        # CI may start us with stop signals ignored; a terminal's command has them
        for s in stopping.STOP_SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return subprocess.Popen(
        [sys.executable, "-m", "flowers_sweep", "-m", *LAUNCHERS[launcher], *STOPPED_SWEEP,
         *extra, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, env=cli_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own process group, as a terminal gives
        preexec_fn=as_a_terminal_starts_it,
    )  # fmt: skip


def wait_for_epochs(jobs, n, proc):
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        rows = [j / "metrics.csv" for j in jobs]
        if all(p.is_file() and len(p.read_text().splitlines()) > n for p in rows):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no {n} epochs within {HANG_GUARD_S}s")


# Under joblib: three jobs for two workers, so that one waits in the queue when the stop
# comes. Job 0 is `reference`'s twin (SLOW's 4 epochs), job 1 another running job, job 2
# the queued one: one epoch is all it needs, to train nothing when stopped and all of it
# in the relaunch. Their threads are auto, as two parallel jobs share the CPUs: on at
# most two CPUs that is one thread each (a joblib launch's two jobs count at least), as
# `reference` trains with, on any machine.
JOBLIB_SWEEP = ["trainer.epochs=4,3,1", "trainer.threads=auto"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("launcher", "sig", "to_group"),
    [
        # Ctrl-C: the terminal signals the whole group. Under joblib the pool's workers
        # take it; a queued job does not start; the relaunch (the resume is the same
        # whatever stopped the launch and whichever launcher runs it: one, here, as each
        # relaunch is a whole second sweep) resumes each job and trains the queued one.
        ("joblib", signal.SIGINT, True),
        # Under submitit its controllers must not take it (no traceback, no SIGKILL of
        # their task mid-write): only a real launch shows them.
        ("submitit_local", signal.SIGINT, True),
        # A kill, a scheduler: the launcher only, which passes it on to each registered
        # job, here a task that submitit gave a SIGTERM handler of its own; joblib's
        # workers take a passed-on signal as they take Ctrl-C (above), and SIGHUP takes
        # the same path as SIGTERM (in one process, above).
        ("submitit_local", signal.SIGTERM, False),
    ],
    ids=["joblib-ctrl-c", "submitit-ctrl-c", "submitit-sigterm"],
)
def test_a_stopped_sweep_keeps_each_running_jobs_last_epoch(
    tmp_path, cache_dir, reference, launcher, sig, to_group
):
    """Mid-epoch 2 of both running jobs: each writes its epoch-1 checkpoint and an
    `interrupted` result before the launch ends, in one line with no traceback; a job
    not yet started when the stop came trains nothing; the relaunch resumes each one
    and ends where an uninterrupted twin (`reference`) does, its parallel jobs sharing
    the CPUs."""
    sweep = tmp_path / "sweep"
    joblib = launcher == "joblib"
    values = JOBLIB_SWEEP if joblib else ["model.activation=relu,sigmoid"]
    cpus = set(sorted(os.sched_getaffinity(0))[:2]) if joblib else None
    proc = start_sweep(sweep, launcher, *values, cache=cache_dir, cpus=cpus)
    wait_for_epochs([sweep / "0", sweep / "1"], 1, proc)
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in out + err and "Logging error" not in err, err[-3000:]
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("flowers_sweep: sweep ")
    ] and len(err.strip().splitlines()) == 1, err
    assert "each run in progress wrote its last whole epoch" in err
    assert err.strip().endswith(f"run the same command with hydra.sweep.dir={sweep}")
    for job in ("0", "1"):
        assert result(sweep / job)["status"] == "interrupted"
        state = torch.load(sweep / job / "checkpoint.pt", weights_only=True)
        assert state["progress"]["epoch"] >= 1
    if not joblib:  # each job's run in its own folder, in the sweep's order
        assert [result(sweep / j)["activation"] for j in ("0", "1")] == ["relu", "sigmoid"]
        return
    # the third job was queued: nothing of it was trained
    assert not (sweep / "2" / "metrics.csv").exists()
    assert not (sweep / "2" / "result.json").exists()
    again = start_sweep(sweep, launcher, *values, cache=cache_dir, cpus=cpus)
    _, err = again.communicate(timeout=HANG_GUARD_S)
    assert again.returncode == 0, err[-3000:]
    log = (sweep / "0" / "flowers_sweep.log").read_text()
    assert "resumed from" in log
    assert metrics(sweep / "0") == metrics(reference)
    assert result(sweep / "0")["test_acc"] == result(reference)["test_acc"]
    jobs = [result(sweep / j) for j in ("0", "1", "2")]
    assert [(r["status"], r["epochs"]) for r in jobs] == [("completed", n) for n in (4, 3, 1)]
    assert [len(metrics(sweep / j)) for j in ("1", "2")] == [3, 1]  # each epoch once
    # two parallel jobs share the CPUs, with any other run
    why = re.search(r"torch threads: (\d+) \(trainer.threads=auto: (\d+) CPU\(s\) "
                    r"shared by (\d+) runs", log)  # fmt: skip
    assert why, log[-2000:]
    threads, seen, runs = map(int, why.groups())
    assert seen == len(cpus) and runs >= 2 and threads == max(1, len(cpus) // runs)
    assert f"{threads} thread{'' if threads == 1 else 's'}\n" in log


def test_a_second_ctrl_c_stops_at_once_but_not_the_same_press_bouncing(tmp_path):
    """While the launch waits for its jobs, a press within REPEAT_S of the first is the
    same press (ignored); a later one stops at once."""
    stop = stopping.LaunchStop(tmp_path / ".launch")
    stop.signum, stop.since, stop.had_runs = signal.SIGINT, time.monotonic(), True
    assert stop._on_signal(signal.SIGINT, None) is None  # bouncing: still waiting
    stop.since -= stopping.REPEAT_S
    with pytest.raises(stopping.LaunchStopped, match="runs still writing may have lost"):
        stop._on_signal(signal.SIGINT, None)
