"""How a launch stops on Ctrl-C, SIGTERM or SIGHUP without losing its runs' work.

A run told to stop writes its last whole epoch as its checkpoint and records itself
`interrupted` (training.run, app.record_failure); this module makes sure every launcher
gives it the time to, and that a launch says so in one line.

- **In a job's process** (`job_signals`): the first SIGINT (Ctrl-C), SIGTERM or SIGHUP
  (the terminal closed) raises in the training loop, KeyboardInterrupt or Terminated.
  Later stop signals are ignored until the run has recorded its stop: launchers pass a
  signal on (submitit's controller repeats Ctrl-C, the launching process forwards
  SIGTERM), and a second exception inside the checkpoint's write would lose it.
- **In the launching process of a sweep** (`LaunchStop`, from the sweep's start to its
  end): a stop signal does not end the launch at once, because a launcher's abort kills
  its workers mid-write (joblib's loky pool SIGKILLs them; submitit's local controller
  SIGKILLs its task one second after Ctrl-C). Instead the launch is marked stopping
  (`SWEEP_DIR/.launch/stop`: a job that starts now does not train), the signal is passed
  to each running job on this host (each registers its pid in `SWEEP_DIR/.launch/running/`), and
  the launch waits until they have ended their runs, at most `STOP_WAIT_S` seconds; then
  it raises `LaunchStopped`, which `__main__` reports in one line. A second Ctrl-C
  during the wait stops at once.

A launcher that runs its jobs in the launching process (the basic one) needs no wait:
while a job runs, its own handlers are in force. Jobs on other hosts (SLURM) are not
signalled: the cluster stops them (scancel sends SIGTERM, which `job_signals` answers).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flowers_sweep.atomic import atomic_write_text
from flowers_sweep.errors import Terminated
from flowers_sweep.record.runfolder import pid_alive, running_notes
from flowers_sweep.record.runrecord import RUNNING_DIR, STOP_MARK

log = logging.getLogger("flowers_sweep")

# Signals that stop a run (SIGHUP does not exist on Windows).
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# The stop signals a sweep's launching process answers (those it did not find ignored,
# as `nohup` ignores SIGHUP), for its jobs' processes: a job answers the same ones, even
# where a launcher started it with one ignored (see controllers_ignore_ctrl_c).
STOP_SIGNALS_ENV = "FLOWERS_SWEEP_STOP_SIGNALS"
# How long a stopping launch waits for its running jobs to record their stop: a batch
# to end (seconds on a CPU for a big model) and a checkpoint to be written.
STOP_WAIT_S = 120.0
# A second stop signal this soon after the first is the same press (a key held or
# pressed twice in a fluster), not a request to give up the runs' last epoch.
REPEAT_S = 1.0
_SAID = {
    "SIGINT": "interrupted (Ctrl-C)",
    "SIGTERM": "stopped (SIGTERM)",
    "SIGHUP": "stopped (SIGHUP: the terminal was closed)",
}


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def stop_exception(signum: int) -> BaseException:
    """What a stop signal raises in a job: Ctrl-C is KeyboardInterrupt, as everywhere
    in Python; SIGTERM and SIGHUP are Terminated, carrying the signal's number."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    if signum == getattr(signal, "SIGHUP", None):
        return Terminated("SIGHUP: the terminal was closed", signum=signum)
    return Terminated("SIGTERM: the job was stopped (pre-emption, requeue or kill)")


def answered_signals() -> list[signal.Signals]:
    """The stop signals this process answers: those its sweep's launch answers (see
    STOP_SIGNALS_ENV), else those not ignored now (`nohup`: SIGHUP; a shell's background
    job: SIGINT), so that a run started to survive a closed terminal still does."""
    named = os.environ.get(STOP_SIGNALS_ENV)
    if named is not None:
        return [s for s in STOP_SIGNALS if s.name in named.split(",")]
    return [s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]


@contextlib.contextmanager
def job_signals() -> Iterator[None]:
    """While a job runs: its first stop signal raises (see stop_exception), the ones
    after it are ignored until the block ends; the previous handlers come back after.
    Only the signals of answered_signals() are taken.

    Only the main thread can take signals; elsewhere (a notebook's worker thread) this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first_stop(signum: int, frame: Any) -> None:
        for s in previous:  # the run is stopping: a repeat must not cut its write
            signal.signal(s, signal.SIG_IGN)
        raise stop_exception(signum)

    previous: dict[int, Any] = {}
    for s in answered_signals():
        previous[s] = signal.signal(s, first_stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class LaunchStopped(KeyboardInterrupt):
    """A sweep's launching process was told to stop and its running jobs have recorded
    their stop; `str()` is the one line to say, `exit_status` 128 + the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def is_stopping(launch_dir: Path) -> bool:
    """Whether the launch that owns `launch_dir` (SWEEP_DIR/.launch) is stopping."""
    return (Path(launch_dir) / STOP_MARK).is_file()


@contextlib.contextmanager
def running_job(launch_dir: Path, job_num: int) -> Iterator[None]:
    """Register this process as running job `job_num` of the launch, for LaunchStop to
    signal and wait for; a note that cannot be written is only logged (it is a hint)."""
    path = Path(launch_dir) / RUNNING_DIR / f"{job_num}.json"
    note = {"pid": os.getpid(), "host": socket.gethostname()}
    try:
        atomic_write_text(path, json.dumps(note) + "\n")
    except OSError as exc:
        log.warning("could not register the job for a clean stop: %s", exc)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def running_pids(launch_dir: Path) -> list[int]:
    """The live processes of this host that are running a job of the launch now."""
    here, me = socket.gethostname(), os.getpid()
    return [
        note["pid"]
        for note in running_notes(launch_dir).values()
        if note["host"] == here and note["pid"] != me and pid_alive(note["pid"])
    ]


