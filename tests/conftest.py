from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures" / "flowers102"
# Small enough for a test to train in seconds, big enough to exercise every path.
TINY = [
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "dataset.image_size=32",
    "dataset.train_size=48",
    "dataset.val_size=20",
    "dataset.test_size=20",
]


def slurm_cluster() -> str | None:
    """Why no SLURM cluster answers here, or None when one does (with a node up)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (bash scripts/local_slurm.sh up starts a one-node cluster)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=HANG_GUARD_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    states = proc.stdout.split()
    if proc.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states):
        return "no SLURM node up (bash scripts/local_slurm.sh up, then export SLURM_CONF)"
    return None


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip without CUDA, `slurm` tests without a cluster, each saying why."""
    import torch

    reasons = {"slurm": slurm_cluster() if any("slurm" in i.keywords for i in items) else None}
    if not torch.cuda.is_available():
        reasons["gpu"] = "needs a CUDA GPU (bash benchmarks/gpu_check.sh)"
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say plainly whether the cluster tests ran: a skip is easy to miss in a dot line."""
    ran = [r for r in terminalreporter.stats.get("passed", []) if "slurm" in r.keywords]
    failed = [r for r in terminalreporter.stats.get("failed", []) if "slurm" in r.keywords]
    if ran or failed:
        where = os.environ.get("SLURM_CONF", "the default SLURM config")
        terminalreporter.write_line(
            f"slurm tests: {len(ran)} passed, {len(failed)} failed, against {where}"
        )


# Enough data that an epoch takes a moment (about a second here), so a kill can land
# between two of them; one block a stage, since depth adds time, not paths.
SLOW = [*TINY, "dataset.train_size=320", "trainer.epochs=4", "model.layers=[1,1,1,1]"]
COMPARED = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")  # not epoch_s


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: r[k] for k in COMPARED} for r in csv.DictReader(f)]


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


@pytest.fixture(scope="session")
def reference(tmp_path_factory, cache_dir) -> Path:
    """An uninterrupted SLOW run that interrupted, resumed or requeued ones must equal."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = run_cli(*SLOW, f"hydra.run.dir={run_dir}", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="session")
def report_cases_sweep(tmp_path_factory, cache_dir) -> Path:
    """The report's four cases, two seeds each, two epochs, tiny: one real sweep that the
    CLI tests and the aggregator tests both read (it ends by writing its report)."""
    sweep = tmp_path_factory.mktemp("report_cases") / "sweep"
    proc = run_cli(
        "-m", "case=relu,sigmoid,leaky_relu,baseline_cnn", "seed=0,1", *TINY,
        "trainer.epochs=2", f"hydra.sweep.dir={sweep}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session, never the user's own."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["FLOWERS_SWEEP_CACHE"] = str(path)
    return path


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# A guard against a hung subprocess, far above what any test's work takes on a busy
# 2-core machine: a test's outcome must never depend on how loaded the machine is.
HANG_GUARD_S = 1800


def cli_env(cache: Path | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cache is not None:
        env["FLOWERS_SWEEP_CACHE"] = str(cache)
    return env


def run_cli(
    *args: str,
    cache: Path | None,
    timeout: float = HANG_GUARD_S,
    module: str = "flowers_sweep",
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess:
    """The real entry point (`python -m module`) in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(cache),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cache: Path | None, cwd: Path = ROOT) -> subprocess.Popen:
    """Like run_cli, without waiting: for launches that must overlap."""
    return subprocess.Popen(
        [sys.executable, "-m", "flowers_sweep", *args],
        cwd=cwd,
        env=cli_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="session")
def flowers_tree(tmp_path_factory):
    """A Flowers102 tree: the official label/split files when ../shared has them (real
    split sizes over 8,189 generated JPEGs), else a miniature of our own."""
    from .fake_flowers102 import write_tree

    root = tmp_path_factory.mktemp("flowers")
    if (SHARED_FIXTURES / "setid.mat").is_file():
        write_tree(root, official_mats=SHARED_FIXTURES, size=16)
        return root, (6149, 1020, 1020), True
    write_tree(root, per_split=12, size=16)
    return root, (12, 12, 12), False


@pytest.fixture()
def mini_tree(tmp_path):
    """A small tree of our own, for tests that damage it."""
    from .fake_flowers102 import write_tree

    write_tree(tmp_path, per_split=6, size=40)
    return tmp_path
