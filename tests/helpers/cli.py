"""Running the real command line in a fresh interpreter (or its main in this process), and
reading what it wrote."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from flowers_sweep.config.command_line import hydra_args
from flowers_sweep.record.runrecord import METRICS_FILE, RESULT_FILE

from .shared import made_once
from .state import ProcessState

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures" / "flowers102"
# Small enough for a test to train in seconds, big enough to exercise every path. One
# torch thread: the same sums whatever else runs (tests run in parallel, and a run's
# share of the cores would otherwise depend on them: trainer/cpu_share.py), and no
# more threads than the core a test worker has. Tests of the thread policy say auto.
TINY = [
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "dataset.image_size=32",
    "dataset.train_size=48",
    "dataset.val_size=20",
    "dataset.test_size=20",
    "trainer.threads=1",  # last: tests take TINY[:2] and TINY[2:]
]

# Enough data that an epoch takes a moment (about a second here), so a kill can land
# between two of them; one block a stage, since depth adds time, not paths.
SLOW = [*TINY, "dataset.train_size=320", "trainer.epochs=4", "model.layers=[1,1,1,1]"]
# One real run that several files' tests read (conftest.shared_run): RMSprop from its
# target under the cosine preset, kept checkpoint, fp32 channels_last.
SHARED_RUN = [
    *TINY, "model=baseline_cnn", "optimizer._target_=torch.optim.RMSprop",
    "~optimizer.betas", "+optimizer.alpha=0.9", "scheduler=cosine", "trainer.epochs=4",
    "trainer.keep_checkpoint=true", "trainer.precision=32", "trainer.channels_last=true",
]  # fmt: skip
COMPARED = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")  # not epoch_s


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / METRICS_FILE, newline="") as f:
        return [{k: r[k] for k in COMPARED} for r in csv.DictReader(f)]


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / RESULT_FILE).read_text())


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# A guard against a hung subprocess, far above what any test's work takes on a busy
# 2-core machine: a test's outcome must never depend on how loaded the machine is.
HANG_GUARD_S = 1800


def cli_env(cache: Path | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a CLI run, with its data cache and `extra` set."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cache is not None:
        env["FLOWERS_SWEEP_CACHE"] = str(cache)
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    cache: Path | None,
    timeout: float = HANG_GUARD_S,
    module: str = "flowers_sweep",
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """The real entry point (`python -m module`) in a fresh interpreter, as a user runs it;
    `env`: variables to set besides the cache (PYTHONPATH for a user's module, say)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(cache, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The root logger's handlers and level put back after the test: a command's main in
    this process sets up its logging as the command would (Hydra's, a run's log file)."""
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))
    monkeypatch.setattr(logging.root, "level", logging.root.level)


def cli_run_once(factory: pytest.TempPathFactory, name: str, args: list[str], cache: Path) -> Path:
    """`python -m flowers_sweep ARGS` into a run folder made once a session (shared.made_once),
    which several tests read; that folder."""

    def make(folder: Path) -> None:
        proc = run_cli(*args, f"hydra.run.dir={folder / 'run'}", cache=cache)
        assert proc.returncode == 0, proc.stderr[-3000:]

    return made_once(factory, name, make) / "run"


def run_app(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """app.main as `python -m flowers_sweep ARGV` calls it, in this process; Hydra's log
    set-up (--info, --help) and its config of the current job are undone after the test.
    For what the command line adds nothing to (a refusal whose line the real command's
    test checks once); stderr and stdout go to capsys."""
    from flowers_sweep.app import main

    monkeypatch.setattr(sys, "argv", ["flowers_sweep", *hydra_args(argv)])
    keep_logging(monkeypatch)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", HydraConfig.instance().cfg)
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run_app_in_process(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """run_app (app.main as `python -m flowers_sweep ARGV` calls it, in this process:
    its exit status), with what a run sets for its whole process put back after it (the
    torch thread count and determinism switches, CUBLAS_WORKSPACE_CONFIG: the CLI's
    process ends with them). For a run or launch whose command line adds nothing to what
    is checked (another test starts the real one)."""
    before = ProcessState.capture()
    try:
        return run_app(argv, monkeypatch)
    finally:
        before.restore()


def start_cli(
    *args: str, cache: Path | None, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """Like run_cli, without waiting: for launches that must overlap, or be killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "flowers_sweep", *args],
        cwd=cwd,
        env=cli_env(cache, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_epochs(
    run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = HANG_GUARD_S
) -> None:
    """Poll run_dir's metrics.csv until it has n rows (written at each epoch's end, after
    any checkpoint due then); fail with the process's output if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = Path(run_dir) / METRICS_FILE
        if path.is_file() and len(path.read_text().splitlines()) - 1 >= n:
            return
        assert proc.poll() is None, proc.communicate(timeout=HANG_GUARD_S)
        time.sleep(0.01)
    raise AssertionError(f"no {n} epochs within {timeout}s")
