"""How many CPU threads a run trains with: its share of the cores, not all of them.

PyTorch starts one OpenMP thread per core by default, in every process. Two runs side by
side on 2 cores then put 4 threads on 2 cores; OpenMP threads wait for each other at
every operator, and a thread that has lost its core to the other run holds up its own.
Measured here (benchmarks/shared_cores.py, docs/speed.md), two such runs each took many
times as long as one alone, where a fair share of 2 cores is 2x at most; a run beside
a foreign program that keeps both cores busy did as badly. So with `trainer.threads=auto`
(the default) a run takes its share:

- Each run holds a lock file (an OS file lock, released by the kernel when the process
  dies) in a per-user folder of the node's temporary directory, named by the set of
  CPUs the process may run on (its affinity: SLURM's cgroup, `taskset`), so that only
  runs competing for the same cores count each other. It holds it from before its data
  is set up until it ends: jobs started together (a joblib launch, two terminals,
  pytest-xdist workers) see each other.
- Its share is those CPUs divided by the runs holding a lock (itself included; a
  joblib launch's parallel jobs counted at least), and no more than the cores other
  processes left idle since it last looked: the CPU time /proc/stat counts on its CPUs,
  less its own. At least 1 thread.
- It decides before its first epoch and again before each epoch after (a run that
  started alone gives a core to one started beside it, and takes it back when that one
  ends); the count and why are logged when they change.
- An explicit `trainer.threads=N` is obeyed, and a SLURM job's `cpus_per_task` is its
  share already (job/hydra_job.thread_policy).

Float sums taken in another order differ in their last bits, so a run's numbers depend
on its thread count: `trainer.threads=N` makes runs repeatable whatever else runs.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import itertools
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from filelock import FileLock, Timeout

from flowers_sweep.trainer.hardware import available_cpus

log = logging.getLogger(__name__)
_PRESENCES = itertools.count()  # several runs of one process (a notebook) each hold one


def share_dir() -> Path:
    """The per-user folder of the runs competing for this process's CPUs."""
    uid = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    key = hashlib.sha1(",".join(map(str, cpus)).encode()).hexdigest()[:12] if cpus else "all"
    return Path(tempfile.gettempdir()) / f"flowers_sweep-{uid}" / "cpu_share" / key


@contextlib.contextmanager
def presence(folder: Path | None = None) -> Iterator[Share]:
    """Say, for the block, that a run trains in this process: a held lock file in
    `folder` (default share_dir()). Yields the run's Share of the CPUs."""
    folder = Path(folder or share_dir())
    path = folder / f"{os.getpid()}-{next(_PRESENCES)}.lock"
    lock = FileLock(str(path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as exc:  # a read-only temp folder, a name taken by another user
        log.warning(
            "cannot count the other runs on these CPUs (%s): this run counts only itself", exc
        )
        held = False
    else:
        held = True
    try:
        yield Share(folder if held else None)
    finally:
        if held:
            lock.release()
            with contextlib.suppress(OSError):  # Windows: another process may have it open
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
            with contextlib.suppress(OSError):  # its process is gone
                path.unlink(missing_ok=True)
    return held


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


MIN_SAMPLE_S = 0.25  # the shortest time over which the others' load is measured


class Share:
    """A run's share of its CPUs (see the module's docstring); `threads()` decides it."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder  # None: the other runs cannot be counted
        self._since = _sample()
        self._last: float | None = None

    def others_busy(self) -> float | None:
        """How many of this process's CPUs other processes kept busy since the last
        call (or since the share began), in cores; None where /proc/stat is not read.
        Over less than MIN_SAMPLE_S (a short epoch): the last figure, else it waits."""
        now = _sample()
        if now is None or self._since is None:
            return None
        if now.wall - self._since.wall < MIN_SAMPLE_S:
            if self._last is not None:
                return self._last
            time.sleep(MIN_SAMPLE_S - (now.wall - self._since.wall))
            now = _sample() or now
        since, self._since = self._since, now
        busy_s = (now.busy_ticks - since.busy_ticks) / _TICKS_PER_S
        own_s = now.own_s - since.own_s
        self._last = max(0.0, (busy_s - own_s) / (now.wall - since.wall))
        return self._last

    def threads(self, at_least: int = 1) -> tuple[int, str]:
        """This run's threads now: its CPUs divided by the runs holding a lock (itself
        included; at least `at_least`, a joblib launch's parallel jobs), and no more
        than its part of the cores that programs other than these runs leave idle; at
        least 1. With why, for the log."""
        cpus = available_cpus()
        runs = max(live_runs(self.folder) if self.folder else 1, at_least, 1)
        threads = max(1, cpus // runs)
        why = f"trainer.threads=auto: {cpus} CPU(s)"
        why += f" shared by {runs} runs of this package" if runs > 1 else ", no other run"
        busy = self.others_busy()
        if busy is not None:
            # The other runs keep about their share busy; the rest is foreign load.
            foreign = max(0.0, busy - (runs - 1) * cpus / runs)
            fits = max(1, int((cpus - foreign) / runs + 0.5))  # round half up
            if fits < threads:
                threads = fits
                why += f", {foreign:.1f} kept busy by other programs"
        return threads, why


class _Sample(NamedTuple):
    wall: float  # s, monotonic
    busy_ticks: int  # CPU time spent on this process's CPUs by anything, in clock ticks
    own_s: float  # this process's own CPU time (every thread), s


_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _sample() -> _Sample | None:
    """Now, on Linux; None elsewhere (then only the runs are counted)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    mine = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *ticks = line.split()
        if name in mine:
            # user nice system idle iowait irq softirq steal ...: all but idle, iowait
            values = [int(t) for t in ticks[:8]]
            busy += sum(values) - values[3] - values[4]
    own = os.times()
    return _Sample(time.monotonic(), busy, own.user + own.system)
