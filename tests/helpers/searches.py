"""Real Optuna searches that several tests read (conftest.py makes each once a session):
two launches raced on one folder, and that search continued, confirmed, killed while
confirming and launched again (by app.main in this process)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from flowers_sweep.record.runrecord import RESULT_FILE
from flowers_sweep.search.confirm import read_chosen

from .cli import HANG_GUARD_S, TINY, run_app_in_process, start_cli

# A search's trials at their cheapest (one batch an epoch, one block a stage, no weights
# kept): what a search does with its trials does not depend on how much each one trains.
TINY_TRIALS = [*TINY, "dataset.train_size=16", "model.layers=[1,1,1,1]",
               "trainer.keep_weights=none"]  # fmt: skip
TINY_SEARCH = ["-m", "hparams_search=optuna", "case=relu", *TINY_TRIALS]
# docs/tracking.md's search-space example as written (test_docs_commands.py checks that
# the page still shows it): raced_search runs it, tiny, so that its run is checked too.
DOCUMENTED_SEARCH = ["-m", "hparams_search=optuna", "case=relu",
                     "optimizer.lr=tag(log, interval(1e-5, 1e-3))"]  # fmt: skip
RACED = "lr?1e-3"  # raced_search's sweep folder, named like a URL query
# The confirmed search: raced_search's 2 trials continued to 4, the 2 best of them run
# again on 2 fresh seeds each (the fewest a confirmation takes).
CONFIRMED = [*DOCUMENTED_SEARCH, *TINY_TRIALS, "hydra.sweeper.n_trials=4",
             "hydra.sweeper.confirm.top_k=2", "hydra.sweeper.confirm.seeds=2"]  # fmt: skip


def race_two_launches(folder: Path, cache: Path) -> None:
    """Two launches of one search (DOCUMENTED_SEARCH with TINY_TRIALS, 2 trials) started
    together from the empty working folder folder/cwd into folder/RACED;
    folder/launches.json: each launch's exit status, stdout and stderr."""
    (folder / "cwd").mkdir()
    args = [*DOCUMENTED_SEARCH, *TINY_TRIALS, "hydra.sweeper.n_trials=2",
            f"hydra.sweep.dir='{folder / RACED}'"]  # fmt: skip
    procs = [start_cli(*args, cache=cache, cwd=folder / "cwd") for _ in range(2)]
    outs = [p.communicate(timeout=HANG_GUARD_S) for p in procs]
    launches = [{"returncode": p.returncode, "stdout": out, "stderr": err}
                for p, (out, err) in zip(procs, outs, strict=True)]  # fmt: skip
    (folder / "launches.json").write_text(json.dumps(launches))


def completed_confirmations(sweep: Path) -> list[str]:
    """The confirmation runs (sweep/confirm/<trial>-seed<s>) whose result is completed."""
    return sorted(p.parent.name for p in (sweep / "confirm").glob(f"*-seed*/{RESULT_FILE}")
                  if json.loads(p.read_text())["status"] == "completed")  # fmt: skip


def mtimes(paths: dict[str, Path]) -> dict[str, int]:
    """Each path's modification time in ns, by name: unchanged if nothing rewrote it."""
    return {name: path.stat().st_mtime_ns for name, path in paths.items()}


def confirm_killed_and_again(folder: Path, cache: Path, raced: Path) -> None:
    """folder/search: a copy of raced's search launched with CONFIRMED, killed (SIGKILL)
    once 2 of its 4 confirmations have completed, then launched again to its end (in this
    process: run_app_in_process).
    folder/launches.json: the killed launch's stdout; what the folder held then (the
    completed confirmations, the chosen trials, each result.json's mtime in ns); the
    relaunch's exit status, stdout and stderr."""
    sweep = folder / "search"
    shutil.copytree(raced, sweep)
    args = [*CONFIRMED, f"hydra.sweep.dir={sweep}"]
    proc = start_cli(*args, cache=cache)
    deadline = time.monotonic() + HANG_GUARD_S
    while len(completed_confirmations(sweep)) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate(timeout=HANG_GUARD_S)
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    done = completed_confirmations(sweep)
    record = {
        "killed_stdout": out,
        "done": done,
        "chosen": [c.trial for c in read_chosen(sweep)],
        "stamps": mtimes({n: sweep / "confirm" / n / RESULT_FILE for n in done}),
        "trial_stamps": mtimes({str(n): sweep / str(n) / RESULT_FILE for n in range(4)}),
    }
    # Launched again by app.main in this process, as the CLI calls it (the killed launch
    # was the real command line): its output as the CLI's would be, on stdout and stderr.
    with pytest.MonkeyPatch.context() as patch:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_app_in_process(args, patch)
    record["again"] = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
    (folder / "launches.json").write_text(json.dumps(record))
