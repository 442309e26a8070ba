"""Sweeps that survive: failures, kills, Ctrl-C, relaunches and real launchers."""

import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import flowers_sweep as fs

from .helpers.cli import (
    HANG_GUARD_S,
    ROOT,
    SLOW,
    TINY,
    metrics,
    result,
    run_cli,
    wait_for_epochs,
)

pytestmark = pytest.mark.e2e


def start_cli(*args, cache):
    env = {**os.environ, "FLOWERS_SWEEP_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "flowers_sweep", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and
        # Python keeps it ignored; give the child the default so Ctrl-C reaches it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def interrupted_run(run_dir, cache_dir, sig, after_epochs, *extra):
    """Start the CLI, send it `sig` once `after_epochs` epochs are done; its arguments."""
    args = [*SLOW, *extra, f"hydra.run.dir={run_dir}"]
    proc = start_cli(*args, cache=cache_dir)
    wait_for_epochs(run_dir, after_epochs, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode != 0
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM and "rerun to resume" in err, err
    if sig == signal.SIGINT:  # Ctrl-C: one line saying how to resume, no traceback
        assert proc.returncode == 128 + signal.SIGINT and "Traceback" not in err, err
        (line,) = [x for x in err.splitlines() if x.startswith("flowers_sweep:")]
        assert "interrupted (Ctrl-C)" in line and "resume" in line
    return args


def test_sigterm_then_ctrl_c_mark_interrupted_and_each_resumes(tmp_path, cache_dir, reference):
    """SIGTERM is how a cluster pre-empts or requeues a job: it must stop the run at once
    (not train on until SIGKILL), say so, and leave a checkpoint to resume from: the last
    whole epoch's, written when told to stop (none was due: every 300 s by default).
    Ctrl-C does the same in the resumed run, an epoch later; the second resume completes
    it as if it had never stopped."""
    run_dir = tmp_path / "run"
    args = interrupted_run(run_dir, cache_dir, signal.SIGTERM, after_epochs=1)
    assert result(run_dir)["status"] == "interrupted"
    done = torch.load(run_dir / "checkpoint.pt", weights_only=True)["progress"]["epoch"]
    assert done >= 1
    interrupted_run(run_dir, cache_dir, signal.SIGINT, done + 1)  # a row more than it had
    assert result(run_dir)["status"] == "interrupted"
    assert "resumed from" in (run_dir / "flowers_sweep.log").read_text()
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["progress"]["epoch"] >= done + 1
    again = run_cli(*args, cache=cache_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert result(run_dir)["status"] == "completed"
    assert metrics(run_dir) == metrics(reference)


def test_failed_run_is_isolated_and_the_sweep_exits_nonzero(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "trainer.batch_size=0,16", "trainer.epochs=1", "dataset.image_size=32",
        *TINY[2:], f"hydra.sweep.dir={sweep}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode != 0
    failed, ok = result(sweep / "0"), result(sweep / "1")
    assert failed["status"] == "failed" and "batch_size" in failed["error"]
    assert "ConfigError" in (sweep / "0" / "traceback.txt").read_text()
    assert ok["status"] == "completed"
    assert "did not complete" in proc.stderr and "trainer.batch_size=0" in proc.stderr
    assert (sweep / "report" / "runs.csv").is_file()  # the report ran before the exit


def test_nan_loss_is_diverged_and_stops_at_once(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    proc = run_cli(
        *TINY, "trainer.epochs=3", "optimizer=sgd", "optimizer.lr=1e12",
        f"hydra.run.dir={run_dir}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode != 0
    res = result(run_dir)
    assert res["status"] == "diverged" and res["epochs_done"] == 0
    assert "nan" in res["error"].lower() or "inf" in res["error"].lower()


def launched_in_order(sweep):
    assert [result(sweep / j)["status"] for j in ("0", "1")] == ["completed", "completed"]
    assert [result(sweep / j)["activation"] for j in ("0", "1")] == ["relu", "sigmoid"]


def test_joblib_completes_a_two_run_sweep_sharing_the_cpus(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.activation=relu,sigmoid",
        *TINY, "aggregate=false", "trainer.threads=auto", f"hydra.sweep.dir={sweep}",
        cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    launched_in_order(sweep)
    # two parallel jobs share the CPUs, with any other run
    log = (sweep / "0" / "flowers_sweep.log").read_text()
    cpus = len(os.sched_getaffinity(0))
    why = re.search(r"torch threads: (\d+) \(trainer.threads=auto: (\d+) CPU\(s\) "
                    r"shared by (\d+) runs", log)  # fmt: skip
    assert why, log[-2000:]
    threads, seen, runs = map(int, why.groups())
    assert seen == cpus and runs >= 2 and threads == max(1, cpus // runs)
    assert f"{threads} thread{'' if threads == 1 else 's'}\n" in log


def test_a_sweep_by_submitit_completes_and_its_relaunch_trains_nothing(tmp_path, cache_dir):
    """submitit_local runs each job in a process of its own; the same sweep relaunched
    (by the basic launcher: the launcher is not a setting) finds each run done."""
    sweep = tmp_path / "sweep"
    args = ["-m", "model.activation=relu,sigmoid", *TINY, "aggregate=false",
            "trainer.threads=auto", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = run_cli(*args, "hydra/launcher=submitit_local", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    launched_in_order(sweep)
    before = {j: (sweep / j / "result.json").read_bytes() for j in ("0", "1")}
    weights = {j: (sweep / j / "model.pt").stat().st_mtime_ns for j in ("0", "1")}
    proc = run_cli(*args, cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for j in ("0", "1"):
        assert (sweep / j / "result.json").read_bytes() == before[j]
        assert (sweep / j / "model.pt").stat().st_mtime_ns == weights[j]
        assert "skipped" in (sweep / j / "flowers_sweep.log").read_text()


def error_lines(proc):
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("flowers_sweep: error")]


def test_a_relaunch_into_a_folder_still_training_writes_nothing(tmp_path, cache_dir, reference):
    """Alone it exits at once naming the folder; in a sweep that job is skipped and the
    others go on; the running job finishes as if nothing had happened."""
    sweep = tmp_path / "sweep"
    run_dir = sweep / "0"
    proc = start_cli(*SLOW, f"hydra.run.dir={run_dir}", cache=cache_dir)
    try:
        wait_for_epochs(run_dir, 1, proc)
        os.kill(proc.pid, signal.SIGSTOP)  # still holding the folder, trains no further
        hydra_files = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
        # exits without waiting for the folder (a wait would hang to the guard: the
        # holder is stopped), however busy the machine: no timing is asserted
        again = run_cli(*SLOW, "trainer.num_workers=1", f"hydra.run.dir={run_dir}",
                        cache=cache_dir)  # fmt: skip
        assert again.returncode == 2
        (line,) = error_lines(again)
        assert str(run_dir) in line and "in use" in line
        assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == hydra_files
        # job 0 is the folder in use; job 1 (less data, so quicker) trains meanwhile
        in_sweep = run_cli("-m", *SLOW, "dataset.train_size=320,48", "aggregate=false",
                           f"hydra.sweep.dir={sweep}", cache=cache_dir)  # fmt: skip
        assert in_sweep.returncode == 1
        assert result(sweep / "1")["status"] == "completed"
        assert f"{run_dir}: skipped: still training in another process" in in_sweep.stderr
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, err[-2000:]
    assert metrics(run_dir) == metrics(reference)  # every epoch once, as uninterrupted


def test_other_settings_or_damaged_files_in_a_run_folder_stop_clearly(tmp_path, cache_dir):
    """A finished run's folder: a relaunch with other settings is refused, naming them,
    and changes nothing; a damaged checkpoint or run record (a run killed before its end)
    stops with one line naming the file; resume=false starts the folder over."""
    run_dir = tmp_path / "run"
    args = [*TINY, "trainer.keep_checkpoint=true", f"hydra.run.dir={run_dir}"]
    first = run_cli(*args, cache=cache_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    saved = {p: (run_dir / p).read_bytes() for p in ("result.json", ".hydra/config.yaml")}
    proc = run_cli(*args, "trainer.epochs=2", cache=cache_dir)
    assert proc.returncode != 0
    assert "trainer.epochs=1 (now 2)" in proc.stderr and "resume=false" in proc.stderr
    for name, data in saved.items():
        assert (run_dir / name).read_bytes() == data, name

    (run_dir / "result.json").unlink()  # as if killed before its end
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    for damaged in ("checkpoint.pt", "run_config.json"):
        if damaged == "run_config.json":
            (run_dir / damaged).write_text('{"config": {"seed"')
        proc = run_cli(*args, cache=cache_dir)
        assert proc.returncode == 2
        (line,) = error_lines(proc)
        assert str(run_dir / damaged) in line and "resume=false" in line
        res = result(run_dir)
        assert res["status"] == "failed" and damaged in res["error"]
    fresh = run_cli(*args, "trainer.epochs=2", "resume=false", cache=cache_dir)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert result(run_dir)["status"] == "completed"
    assert result(run_dir)["epochs"] == 2 and len(metrics(run_dir)) == 2


def test_a_relaunch_without_a_checkpoint_says_it_starts_over(tmp_path, cache_dir):
    """A run SIGKILLed before its first checkpoint (300 s by default) left epochs in
    metrics.csv: the relaunch says it starts over and drops them, not silently."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text(
        "epoch,train_loss,train_acc,val_loss,val_acc,lr,epoch_s\n1,9,0,9,0,0.001,1\n"
        "2,9,0,9,0,0.001,1\n"
    )
    # in this process (api.train takes the CLI's steps): what is tested is the run's start
    assert fs.train(fs.compose(TINY), run_dir)["status"] == "completed"
    log = (run_dir / "flowers_sweep.log").read_text()
    assert "training starts over from epoch 1 (dropping the 2 epoch(s)" in log
    assert [r["epoch"] for r in metrics(run_dir)] == ["1"]
