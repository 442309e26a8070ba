"""End to end: the real `python -m flowers_sweep` in a subprocess, tiny settings."""

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from flowers_sweep.record.runrecord import METRIC_COLUMNS

from .helpers.cli import HANG_GUARD_S, TINY, run_cli

pytestmark = pytest.mark.e2e
RESULT_KEYS = {
    "status", "case", "model", "activation", "epochs", "seed", "test_acc", "test_loss",
    "best_val_acc", "params", "num_classes", "train_size", "val_size", "test_size",
    "wall_s", "device", "precision", "best_epoch", "test_acc_best_val",
}  # fmt: skip


def job_dirs(sweep_dir):
    jobs = (p for p in sweep_dir.iterdir() if p.name.isdigit())
    return sorted(jobs, key=lambda p: int(p.name))


def test_report_cases_multirun(report_cases_sweep):
    results = []
    for job in job_dirs(report_cases_sweep):
        result = json.loads((job / "result.json").read_text())
        assert set(result) == RESULT_KEYS
        assert result["status"] == "completed"
        assert (result["train_size"], result["val_size"], result["test_size"]) == (48, 20, 20)
        rows = list(csv.DictReader((job / "metrics.csv").read_text().splitlines()))
        assert list(rows[0]) == list(METRIC_COLUMNS) and len(rows) == 2
        state = torch.load(job / "model.pt", weights_only=True)
        weights = [v for k, v in state.items() if k.endswith("weight")]
        assert weights[-1].shape[0] == result["num_classes"]  # the classifier's rows
        assert "trainset size: 48" in (job / "flowers_sweep.log").read_text()
        # [0.4, 0.7] of 2 epochs: both decays after epoch 1
        assert [float(r["lr"]) for r in rows] == pytest.approx([0.001, 0.001 * 0.2**2])
        # TensorBoard (the default logger): the same curve, one point per epoch
        events = EventAccumulator(str(job))
        events.Reload()
        val = [(e.step, e.value) for e in events.Scalars("val_acc")]
        assert val == [(int(r["epoch"]), pytest.approx(float(r["val_acc"]))) for r in rows]
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
        results.append(result)
    assert [(r["case"], r["model"], r["activation"], r["seed"]) for r in results] == [
        (case, model, activation, seed)
        for case, model, activation in [
            ("relu", "resnet18", "relu"),
            ("sigmoid", "resnet18", "sigmoid"),
            ("leaky_relu", "resnet18", "leaky_relu"),
            ("baseline_cnn", "baseline_cnn", "relu"),
        ]
        for seed in (0, 1)
    ]


def test_activation_sweep_with_epochs_and_size_overrides(tmp_path, cache_dir):
    """One epoch (TINY's override): the schedule and TensorBoard's curve over two are
    checked on report_cases_sweep's jobs, above; TensorBoard's server lists these."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "model.activation=relu,sigmoid,leaky_relu", *TINY, "dataset.image_size=40",
        "aggregate=false", f"hydra.sweep.dir={sweep}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (sweep / "report").exists()
    jobs = job_dirs(sweep)
    assert [json.loads((j / "result.json").read_text())["activation"] for j in jobs] == [
        "relu", "sigmoid", "leaky_relu",
    ]  # fmt: skip
    for job in jobs:
        rows = list(csv.DictReader((job / "metrics.csv").read_text().splitlines()))
        assert [int(r["epoch"]) for r in rows] == [1]
        assert "image_size: 40" in (job / ".hydra" / "config.yaml").read_text()
    assert tensorboard_runs(sweep) == ["0", "1", "2"]


def tensorboard_runs(logdir, timeout=HANG_GUARD_S):
    """Start `tensorboard --logdir` on a free localhost port, ask its HTTP API which runs
    it lists, stop it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
         "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        runs = []
        while time.monotonic() < deadline and len(runs) < 3:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/data/runs", timeout=HANG_GUARD_S
                ) as r:
                    runs = json.loads(r.read())
            except OSError:
                pass  # not listening yet
            time.sleep(0.1)
        return sorted(runs)
    finally:
        server.terminate()
        server.wait(timeout=HANG_GUARD_S)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.activation=tanhh", ["'tanhh'", "did you mean tanh", "leaky_relu, logsigmoid"]),
    ],
)
def test_bad_value_exits_nonzero_before_training(tmp_path, cache_dir, override, expected):
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY, override, f"hydra.run.dir={run_dir}", cache=cache_dir)
    assert proc.returncode == 2  # test_user_input's `++` typo: the same path, in process
    for text in expected:
        assert text in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line]) == 1
    assert not (run_dir / "metrics.csv").exists()  # failed before training
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["error_type"] == "ConfigError"


def test_default_settings_learn(tmp_path, cache_dir):
    """The README's demo scale: ReLU ResNet-18 must beat chance (10%) at least twice, and
    its learning rate decays as the report's does (after 40% and 70% of the epochs)."""
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].endswith(f"run folder: {run_dir}")  # its last word
    result = json.loads((run_dir / "result.json").read_text())
    assert result["num_classes"] == 10
    assert result["test_acc"] >= 2 * (1 / result["num_classes"])
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-3, 2e-4, 2e-4, 4e-5])
