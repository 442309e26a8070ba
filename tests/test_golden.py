"""Outputs pinned to what the project wrote before its refactors.

tests/data/sweep_v1/ is a real tiny sweep (three cases, two seeds, two epochs, plus one
run stopped by SIGTERM), written by the code of 2026-11-30 with its weights and logs
left out; tests/data/sweep_v1_report/ is the report that code made of it. A refactor
must read the old folders and write the same report, byte for byte.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flowers_sweep.legacy import upgrade_settings

from .helpers.cli import TINY, result, run_cli

DATA = Path(__file__).parent / "data"
SWEEP_V1 = DATA / "sweep_v1"
REPORT_V1 = DATA / "sweep_v1_report"


@pytest.fixture
def old_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    shutil.copytree(SWEEP_V1, sweep)
    return sweep


def test_report_of_an_old_sweep_is_unchanged(old_sweep: Path) -> None:
    proc = run_cli(str(old_sweep), module="flowers_sweep.aggregate", cache=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = old_sweep / "report"
    for name in ("results.md", "results.csv"):
        assert (report / name).read_text() == (REPORT_V1 / name).read_text(), name
    runs = (report / "runs.csv").read_text().replace(str(old_sweep), "SWEEP")
    assert runs == (REPORT_V1 / "runs.csv").read_text()
    for stream, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert text.replace(str(old_sweep), "SWEEP") == (REPORT_V1 / f"{stream}.txt").read_text()


def test_a_new_run_writes_the_old_record_shape(tmp_path: Path, cache_dir: Path) -> None:
    """Same files, same result.json keys in the same order, same metrics.csv header."""
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY, "case=relu", f"hydra.run.dir={run_dir}", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    old = SWEEP_V1 / "0"
    assert list(result(run_dir)) == list(json.loads((old / "result.json").read_text()))
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert header == (old / "metrics.csv").read_text().splitlines()[0]
    record = json.loads((run_dir / "run_config.json").read_text())
    old_record = json.loads((old / "run_config.json").read_text())
    assert sorted(record) == sorted(old_record)
    # the same settings, the old names in today's form (model.arch -> model._target_, ...)
    assert sorted(record["config"]) == sorted(upgrade_settings(old_record["config"]))
    assert sorted(record["hydra_files"]) == sorted(old_record["hydra_files"])
