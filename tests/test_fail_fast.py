"""`fail_fast=N`: a launch stops starting jobs once N of them failed with the same reason,
says so once at its end, and leaves the sweep folder for the same command to resume."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from flowers_sweep.callbacks import SweepEnd
from flowers_sweep.errors import ConfigError
from flowers_sweep.job.fail_fast import (
    RUN_FOLDER,
    fail_fast_limit,
    fail_fast_line,
    fail_fast_tripped,
    not_started_jobs,
)
from flowers_sweep.job.hydra_job import JobContext, held_back_by_fail_fast
from flowers_sweep.job.launch import claim_sweep, note_job, release_sweep
from flowers_sweep.record.runfolder import claim
from flowers_sweep.record.runrecord import (
    CONFIG_FILE,
    HYDRA_DIR,
    HYDRA_FILE,
    OVERRIDES_FILE,
    RESULT_FILE,
)

from .helpers.cli import TINY, run_app_in_process, run_cli
from .helpers.datasets import make_image_folder
from .helpers.runfolders import write_run

MISSING = "image folder /data/flowers does not exist: point dataset.root at a folder"


def fail(sweep: Path, num: int, why: str = MISSING, status: str = "failed") -> None:
    """Note job `num` of the launch as app.conclude does for a failed job."""
    note_job(sweep, num, sweep / str(num), status, why)


def job_in(sweep: Path, num: int) -> JobContext:
    """A job of a sweep as Hydra hands it over: its folder made, .hydra/ and log written."""
    run_dir = sweep / str(num)
    (run_dir / HYDRA_DIR).mkdir(parents=True)
    for name in (CONFIG_FILE, HYDRA_FILE, OVERRIDES_FILE):
        (run_dir / HYDRA_DIR / name).write_text(f"{name} as Hydra wrote it\n")
    (run_dir / "flowers_sweep.log").write_text("")
    hydra = {
        "mode": "MULTIRUN", "sweep": {"dir": str(sweep)}, "runtime": {"output_dir": str(run_dir)},
        "output_subdir": HYDRA_DIR, "job": {"num": num, "name": "flowers_sweep"},
    }  # fmt: skip
    return JobContext(OmegaConf.create({"hydra": hydra}))


@pytest.mark.parametrize("value", [None, 1, 5])
def test_fail_fast_takes_null_or_a_positive_count(value):
    assert fail_fast_limit(value) == value


@pytest.mark.parametrize("value", [0, -1, True, "2", 1.5])
def test_any_other_fail_fast_is_one_line_naming_it(value):
    with pytest.raises(ConfigError, match=r"^fail_fast=.* is invalid: must be null or an integ"):
        fail_fast_limit(value)


def test_only_n_failures_with_the_same_reason_stop_the_launch(tmp_path):
    sweep = tmp_path / "sweep"
    fail(sweep, 0, f"{sweep / '0'}/data.json: unreadable")  # each job names its own folder
    note_job(sweep, 1, sweep / "1", "skipped", "in use by another process")  # not a failure
    fail(sweep, 2, "CUDA out of memory")
    assert fail_fast_tripped(sweep, 2) is None
    fail(sweep, 3, f"{sweep / '3'}/data.json: unreadable", status="diverged")
    assert fail_fast_tripped(sweep, 2) == (2, f"{RUN_FOLDER}/data.json: unreadable")
    assert fail_fast_tripped(sweep, 3) is None
    assert fail_fast_tripped(sweep, None) is None  # off: every job runs


def test_a_relaunch_counts_only_its_own_failures(tmp_path):
    sweep = tmp_path / "sweep"
    fail(sweep, 0)
    fail(sweep, 1)
    held_back_by_fail_fast(job_in(sweep, 2), 2)
    assert fail_fast_tripped(sweep, 2) and not_started_jobs(sweep)
    claim_sweep(sweep, ["seed=0,1,2"])  # the same command again, after fixing the cause
    try:
        assert fail_fast_tripped(sweep, 1) is None
        assert not_started_jobs(sweep) == [] and fail_fast_line(sweep) is None
    finally:
        release_sweep(sweep)


def test_a_held_back_job_leaves_its_folder_as_if_never_launched(tmp_path):
    sweep = tmp_path / "sweep"
    job = job_in(sweep, 2)
    fail(sweep, 0)
    assert not held_back_by_fail_fast(job, 2)  # one failure: it starts
    assert not held_back_by_fail_fast(job, None)
    assert job.run_dir.is_dir()
    fail(sweep, 1)
    assert held_back_by_fail_fast(job, 2)
    assert not job.run_dir.exists()
    assert [n["run_dir"] for n in not_started_jobs(sweep)] == [str(job.run_dir)]


def test_a_held_back_job_keeps_an_earlier_launchs_run(tmp_path):
    """A folder with a run in it (interrupted last time, say) keeps it, and gets back the
    .hydra/ files that run started with rather than the ones Hydra just rewrote."""
    sweep = tmp_path / "sweep"
    earlier = write_run(sweep / "3", status="interrupted")
    claim(earlier, {"seed": 3})  # records the run's config and its .hydra/ files
    started_with = (earlier / HYDRA_DIR / CONFIG_FILE).read_text()
    (earlier / HYDRA_DIR / CONFIG_FILE).write_text("rewritten by this launch\n")
    stray = job_in(sweep, 4)
    (stray.run_dir / "notes.txt").write_text("the user's\n")  # not Hydra's: kept
    fail(sweep, 0)
    hydra = OmegaConf.to_container(stray.root, resolve=True)
    hydra["hydra"]["runtime"]["output_dir"], hydra["hydra"]["job"]["num"] = str(earlier), 3
    assert held_back_by_fail_fast(JobContext(OmegaConf.create(hydra)), 1)
    assert held_back_by_fail_fast(stray, 1)
    assert (earlier / RESULT_FILE).is_file()
    assert (earlier / HYDRA_DIR / CONFIG_FILE).read_text() == started_with
    assert (stray.run_dir / "notes.txt").is_file()
    assert (stray.run_dir / HYDRA_DIR / CONFIG_FILE).is_file()  # kept whole


def test_the_sweeps_end_says_it_once_and_fails(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for num in (0, 1):
        write_run(sweep / str(num), seed=num, status="failed")
        fail(sweep, num)
    for num in (2, 3, 4):
        held_back_by_fail_fast(job_in(sweep, num), 2)
    with pytest.raises(SystemExit) as ended:
        SweepEnd(aggregate=False)._report(sweep)
    assert ended.value.code == 1
    err = capsys.readouterr().err
    said = f"flowers_sweep: error: fail_fast=2: 2 jobs failed with the same reason ({MISSING})"
    assert err.count("fail_fast=") == 1 and said in err, err
    assert "; 3 jobs not started; " in err and f"hydra.sweep.dir={sweep}" in err


@pytest.mark.e2e
def test_a_sweep_that_fails_the_same_way_stops_and_resumes(
    tmp_path, cache_dir, capsys, monkeypatch
):
    """The issue's acceptance: a dataset.root that is not there yet; then the same
    command without fail_fast, once the folder holds the images, runs all the jobs
    (the issue's 10 jobs; 5 here, as 2 that fail and 3 held back take the same paths).
    The stopped launch is the real command line (its exit status and line); the resume
    is app.main in this process, as the CLI calls it."""
    root, sweep = tmp_path / "flowers", tmp_path / "sweep"
    launch = [
        "-m", "dataset=image_folder", f"dataset.root={root}", "model=baseline_cnn",
        *TINY[:2], "dataset.image_size=32", TINY[-1], "seed=0,1,2,3,4",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    proc = run_cli(*launch, "fail_fast=2", cache=cache_dir)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("fail_fast=2") == 1, proc.stderr
    assert "2 jobs failed with the same reason (image folder" in proc.stderr
    assert "3 jobs not started" in proc.stderr and "Traceback" not in proc.stderr
    assert len(list(sweep.glob("*/" + RESULT_FILE))) == 2  # at most 2 jobs ran
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    assert "epoch 1/1" not in proc.stdout  # nothing trained
    assert "report is incomplete" not in proc.stderr  # the report took the sweep as it is

    make_image_folder(root, per_class=10, odd=False)
    capsys.readouterr()
    assert run_app_in_process(launch, monkeypatch) == 0
    out, err = capsys.readouterr()
    done = [p.parent.name for p in sweep.glob("*/" + RESULT_FILE)]
    assert sorted(done, key=int) == [str(n) for n in range(5)]
    assert out.count("epoch 1/1") == 5, err  # the failed two again, the three new
