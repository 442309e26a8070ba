from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session, never the user's own."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["FLOWERS_SWEEP_CACHE"] = str(path)
    return path


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_cli(*args: str, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real entry point in a fresh interpreter, as a user would run it."""
    env = {**os.environ, "FLOWERS_SWEEP_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "flowers_sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
