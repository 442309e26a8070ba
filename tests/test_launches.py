"""Launches at the same moment: a job folder only ever holds its own run."""

import json
import subprocess

import pytest
import yaml

from flowers_sweep.job.launch import SweepBusyError, claim_sweep, release_sweep, unique_dir

from .helpers.cli import HANG_GUARD_S, TINY, result, run_cli, start_cli
from .helpers.holders import CLAIM_SWEEP, held_elsewhere

pytestmark = pytest.mark.e2e
# The two launches: same model, different learning rates and seeds; no report
# (what is checked is each job folder's run, and a report takes longer than its jobs).
# One job each: both race for job folder 0, as the two jobs each raced for 0 and 1.
LAUNCH_A = ["-m", "model=baseline_cnn", *TINY, "seed=0", "aggregate=false"]
LAUNCH_B = ["-m", "model=baseline_cnn", *TINY, "optimizer.lr=0.01", "seed=5", "aggregate=false"]


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    return proc.returncode, err


def job_settings(job) -> tuple:
    """What each of the folder's records says the run was: .hydra/ and result.json."""
    cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    res = result(job)
    recorded = json.loads((job / "run_config.json").read_text())["config"]
    return (
        (cfg["seed"], cfg["optimizer"]["lr"]),
        (res["seed"], recorded["optimizer.lr"]),
        next(o for o in overrides if o.startswith("seed=")) == f"seed={res['seed']}",
    )


def check_no_mixing(jobs) -> set[tuple[int, float]]:
    trained = set()
    for job in jobs:
        if not (job / "result.json").is_file():
            continue
        from_hydra, from_run, overrides_agree = job_settings(job)
        assert from_hydra == from_run and overrides_agree, job
        if result(job)["status"] == "completed":
            trained.add(from_run)
    return trained


def test_two_launches_into_one_sweep_folder_never_mix_runs(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    procs = [
        start_cli(*a, f"hydra.sweep.dir={sweep}", cache=cache_dir) for a in (LAUNCH_A, LAUNCH_B)
    ]
    (rc_a, err_a), (rc_b, err_b) = [finish(p) for p in procs]
    trained = check_no_mixing(p for p in sweep.iterdir() if p.name.isdigit())
    wanted = {"A": {(0, 0.001)}, "B": {(5, 0.01)}}
    for name, rc, err in (("A", rc_a, err_a), ("B", rc_b, err_b)):
        if rc == 0:  # a launch that says it is done trained all of its runs
            assert wanted[name] <= trained, (name, err[-2000:])
        else:  # one that missed a run says so, in one line naming the folder
            assert str(sweep) in err and "Traceback" not in err, err[-2000:]
    assert rc_a == 0 or rc_b == 0, (err_a[-1500:], err_b[-1500:])


def test_two_launches_in_the_same_second_get_their_own_sweep_folders(tmp_path, cache_dir):
    procs = [start_cli(*a, cache=cache_dir, cwd=tmp_path) for a in (LAUNCH_A, LAUNCH_B)]
    outcomes = [finish(p) for p in procs]
    assert [rc for rc, _ in outcomes] == [0, 0], [err[-1500:] for _, err in outcomes]
    sweeps = sorted((tmp_path / "outputs" / "multirun").iterdir())
    assert len(sweeps) == 2
    trained = [check_no_mixing(p for p in s.iterdir() if p.name.isdigit()) for s in sweeps]
    assert sorted(map(sorted, trained)) == [[(0, 0.001)], [(5, 0.01)]]


def test_a_held_sweep_folder_is_refused_before_anything_is_written(tmp_path):
    sweep = tmp_path / "sweep"
    with held_elsewhere(CLAIM_SWEEP, sweep) as other:
        before = sorted(p.name for p in sweep.iterdir())
        launch = [o.replace("seed=0", "seed=0,1") for o in LAUNCH_A]  # a sweep, named
        proc = run_cli(*launch, f"hydra.sweep.dir={sweep}", cache=None)
        assert proc.returncode == 2
        assert sorted(p.name for p in sweep.iterdir()) == before  # no job folder, no yaml
        (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
        assert f"{sweep} is in use by another launch (pid {other.pid}" in line
        assert "seed=0,1" in line
    claim_sweep(sweep, [])  # free again once that launch has ended
    release_sweep(sweep)


def test_claim_sweep_refuses_a_second_claim_in_one_process_too(tmp_path):
    claim_sweep(tmp_path, [])
    try:
        with pytest.raises(SweepBusyError, match="in use by another launch"):
            claim_sweep(tmp_path, ["seed=1"])
    finally:
        release_sweep(tmp_path)


def test_unique_dir_never_hands_out_a_folder_twice(tmp_path):
    base = str(tmp_path / "out" / "2026-01-01_00-00-00")
    made = [unique_dir(base) for _ in range(3)]
    assert made == [base, f"{base}-2", f"{base}-3"]


def test_a_failure_shared_by_every_job_is_reported_once_with_its_count(tmp_path, cache_dir):
    missing = tmp_path / "nowhere"
    proc = run_cli(  # a relative sweep folder, as users type it
        "-m", "dataset=flowers102", f"dataset.root={missing}", "model=baseline_cnn",
        "seed=0,1,2", "hydra.sweep.dir=sweep", cache=cache_dir, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count(str(missing / "flowers-102")) == 1, proc.stderr
    assert "3 runs of the sweep did not complete" in proc.stderr
    assert "3 runs (sweep/: 0, 1, 2): failed: DatasetNotFoundError" in proc.stderr
    assert "| case |" not in proc.stdout  # no empty table
    assert "no run completed" in proc.stdout
    markdown = (tmp_path / "sweep" / "report" / "results.md").read_text()
    assert "| case |" not in markdown and "No run has completed" in markdown
