"""Outputs pinned to what the project wrote before its refactors.

tests/data/sweep_v1/ is a real tiny sweep (three cases, two seeds, two epochs, plus one
run stopped by SIGTERM), written by the code of 2026-11-30 with its weights and logs
left out; tests/data/sweep_v1_report/ is the report that code made of it. A refactor
must read the old folders and write the same report, byte for byte. One change since,
on purpose: results.md (and the console, stdout.txt) end with the "Which settings
mattered" section that issue 40 added; everything before it is the old text.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from flowers_sweep.record.legacy import upgrade_settings

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


BEFORE_ISSUE_25 = DATA / "metrics_before_issue25.json"
ONE_IMAGE = 1 / 16 + 1e-9  # the pinned cases' smallest split has 16 images
KERNEL_ORDER = 5e-3  # relative, in a loss: see the pinned test's docstring
# The pins were written on a CPU with AVX2 and no AVX-512. PyTorch, oneDNN and MKL pick
# their kernels by the CPU's instruction set, and another kernel sums in another order:
# a few Adam steps grow that to 0.5% of a loss (Adam moves a weight by up to lr whatever
# the size of its gradient). These variables (documented by PyTorch, oneDNN and MKL) make
# any x86-64 CPU with AVX2 run the pins' kernels, so the same float32 operations happen.
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def has_avx2() -> bool:
    import torch

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@pytest.mark.skipif(
    not has_avx2(), reason="the pinned numbers are x86-64 AVX2 kernels'; this CPU has none"
)
@pytest.mark.parametrize("case", ["synthetic", "flowers102"])
def test_the_same_seed_gives_the_numbers_recorded_before_datasets_became_targets(
    case: str, tmp_path: Path
) -> None:
    """Synthetic and Flowers102 (a generated tree: squashed photos, the report's warp)
    train to the metrics main recorded before the dataset interface and the new
    augmentation keys (tests/data/metrics_before_issue25.json, written with the same
    arguments, one thread, deterministic kernels, float32 (`precision=auto` trains in
    bf16 on a CPU with native bf16), on AVX2 kernels (AVX2_KERNELS).

    Tolerance: 0.5% relative in a loss, the most that summing in another order has
    moved one here (a float32 rounding of about 1e-7, grown by a few Adam steps, which
    move a weight by up to lr whatever the size of its gradient). The variables pin the
    main kernels, not every one: another CPU model, or another release of oneDNN, MKL or
    NumPy, may still sum some values in another order (an Intel Xeon with AVX-512 FP16
    moved the synthetic case's first loss by 2.8e-4 relative). A changed draw, split,
    cache or normalisation moves at least one loss far more: one training image fewer,
    another mean, no augmentation or another data seed moved the synthetic case's most
    by 1.9% to 55%, four times the tolerance or more.
    """
    from .helpers.fake_flowers102 import write_tree

    pinned = json.loads(BEFORE_ISSUE_25.read_text())[case]
    args = list(pinned["args"])
    if case == "flowers102":
        write_tree(tmp_path / "f102", per_split=16, size=24, upscale_to=(67, 50), seed=5)
        args.append(f"dataset.root={tmp_path / 'f102'}")
    run_dir = tmp_path / "run"
    proc = run_cli(
        *args, f"hydra.run.dir={run_dir}", "trainer.threads=1", "trainer.deterministic=true",
        "trainer.precision=32", cache=tmp_path / "cache", cwd=tmp_path, env=AVX2_KERNELS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [{k: float(v) for k, v in r.items() if k != "epoch_s"} for r in csv.DictReader(f)]
    assert len(rows) == len(pinned["metrics"])
    for got, want in zip(rows, pinned["metrics"], strict=True):
        for key, value in want.items():
            # an accuracy may differ by one image where rounding tips a near tie
            tol = {"abs": ONE_IMAGE} if key.endswith("acc") else {"rel": KERNEL_ORDER, "abs": 1e-6}
            assert got[key] == pytest.approx(value, **tol), (got["epoch"], key)
    final = result(run_dir)
    assert final["test_acc"] == pytest.approx(pinned["test_acc"], abs=ONE_IMAGE)
    assert final["test_loss"] == pytest.approx(pinned["test_loss"], rel=KERNEL_ORDER)
