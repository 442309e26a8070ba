"""Runs on one machine share its cores (trainer/cpu_share.py, job/hydra_job.thread_policy):
each holds a lock while it trains, and `trainer.threads=auto` divides the CPUs by the
runs holding one. The measured effect is benchmarks/shared_cores.py's."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from omegaconf import OmegaConf

from flowers_sweep.job.hydra_job import thread_policy
from flowers_sweep.trainer import cpu_share
from flowers_sweep.trainer.cpu_share import live_runs, presence, shared_threads


def four_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def test_the_cpus_are_divided_among_the_runs_holding_a_lock(tmp_path, monkeypatch):
    four_cpus(monkeypatch)
    assert live_runs(tmp_path) == 0
    with presence(tmp_path):
        assert shared_threads(folder=tmp_path) == (
            4, "trainer.threads=auto: 4 CPU(s), no other run of this package"
        )
        with presence(tmp_path), presence(tmp_path):  # a notebook's, or other processes'
            assert live_runs(tmp_path) == 3
            assert shared_threads(folder=tmp_path)[0] == 1  # 4 // 3
        assert shared_threads(at_least=2, folder=tmp_path)[0] == 2  # a joblib launch's 2
    assert list(tmp_path.iterdir()) == []  # each run removes its own lock
    with presence(tmp_path), presence(tmp_path), presence(tmp_path), presence(tmp_path):
        with presence(tmp_path):
            assert shared_threads(folder=tmp_path)[0] == 1  # never 0


def test_a_run_in_another_process_counts_and_a_dead_ones_lock_does_not(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from flowers_sweep.trainer.cpu_share import presence
        with presence({str(tmp_path)!r}):
            print("in", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline() == "in\n"
    assert live_runs(tmp_path) == 1
    proc.kill()  # no clean-up: its lock file stays, released by the kernel
    proc.wait()
    assert len(list(tmp_path.glob("*.lock"))) == 1
    assert live_runs(tmp_path) == 0
    assert list(tmp_path.glob("*.lock")) == []  # a dead process's file is removed


def test_runs_count_only_runs_on_the_same_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    mine = cpu_share.share_dir()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3}, raising=False)
    assert cpu_share.share_dir() != mine  # a SLURM job's CPUs are not another's
    assert cpu_share.share_dir().parent == mine.parent


def test_the_thread_policy_obeys_an_explicit_count_and_a_slurm_allocation(monkeypatch):
    four_cpus(monkeypatch)
    assert thread_policy(3, {})() == (3, "trainer.threads=3")
    slurm = OmegaConf.create({"_target_": "hydra_plugins.SlurmLauncher", "cpus_per_task": 2})
    assert thread_policy("auto", slurm)() == (2, "the launcher's cpus_per_task=2")
    joblib = OmegaConf.create({"_target_": "hydra_plugins.JoblibLauncher", "n_jobs": 2})
    assert thread_policy("auto", joblib)()[0] <= 2  # at least its 2 jobs share the 4
    assert thread_policy("auto", {})()[0] >= 1
