"""Runs on one machine share its cores (trainer/cpu_share.py, job/hydra_job.thread_policy):
each holds a lock while it trains, and `trainer.threads=auto` divides the CPUs by the
runs holding one. The measured effect is benchmarks/shared_cores.py's."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from omegaconf import OmegaConf

from flowers_sweep.job.hydra_job import thread_policy
from flowers_sweep.trainer import cpu_share
from flowers_sweep.trainer.cpu_share import Share, live_runs, presence


@contextlib.contextmanager
def torch_threads(n: int):
    kept = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(kept)


def four_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def no_others(monkeypatch):
    """Other processes keep no core busy (whatever runs beside this test)."""
    monkeypatch.setattr(Share, "others_busy", lambda self: 0.0)


def test_the_cpus_are_divided_among_the_runs_holding_a_lock(tmp_path, monkeypatch):
    four_cpus(monkeypatch)
    no_others(monkeypatch)
    assert live_runs(tmp_path) == 0
    with presence(tmp_path) as share:
        assert share.threads() == (4, "trainer.threads=auto: 4 CPU(s), no other run")
        with presence(tmp_path), presence(tmp_path):  # a notebook's, or other processes'
            assert live_runs(tmp_path) == 3
            three = "trainer.threads=auto: 4 CPU(s) shared by 3 runs of this package"
            assert share.threads() == (1, three)  # 4 // 3
        assert share.threads(at_least=2)[0] == 2  # a joblib launch's 2 jobs
        assert share.threads()[0] == 4  # the others ended: the cores come back
    assert list(tmp_path.iterdir()) == []  # each run removes its own lock
    with contextlib.ExitStack() as five:
        shares = [five.enter_context(presence(tmp_path)) for _ in range(5)]
        assert shares[0].threads()[0] == 1  # never 0


def test_cores_that_other_programs_keep_busy_are_left_to_them(tmp_path, monkeypatch):
    four_cpus(monkeypatch)
    share = Share(tmp_path)
    for busy, threads in ((0.3, 4), (1.0, 3), (2.6, 1), (4.0, 1), (7.5, 1)):
        monkeypatch.setattr(Share, "others_busy", lambda self, busy=busy: busy)
        assert share.threads()[0] == threads, busy
    assert share.threads()[1].endswith(", 7.5 kept busy by other programs")
    with presence(tmp_path) as mine, presence(tmp_path):  # the other run keeps its 2 busy
        monkeypatch.setattr(Share, "others_busy", lambda self: 2.0)
        assert mine.threads() == (
            2, "trainer.threads=auto: 4 CPU(s) shared by 2 runs of this package"
        )  # fmt: skip
        monkeypatch.setattr(Share, "others_busy", lambda self: 3.6)  # and a program 1.6
        assert mine.threads()[0] == 1


def test_a_run_that_cannot_count_the_others_counts_itself(tmp_path, monkeypatch, caplog):
    """A temp folder it cannot write (read-only, or the name taken by another user)."""
    four_cpus(monkeypatch)
    no_others(monkeypatch)
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    with presence(taken / "cpu_share") as share:
        assert share.threads() == (4, "trainer.threads=auto: 4 CPU(s), no other run")
    assert "this run counts only itself" in caplog.text


def test_the_load_of_others_is_measured_without_this_process(tmp_path):
    """A process busy itself sees no more load from others than before; a busy child of
    it is another process's load. (Linux: /proc/stat.)"""
    share = Share(tmp_path)
    if share.others_busy() is None:
        pytest.skip("no /proc/stat: only the runs are counted here")
    with torch_threads(1):
        end = time.monotonic() + 0.5
        x = torch.randn(256, 256)
        while time.monotonic() < end:
            x = (x @ x).clamp_(-1, 1)
    alone = share.others_busy()
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        beside = share.others_busy()
    finally:
        child.kill()
        child.wait()
    # what else runs on this machine adds to both; the child adds about one core
    cpus = len(os.sched_getaffinity(0))
    assert beside >= alone + 0.5 or beside >= cpus - 0.5, (alone, beside)


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


def test_the_thread_policy_obeys_an_explicit_count_and_a_slurm_allocation(tmp_path, monkeypatch):
    four_cpus(monkeypatch)
    no_others(monkeypatch)
    share = Share(tmp_path)
    assert thread_policy(3, {}, share)() == (3, "trainer.threads=3")
    slurm = OmegaConf.create({"_target_": "hydra_plugins.SlurmLauncher", "cpus_per_task": 2})
    assert thread_policy("auto", slurm, share)() == (2, "the launcher's cpus_per_task=2")
    joblib = OmegaConf.create({"_target_": "hydra_plugins.JoblibLauncher", "n_jobs": 2})
    assert thread_policy("auto", joblib, share)()[0] == 2  # its 2 jobs share the 4
    assert thread_policy("auto", {}, share)()[0] == 4


def test_without_cpu_affinity_or_proc_stat_only_the_runs_are_counted(tmp_path, monkeypatch):
    """macOS and Windows have neither os.sched_getaffinity nor /proc/stat."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert cpu_share.share_dir().name == "all"
    with presence(tmp_path) as share, presence(tmp_path):
        assert share.others_busy() is None
        assert share.threads() == (
            2, "trainer.threads=auto: 4 CPU(s) shared by 2 runs of this package"
        )  # fmt: skip
    assert cpu_share._alive(os.getpid())
