"""The cluster path for real: sbatch, array jobs, pre-emption and requeue, through
Hydra's submitit launcher, on the one-node SLURM of `scripts/local_slurm.sh`.

Marked `slurm`: skipped unless a cluster answers (`.ci/run` brings one up around the
test command). Timings: the scheduler looks for work every few seconds, and a requeued
job runs again about 15 s after it was stopped.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from .helpers.cli import HANG_GUARD_S, ROOT, SLOW, TINY, metrics, result, run_cli

# one worker submits them all: the one-node cluster runs a job or two at a time
pytestmark = [pytest.mark.slurm, pytest.mark.e2e, pytest.mark.xdist_group("slurm")]
# submitit requeues (SLURM then stops the job) before our write of the last epoch on its
# way out can finish; with a checkpoint every epoch the resume is certain to find one
EVERY_EPOCH = "trainer.checkpoint_every_epochs=1"
SLURM = [
    "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
    "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=60",
]  # fmt: skip


def test_a_two_case_sweep_runs_as_slurm_jobs_and_aggregates(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "model.activation=relu,sigmoid", *TINY, "trainer.epochs=2", *SLURM,
        "hydra.launcher.cpus_per_task=1", "trainer.threads=auto", f"hydra.sweep.dir={sweep}",
        cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [result(sweep / j)["status"] for j in ("0", "1")] == ["completed", "completed"]
    assert (sweep / "report" / "results.csv").is_file()
    logs = list((sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2, list((sweep / ".submitit").rglob("*"))
    # one torch thread each: the launcher's cpus_per_task reaches the job
    log = (sweep / "0" / "flowers_sweep.log").read_text()
    assert "1 thread\n" in log and "torch threads: 1 (the launcher's cpus_per_task=1)" in log


def test_a_failing_job_is_recorded_and_fails_the_sweep(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "trainer.batch_size=0", *TINY[2:], *SLURM, "hydra.launcher.cpus_per_task=1",
        f"hydra.sweep.dir={sweep}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 1
    failed = result(sweep / "0")
    assert failed["status"] == "failed" and "trainer.batch_size" in failed["error"]
    assert "did not complete" in proc.stderr


def job_id(sweep, timeout=HANG_GUARD_S):
    """The SLURM id of the sweep's one array task, from submitit's folder names."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # job folders are named by SLURM id (`123`, `123_0`); submitit's own files there
        # are uuids, which may start with a digit too, so a name must be all id
        found = sorted(p.name for p in (sweep / ".submitit").glob("*")
                       if p.is_dir() and re.fullmatch(r"\d+(_\d+)?", p.name))  # fmt: skip
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("no job submitted")


def job_logs(sweep) -> str:
    """What the jobs and the run said, for a failure message: no 2 epochs, why?"""
    files = [*(sweep / ".submitit").rglob("*_log.*"), *sweep.glob("*/flowers_sweep.log")]
    return "no 2 epochs\n" + "\n".join(f"--- {f}\n{f.read_text()[-1500:]}" for f in files)


def test_preemption_requeues_and_resumes_to_the_same_metrics(tmp_path, cache_dir, reference):
    """SLURM pre-empts by signalling the job (USR2 here, as submitit asks for); submitit
    requeues it, and the requeued job resumes from the checkpoint of its last epoch."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "FLOWERS_SWEEP_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    launch = subprocess.Popen(
        [sys.executable, "-m", "flowers_sweep", "-m", "seed=0", *SLOW, *SLURM, EVERY_EPOCH,
         "hydra.launcher.cpus_per_task=2", f"hydra.sweep.dir={sweep}", "aggregate=false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dir = sweep / "0"
    jid = None
    try:
        jid = job_id(sweep)
        deadline = time.monotonic() + HANG_GUARD_S
        while not ((run_dir / "metrics.csv").is_file() and len(metrics(run_dir)) >= 2):
            assert time.monotonic() < deadline and launch.poll() is None, job_logs(sweep)
            time.sleep(0.05)
        subprocess.run(["scancel", f"--signal={signal.SIGUSR2.name[3:]}", jid], check=True)
        _, err = launch.communicate(timeout=HANG_GUARD_S)
    finally:
        if launch.poll() is None:
            launch.kill()
            if jid is not None:
                subprocess.run(["scancel", jid], check=False)
    assert launch.returncode == 0, err[-3000:]
    log = (run_dir / "flowers_sweep.log").read_text()
    assert "resumed from" in log, log[-2000:]
    assert result(run_dir)["status"] == "completed"
    assert metrics(run_dir) == metrics(reference)


def test_a_search_prunes_trials_running_as_slurm_jobs(tmp_path, cache_dir):
    """Each trial runs as an array task that opens the journal study itself (the storage
    meant for a cluster's shared file system), reports each epoch, and is pruned there;
    the sweeper, on the login side, gets the pruned result back through submitit."""
    import optuna
    from optuna.trial import TrialState

    from flowers_sweep.search.study import open_storage

    from .helpers.searches import TINY_SEARCH
    from .test_optuna_search import PRUNE_AFTER_2

    sweep = tmp_path / "search"
    proc = run_cli(
        *TINY_SEARCH, "trainer.epochs=3", PRUNE_AFTER_2, "hydra.sweeper.storage=journal",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", *SLURM,
        "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={sweep}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [result(sweep / j)["status"] for j in ("0", "1")] == ["pruned", "pruned"]
    assert [result(sweep / j)["epochs_done"] for j in ("0", "1")] == [2, 2]
    study = optuna.load_study(study_name="resnet18-relu", storage=open_storage("journal", sweep))
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert len(list((sweep / ".submitit").rglob("*_log.out"))) == 2
