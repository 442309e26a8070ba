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


def pytest_collection_modifyitems(config, items):
    """`gpu` tests are collected everywhere and skipped, with the reason, without CUDA."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (bash benchmarks/gpu_check.sh)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session, never the user's own."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["FLOWERS_SWEEP_CACHE"] = str(path)
    return path


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_cli(
    *args: str, cache: Path | None, timeout: float = 300, module: str = "flowers_sweep"
) -> subprocess.CompletedProcess:
    """The real entry point (`python -m module`) in a fresh interpreter, as a user runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cache is not None:
        env["FLOWERS_SWEEP_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def flowers_tree(tmp_path_factory):
    """A Flowers102 tree: the official label/split files when ../shared has them (real
    split sizes over 8,189 generated JPEGs), else a miniature of our own."""
    from flowers_sweep.data.fake_flowers102 import write_tree

    root = tmp_path_factory.mktemp("flowers")
    if (SHARED_FIXTURES / "setid.mat").is_file():
        write_tree(root, official_mats=SHARED_FIXTURES, size=16)
        return root, (6149, 1020, 1020), True
    write_tree(root, per_split=12, size=16)
    return root, (12, 12, 12), False


@pytest.fixture()
def mini_tree(tmp_path):
    """A small tree of our own, for tests that damage it."""
    from flowers_sweep.data.fake_flowers102 import write_tree

    write_tree(tmp_path, per_split=6, size=40)
    return tmp_path
