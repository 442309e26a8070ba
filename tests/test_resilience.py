"""Sweeps that survive: failures, kills, Ctrl-C, relaunches and real launchers."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

import flowers_sweep as fs
from flowers_sweep.api import RunFailedError
from flowers_sweep.job.outcome import RULES
from flowers_sweep.record.runfolder import claim
from flowers_sweep.record.runrecord import LAUNCH_DIR, LOCK_FILE, RESULT_FILE

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
from .helpers.holders import HOLD_RUN_FOLDER, end_holder, start_holder
from .helpers.runfolders import write_run
from .helpers.shared import made_once

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
    interrupted_run(run_dir, cache_dir, signal.SIGTERM, after_epochs=1)
    assert result(run_dir)["status"] == "interrupted"
    done = torch.load(run_dir / "checkpoint.pt", weights_only=True)["progress"]["epoch"]
    assert done >= 1
    interrupted_run(run_dir, cache_dir, signal.SIGINT, done + 1)  # a row more than it had
    assert result(run_dir)["status"] == "interrupted"
    assert "resumed from" in (run_dir / "flowers_sweep.log").read_text()
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["progress"]["epoch"] >= done + 1
    # the second resume in this process (api.train takes the CLI's steps; the CLI's
    # resume is the one above): what is tested is where the run ends
    assert fs.train(fs.compose(SLOW), run_dir)["status"] == "completed"
    assert result(run_dir)["status"] == "completed"
    assert (run_dir / "flowers_sweep.log").read_text().count("resumed from") == 2
    assert metrics(run_dir) == metrics(reference)


# One sweep beside folders that other processes hold, read by the three tests below.
# Job 0's folder holds a run still training in another process (a stand-in holds its
# lock, as runfolder.hold does, for the whole launch; before the sweep, the same folder
# is launched alone too); job 1's holder finishes that job itself once the launch has
# skipped it; job 2 completes; job 3 fails.
HELD_SWEEP = ["-m", "model=baseline_cnn", TINY[0], *TINY[2:], "trainer.batch_size=16,12,8,0"]
# Statements for a holder of job ARGS[0]: once the launch has skipped that job (noted it),
# complete it, before that launch ends, and let go.
FINISH_THE_JOB = f"""
job = ARGS[0]
while not (job.parent / {LAUNCH_DIR!r} / f"{{job.name}}.json").is_file():
    time.sleep(0.1)
