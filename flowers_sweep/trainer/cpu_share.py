"""How many CPU threads a run trains with: its share of the cores, not all of them.

PyTorch starts one OpenMP thread per core by default, in every process. Two runs side by
side on 2 cores then put 4 threads on 2 cores, and OpenMP threads that wait for each
other at every operator lose their core to the other run's: measured here
(benchmarks/shared_cores.py), two such runs took 4.2x as long as one alone, where a fair
share is 2x. So with `trainer.threads=auto` (the default) every run of this package on a
machine says it is there, and takes its share of the CPUs:

- Each run holds a lock file (an OS file lock, released by the kernel when the process
  dies) in a per-user folder of the node's temporary directory, named by the set of
  CPUs the process may run on (its affinity: SLURM's cgroup, `taskset`), so that only
  runs competing for the same cores count each other. It holds it from just before its
  data is set up until it ends, and counts the holders once, just before its first
  epoch: jobs started together (a joblib launch, two terminals, pytest-xdist workers)
  see each other.
- Its threads are those CPUs divided by the runs counted (itself included), at least 1;
  a joblib launch's own parallelism is a floor on that count. The number and why are
  logged once, at the start of training.
- An explicit `trainer.threads=N` is obeyed, and a SLURM job's `cpus_per_task` is its
  share already (job/hydra_job.thread_count).

The thread count is decided once per run, never changed during it: float sums taken in
another order differ in their last bits, so a run's numbers depend on its thread count
(that is why `trainer.threads=N` makes runs repeatable whatever else is running).

Beside other programs' load the package sets OpenMP's passive wait policy (see
flowers_sweep/__init__.py): a waiting thread sleeps instead of spinning on a core the
other program needs.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from flowers_sweep.trainer.hardware import available_cpus

_PRESENCES = itertools.count()  # several runs of one process (a notebook) each hold one


def share_dir() -> Path:
    """The per-user folder of the runs competing for this process's CPUs."""
    uid = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    key = hashlib.sha1(",".join(map(str, cpus)).encode()).hexdigest()[:12] if cpus else "all"
    return Path(tempfile.gettempdir()) / f"flowers_sweep-{uid}" / "cpu_share" / key


@contextlib.contextmanager
def presence(folder: Path | None = None) -> Iterator[Path]:
    """Say, for the block, that a run trains in this process: a held lock file in
    `folder` (default share_dir()). Yields the lock file's path."""
    folder = Path(folder or share_dir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}-{next(_PRESENCES)}.lock"
    lock = FileLock(str(path))
    lock.acquire()
    try:
        yield path
    finally:
        lock.release()
        path.unlink(missing_ok=True)


def live_runs(folder: Path | None = None) -> int:
    """How many runs hold a lock file in `folder` (default share_dir()) now; a file left
    by a process that died unreleased is removed."""
    folder = Path(folder or share_dir())
    held = 0
    for path in folder.glob("*.lock"):
        probe = FileLock(str(path))
        try:
            probe.acquire(timeout=0)
        except Timeout:
            held += 1  # flock: held by another open file, in this process or another
            continue
        probe.release()
        pid = path.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)  # its process is gone; a live one relocks its own
    return held


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shared_threads(at_least: int = 1, folder: Path | None = None) -> tuple[int, str]:
    """This run's threads: the CPUs it may use divided by the runs holding a lock in
    `folder` (itself included when inside `presence`), counting at least `at_least`
    runs (a joblib launch's parallelism); at least 1. With why, for the log."""
    cpus = available_cpus()
    runs = max(live_runs(folder), at_least, 1)
    threads = max(1, cpus // runs)
    if runs == 1:
        return threads, f"trainer.threads=auto: {cpus} CPU(s), no other run of this package"
    return threads, f"trainer.threads=auto: {cpus} CPU(s) shared by {runs} runs of this package"