class LaunchStop:
    """The launching process's answer to a stop signal during a sweep (see the module
    docstring). `install()` at the sweep's start, `uninstall()` at its end; main thread
    only (elsewhere it does nothing)."""

    def __init__(self, launch_dir: Path, wait_s: float = STOP_WAIT_S) -> None:
        self.launch_dir = Path(launch_dir)
        self.wait_s = wait_s
        self.signum: int | None = None  # the first stop signal, once one came
        self.had_runs = False  # whether a job of this host was running then
        self.since = 0.0  # when the first came (time.monotonic)
        self._previous: dict[int, Any] = {}
        self._installed, self._env = False, None

    def install(self) -> None:
        """Answer the stop signals that are not ignored (answered_signals), and tell the
        jobs' processes which (STOP_SIGNALS_ENV, inherited)."""
        if threading.current_thread() is not threading.main_thread():
            return
        answered = answered_signals()
        for s in answered:
            self._previous[s] = signal.signal(s, self._on_signal)
        self._installed, self._env = True, os.environ.get(STOP_SIGNALS_ENV)
        os.environ[STOP_SIGNALS_ENV] = ",".join(s.name for s in answered)

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self._installed:
            self._installed = False
            if self._env is None:
                os.environ.pop(STOP_SIGNALS_ENV, None)
            else:
                os.environ[STOP_SIGNALS_ENV] = self._env
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # told again while waiting: stop at once, unless
            if time.monotonic() - self.since < REPEAT_S:  # it is the same press bouncing
                return
            raise self._stopped(signum, waited=False)
        self.signum, self.since = signum, time.monotonic()
        with contextlib.suppress(OSError):  # a job that starts now must not train
            atomic_write_text(self.launch_dir / STOP_MARK, signal_name(signum) + "\n")
        pids = running_pids(self.launch_dir)
        for pid in pids:  # Ctrl-C reached them already; SIGTERM/SIGHUP may not have
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
        if pids:
            log.info(
                "stopping: waiting for %d running job%s to write %s last whole epoch "
                "(at most %.0f s; Ctrl-C again stops at once)",
                len(pids), "" if len(pids) == 1 else "s", "its" if len(pids) == 1 else "their",
                self.wait_s,
            )  # fmt: skip
        self.had_runs = bool(pids)
        deadline = time.monotonic() + self.wait_s
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = running_pids(self.launch_dir)
        raise self._stopped(signum, waited=not pids)

    def _stopped(self, signum: int, waited: bool) -> LaunchStopped:
        said = _SAID.get(signal_name(signum), signal_name(signum))
        if not self.had_runs:
            how = "no run was in progress"
        elif waited:
            how = "each run in progress wrote its last whole epoch"
        else:
            how = "runs still writing may have lost their epoch in progress"
        sweep = shlex.quote(str(self.launch_dir.parent))
        return LaunchStopped(
            f"flowers_sweep: sweep {said}: {how}; to resume, run the same command with "
            f"hydra.sweep.dir={sweep}",
            signum,
        )


def controllers_ignore_ctrl_c(start: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap submitit's `start_controller` so that the local controller process starts
    with SIGINT and SIGHUP ignored (a disposition a child inherits, and Python keeps).

    The controller would otherwise take the terminal's Ctrl-C itself: a traceback on the
    terminal, then SIGKILL for its task one second later, mid-write. Its task (our job)
    sets its own handlers (job_signals), and the launching process stops the launch.
    """

    @functools.wraps(start)
    def started_deaf(*args: Any, **kwargs: Any) -> Any:
        deaf = [s for s in STOP_SIGNALS if s != signal.SIGTERM]
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in deaf}
        try:
            return start(*args, **kwargs)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    started_deaf.__wrapped_by_flowers_sweep__ = True  # type: ignore[attr-defined]
    return started_deaf


def quiet_local_controllers() -> None:
    """Apply controllers_ignore_ctrl_c to submitit's local executor (once)."""
    try:
        from submitit.local import local
    except ImportError:  # no submitit: no local controller either
        return
    if not getattr(local.start_controller, "__wrapped_by_flowers_sweep__", False):
        local.start_controller = controllers_ignore_ctrl_c(local.start_controller)


# What multiprocessing's resource tracker says when a stopped joblib pool is shut down
# with its workers' semaphores still registered: nothing leaks (the tracker frees them),
# but it prints a two-line warning after the launch's one line. The tracker is a child
# process: it takes its warning filters from the environment.
_TRACKER_WARNING = "ignore:resource_tracker:UserWarning"


def quiet_resource_tracker() -> None:
    """Keep the resource tracker's 'leaked semaphore' warning off a stopped launch's
    terminal (see _TRACKER_WARNING); other warnings are untouched."""
    filters = [f for f in os.environ.get("PYTHONWARNINGS", "").split(",") if f]
    if _TRACKER_WARNING not in filters:
        os.environ["PYTHONWARNINGS"] = ",".join([*filters, _TRACKER_WARNING])