(job / {RESULT_FILE!r}).write_text(json.dumps({{"status": "completed", "test_acc": 0.5}}))
"""


def folder_files(run_dir):
    """Each file of the folder and its bytes, but the log (Hydra's, of every launch) and
    the lock (its holder's)."""
    skip = {LOCK_FILE, "flowers_sweep.log"}
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def launch_beside_held_folders(folder, cache_dir):
    sweep = folder / "sweep"
    training = write_run(sweep / "0", status=None)  # epochs done, no result yet
    claim(training, yaml.safe_load((training / ".hydra" / "config.yaml").read_text()))
    before = folder_files(training)
    holder = start_holder(HOLD_RUN_FOLDER, training)
    try:
        # exits without waiting for the folder (a wait would hang to the guard: the
        # holder never lets go), however busy the machine: no timing is asserted
        alone = run_cli(*TINY, f"hydra.run.dir={training}", cache=cache_dir)
        finisher = start_holder(HOLD_RUN_FOLDER, sweep / "1", then=FINISH_THE_JOB)
        in_sweep = run_cli(*HELD_SWEEP, f"hydra.sweep.dir={sweep}", cache=cache_dir)
        end_holder(finisher)
        changed = sorted(k for k, v in folder_files(training).items() if before.get(k) != v)
    finally:
        end_holder(holder)
    said = {name: [p.returncode, p.stdout, p.stderr] for name, p in
            (("alone", alone), ("in_sweep", in_sweep))}  # fmt: skip
    (folder / "said.json").write_text(json.dumps({**said, "changed": changed}))


@pytest.fixture(scope="module")
def held_folders_sweep(tmp_path_factory, cache_dir):
    folder = made_once(tmp_path_factory, "held_folders_sweep",
                       lambda f: launch_beside_held_folders(f, cache_dir))  # fmt: skip
    said = json.loads((folder / "said.json").read_text())
    procs = {k: subprocess.CompletedProcess([], *said[k]) for k in ("alone", "in_sweep")}
    return folder / "sweep", procs, said["changed"]


def test_failed_run_is_isolated_and_the_sweep_exits_nonzero(held_folders_sweep):
    sweep, procs, _ = held_folders_sweep
    proc = procs["in_sweep"]
    assert proc.returncode != 0
    failed, ok = result(sweep / "3"), result(sweep / "2")
    assert failed["status"] == "failed" and "batch_size" in failed["error"]
    assert "ConfigError" in (sweep / "3" / "traceback.txt").read_text()
    assert ok["status"] == "completed"
    assert "did not complete" in proc.stderr and "trainer.batch_size=0" in proc.stderr
    assert (sweep / "report" / "runs.csv").is_file()  # the report ran before the exit


def test_a_relaunch_into_a_folder_still_training_writes_nothing(held_folders_sweep):
    """Alone it exits at once naming the folder; in a sweep that job is skipped and the
    others go on; the folder's files stay as its running job left them."""
    sweep, procs, changed = held_folders_sweep
    run_dir = sweep / "0"
    alone = procs["alone"]
    assert alone.returncode == 2
    (line,) = error_lines(alone)
    assert str(run_dir) in line and "in use" in line
    assert changed == []  # .hydra/ (which Hydra rewrites first) put back, all else untouched
    in_sweep = procs["in_sweep"]
    assert in_sweep.returncode == 1
    assert result(sweep / "2")["status"] == "completed"
    assert f"{run_dir}: skipped: still training in another process" in in_sweep.stderr


def test_a_job_left_to_another_process_fails_the_launch_even_once_finished(held_folders_sweep):
    """Job 1: done when the launch ends, but not by this launch."""
    sweep, procs, _ = held_folders_sweep
    proc = procs["in_sweep"]
    assert result(sweep / "2")["status"] == "completed"
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = next(x for x in proc.stderr.splitlines() if x.strip().startswith(str(sweep / "1")))
    assert "not trained by this launch" in line


def test_nan_loss_is_diverged_and_stops_at_once(tmp_path, cache_dir):
    """In this process (api.train takes the CLI's steps); the CLI's exit is the rule's."""
    run_dir = tmp_path / "run"
    cfg = fs.compose([*TINY, "trainer.epochs=3", "optimizer=sgd", "optimizer.lr=1e12"])
    with pytest.raises(RunFailedError, match="diverged"):
        fs.train(cfg, run_dir)
    assert RULES["diverged"].alone != 0
    res = result(run_dir)
    assert res["status"] == "diverged" and res["epochs_done"] == 0
    assert "nan" in res["error"].lower() or "inf" in res["error"].lower()


def test_a_sweep_by_submitit_completes_and_its_relaunch_trains_nothing(tmp_path, cache_dir):
    """submitit_local runs each job in a process of its own (one job here: two run side
    by side, each in its own folder, in test_stopping's submitit cases); the same sweep
    relaunched (by the basic launcher: the launcher is not a setting) finds it done."""
    sweep = tmp_path / "sweep"
    args = ["-m", "model=baseline_cnn", "model.activation=sigmoid", *TINY, "aggregate=false",
            "trainer.threads=auto", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = run_cli(*args, "hydra/launcher=submitit_local", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = sweep / "0"
    assert (result(job)["status"], result(job)["activation"]) == ("completed", "sigmoid")
    before = (job / "result.json").read_bytes()
    weights = (job / "model.pt").stat().st_mtime_ns
    proc = run_cli(*args, cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (job / "result.json").read_bytes() == before
    assert (job / "model.pt").stat().st_mtime_ns == weights
    assert "skipped" in (job / "flowers_sweep.log").read_text()


def error_lines(proc):
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("flowers_sweep: error")]


def test_other_settings_or_damaged_files_in_a_run_folder_stop_clearly(tmp_path, cache_dir):
    """A finished run's folder: a relaunch with other settings is refused, naming them,
    and changes nothing; a damaged checkpoint or run record (a run killed before its end)
    stops with one line naming the file; resume=false starts the folder over. The CLI
    where its exit and line are the point; the rest in this process (api.train takes
    the CLI's steps)."""
    run_dir = tmp_path / "run"
    settings = [*TINY, "model=baseline_cnn", "trainer.keep_checkpoint=true"]
    args = [*settings, f"hydra.run.dir={run_dir}"]
    assert fs.train(fs.compose(settings), run_dir)["status"] == "completed"
    saved = {p: (run_dir / p).read_bytes() for p in ("result.json", ".hydra/config.yaml")}
    proc = run_cli(*args, "trainer.epochs=2", cache=cache_dir)
    assert proc.returncode != 0
    assert "trainer.epochs=1 (now 2)" in proc.stderr and "resume=false" in proc.stderr
    for name, data in saved.items():
        assert (run_dir / name).read_bytes() == data, name

    (run_dir / "result.json").unlink()  # as if killed before its end
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    proc = run_cli(*args, cache=cache_dir)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert str(ckpt) in line and "resume=false" in line
    res = result(run_dir)
    assert res["status"] == "failed" and "checkpoint.pt" in res["error"]

    record = run_dir / "run_config.json"
    record.write_text('{"config": {"seed"')
    with pytest.raises(RunFailedError) as failed:
        fs.train(fs.compose(settings), run_dir)
    said = str(failed.value)
    assert str(record) in said and "resume=false" in said and "\n" not in said, said
    res = result(run_dir)
    assert res["status"] == "failed" and "run_config.json" in res["error"]

    fresh = fs.train(fs.compose([*settings, "trainer.epochs=2", "resume=false"]), run_dir)
    assert fresh["status"] == "completed" and result(run_dir)["status"] == "completed"
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
    assert fs.train(fs.compose([*TINY, "model=baseline_cnn"]), run_dir)["status"] == "completed"
    log = (run_dir / "flowers_sweep.log").read_text()
    assert "training starts over from epoch 1 (dropping the 2 epoch(s)" in log
    assert [r["epoch"] for r in metrics(run_dir)] == ["1"]
