"""Fixtures and hooks only; what tests import lives in tests/helpers/."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers.cli import SHARED_FIXTURES, SHARED_RUN, SLOW, TINY, cli_run_once, run_cli
from .helpers.shared import made_once
from .helpers.slurm import slurm_cluster
from .helpers.state import ProcessState


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


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one worker per CPU this process may use (SLURM's
    or taskset's share, not the node's), at most 8: each worker holds torch in memory
    and starts CLI runs of its own. Tests train with one thread (helpers/cli.TINY)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, 8))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say plainly whether the cluster tests ran: a skip is easy to miss in a dot line."""
    ran = [r for r in terminalreporter.stats.get("passed", []) if "slurm" in r.keywords]
    failed = [r for r in terminalreporter.stats.get("failed", []) if "slurm" in r.keywords]
    if ran or failed:
        where = os.environ.get("SLURM_CONF", "the default SLURM config")
        terminalreporter.write_line(
            f"slurm tests: {len(ran)} passed, {len(failed)} failed, against {where}"
        )


@pytest.fixture(autouse=True)
def _process_state_left_as_found(tmp_path_factory) -> Iterator[None]:
    """A test that changes process-wide state (os.environ, the working directory, torch's
    global settings...) must undo it, as monkeypatch does: what it left is put back, and
    the test fails naming it. The global random generators are put back silently: a test
    may seed them; so are the modules imported from the session's temporary folders (a
    user's `my_data.py` that a run imported in this process): the next test's own
    module of that name is imported afresh."""
    before = ProcessState.capture()
    yield
    temporary = str(tmp_path_factory.getbasetemp().parent)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(temporary):
            del sys.modules[name]
    left = before.changes()
    before.restore()
    if left:
        pytest.fail(
            "the test left process-wide state changed; undo it (monkeypatch, or a fixture "
            "that restores):\n  " + "\n  ".join(left),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def reference(tmp_path_factory, cache_dir) -> Path:
    """An uninterrupted SLOW run that interrupted, resumed or requeued ones must equal."""
    return cli_run_once(tmp_path_factory, "reference", SLOW, cache_dir)


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, cache_dir) -> Path:
    """helpers/cli.SHARED_RUN's run folder, through the real command line: its schedule,
    optimizer (test_schedules) and precision (test_precision) are read from it."""
    return cli_run_once(tmp_path_factory, "shared_run", SHARED_RUN, cache_dir)


@pytest.fixture(scope="session")
def report_cases_sweep(tmp_path_factory, cache_dir) -> Path:
    """The report's four cases, two seeds each, two epochs, tiny: one real sweep that the
    CLI tests and the aggregator tests both read (it ends by writing its report)."""

    def make(folder: Path) -> None:
        proc = run_cli(
            "-m", "case=relu,sigmoid,leaky_relu,baseline_cnn", "seed=0,1", *TINY,
            "trainer.epochs=2", f"hydra.sweep.dir={folder / 'sweep'}", cache=cache_dir,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]

    return made_once(tmp_path_factory, "report_cases", make) / "sweep"


@pytest.fixture(scope="session")
def raced_search(tmp_path_factory, cache_dir) -> Path:
    """FOLDER: two launches of one Optuna search started together into FOLDER/lr?1e-3
    (helpers/searches.race_two_launches). test_optuna_search.py checks the race,
    test_search.py the search's report; confirmed_search continues it."""
    from .helpers.searches import race_two_launches

    return made_once(tmp_path_factory, "raced_search", functools.partial(
        race_two_launches, cache=cache_dir))  # fmt: skip


@pytest.fixture(scope="session")
def confirmed_search(tmp_path_factory, cache_dir, raced_search) -> Path:
    """FOLDER: raced_search's search continued with confirmation, killed while confirming
    and launched again, in FOLDER/search (helpers/searches.confirm_killed_and_again).
    test_search.py checks the continuation, test_confirm.py the confirmation."""
    from .helpers.searches import RACED, confirm_killed_and_again

    return made_once(tmp_path_factory, "confirmed_search", functools.partial(
        confirm_killed_and_again, cache=cache_dir, raced=raced_search / RACED))  # fmt: skip


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Iterator[Path]:
    """One synthetic-data cache for the whole session, never the user's own."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:  # undone when the session ends
        patch.setenv("FLOWERS_SWEEP_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def flowers_tree(tmp_path_factory):
    """A Flowers102 tree: the official label/split files when ../shared has them (real
    split sizes over 8,189 generated JPEGs), else a miniature of our own."""
    from .helpers.fake_flowers102 import write_tree

    if (SHARED_FIXTURES / "setid.mat").is_file():
        root = made_once(tmp_path_factory, "flowers_official", functools.partial(
            write_tree, official_mats=SHARED_FIXTURES, size=16))  # fmt: skip
        return root, (6149, 1020, 1020), True
    root = made_once(tmp_path_factory, "flowers", functools.partial(
        write_tree, per_split=12, size=16))  # fmt: skip
    return root, (12, 12, 12), False


@pytest.fixture()
def mini_tree(tmp_path):
    """A small tree of our own, for tests that damage it."""
    from .helpers.fake_flowers102 import write_tree

    write_tree(tmp_path, per_split=6, size=40)
    return tmp_path
