"""Real Optuna searches that several tests read (conftest.py makes each once a session):
two launches raced on one folder, and that search continued, confirmed, killed while
confirming and launched again."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

from flowers_sweep.record.runrecord import RESULT_FILE
from flowers_sweep.search.confirm import read_chosen

from .cli import HANG_GUARD_S, TINY, run_cli, start_cli

# A search's trials at their cheapest (one batch an epoch, one block a stage, no weights
# kept): what a search does with its trials does not depend on how much each one trains.
TINY_SEARCH = ["-m", "hparams_search=optuna", "case=relu", *TINY, "dataset.train_size=16",
               "model.layers=[1,1,1,1]", "trainer.keep_weights=none"]  # fmt: skip
RACED = "lr?1e-3"  # raced_search's sweep folder, named like a URL query
# The confirmed search: raced_search's 2 trials continued to 4, the 2 best of them run
# again on 2 fresh seeds each (the fewest a confirmation takes).
CONFIRMED = [*TINY_SEARCH, "hydra.sweeper.n_trials=4", "hydra.sweeper.confirm.top_k=2",
             "hydra.sweeper.confirm.seeds=2"]  # fmt: skip


def race_two_launches(folder: Path, cache: Path) -> None:
    """Two launches of one search (TINY_SEARCH, 2 trials) started together from the empty
    working folder folder/cwd into folder/RACED; folder/launches.json: each launch's
    exit status, stdout and stderr."""
    (folder / "cwd").mkdir()
    args = [*TINY_SEARCH, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir='{folder / RACED}'"]
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
    once 2 of its 4 confirmations have completed, then launched again to its end.
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
    again = run_cli(*args, cache=cache)
    record["again"] = {"returncode": again.returncode, "stdout": again.stdout,
                       "stderr": again.stderr}  # fmt: skip
    (folder / "launches.json").write_text(json.dumps(record))
