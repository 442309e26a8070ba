"""Other processes that hold a lock while a test looks on: a run folder, a sweep folder.

Each is a fresh interpreter (`python -c CODE ARGS` from the repository root), so its
locks are another process's, as a second launch's or a requeued job's would be.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .cli import HANG_GUARD_S, ROOT

# What every script may use: its command-line arguments as paths, in ARGS.
PRELUDE = """import json, sys, time
from pathlib import Path
ARGS = [Path(a) for a in sys.argv[1:]]
"""
HELD = "held"  # the line a holder prints once it holds its lock

# Statements that take a lock until the process ends (ARGS[0] is the folder).
HOLD_RUN_FOLDER = """
from flowers_sweep.record.runfolder import hold
holding = hold(ARGS[0])  # kept: a dropped context manager would let go
holding.__enter__()
"""
CLAIM_SWEEP = """
from flowers_sweep.job.launch import claim_sweep
claim_sweep(ARGS[0], [])
"""
WAIT_FOR_STDIN = "sys.stdin.read()"  # hold on until the test closes our stdin


def start_python(code: str, *args: str | Path) -> subprocess.Popen:
    """`python -c PRELUDE+code args` from the repository root, all three streams piped."""
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *map(str, args)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_holder(take: str, *args: str | Path, then: str = WAIT_FOR_STDIN) -> subprocess.Popen:
    """A process that runs `take` (statements that take a lock), prints HELD, then runs
    `then`; returned once it has said HELD, so the lock is held by then."""
    code = f"{textwrap.dedent(take)}\nprint({HELD!r}, flush=True)\n{textwrap.dedent(then)}"
    proc = start_python(code, *args)
    line = proc.stdout.readline().strip()
    if line != HELD:
        proc.kill()
        _, err = proc.communicate(timeout=HANG_GUARD_S)
        raise AssertionError(f"the holder never said {HELD!r} (it said {line!r}): {err[-2000:]}")
    return proc


def end_holder(proc: subprocess.Popen) -> str:
    """Close its stdin, wait for it to end, and return its stderr; it must exit with 0."""
    _, err = proc.communicate("", timeout=HANG_GUARD_S)
    assert proc.returncode == 0, err[-2000:]
    return err


@contextmanager
def held_elsewhere(take: str, *args: str | Path) -> Iterator[subprocess.Popen]:
    """While the block runs, another process holds the lock `take` takes; it lets go
    (exits) when the block ends."""
    proc = start_holder(take, *args)
    try:
        yield proc
    except BaseException:
        proc.communicate("", timeout=HANG_GUARD_S)
        raise
    end_holder(proc)
