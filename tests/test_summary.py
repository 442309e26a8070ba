"""`python -m flowers_sweep.summary`: the report's size formula against a real pass."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import warnings
from functools import cache

import pytest
import torch
import torchvision

from flowers_sweep.summary import Summary, summarize

from .helpers.cli import HANG_GUARD_S, make_cfg, run_cli

# He et al. (2016), Table 1: multiply-adds at 224 px ("FLOPs" in the paper).
REPORT_MACS = {
    "resnet18": 1.8e9,
    "resnet34": 3.6e9,
    "resnet50": 3.8e9,
    "resnet101": 7.6e9,
    "resnet152": 11.3e9,
}
MODELS = [*REPORT_MACS, "baseline_cnn"]


@cache
def summary_of(model: str, size: int, classes: int = 102) -> Summary:
    """Shared between tests: each model/size is traced once per session."""
    cfg = make_cfg(
        f"model={model}", f"dataset.image_size={size}", f"dataset.num_classes={classes}"
    )
    return summarize(cfg)


def torchvision_params(name: str) -> int:
    with torch.device("meta"):  # no weight init: only the count matters
        model = getattr(torchvision.models, name)(num_classes=102)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(REPORT_MACS))
def test_resnet_counts_match_torchvision_and_report(name):
    s = summary_of(name, 224)
    assert s.params == torchvision_params(name)
    assert s.macs == pytest.approx(REPORT_MACS[name], rel=0.10)


@pytest.mark.parametrize("size", [32, 64, 224])
@pytest.mark.parametrize("model", MODELS)
def test_formula_predicts_every_conv_and_pool(model, size):
    s = summary_of(model, size)
    sized = [r for r in s.rows if r.predicted is not None]
    assert sized, "no conv or pool rows"
    for row in sized:
        assert row.predicted == row.real_hw, row
    assert not s.mismatches


def test_resnet18_stage_sizes_at_224():
    rows = {r.name: r.real_hw for r in summary_of("resnet18", 224).rows}
    assert rows["conv1"] == (112, 112)
    assert rows["maxpool"] == (56, 56)
    assert [rows[f"layer{i}.1"] for i in range(1, 5)] == [(56, 56), (28, 28), (14, 14), (7, 7)]


def run_summary(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cache=None, timeout=HANG_GUARD_S, module="flowers_sweep.summary")


@pytest.mark.e2e
def test_cli_needs_no_data(tmp_path):
    missing = tmp_path / "missing"
    proc = run_summary("dataset=flowers102", f"dataset.root={missing}", "model=resnet18")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-3:]
    assert re.fullmatch(r"params: \d+", last[0]), last
    assert re.fullmatch(r"macs: \d+", last[1]), last
    assert re.match(r"memory: ~[\d.]+ (MiB|GiB) \(estimate", last[2]), last
    assert int(last[0].split()[1]) == 11228838
    assert "input: 3 x 224 x 224  num_classes: 102" in proc.stdout
    assert not missing.exists()


def test_cli_rejects_bad_activation(monkeypatch, capsys):
    """In this process, as `python -m` runs the module (runpy; test_cli_needs_no_data
    starts the real command): the refusal is main's, its exit status the __main__ block's."""
    monkeypatch.setattr(sys, "argv", ["flowers_sweep.summary", "model.activation=tanhh"])
    with warnings.catch_warnings():  # runpy's: the test imported the module already
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SystemExit) as ended:
            runpy.run_module("flowers_sweep.summary", run_name="__main__", alter_sys=True)
    stderr = capsys.readouterr().err
    assert ended.value.code not in (0, None)
    assert "tanhh" in stderr
    assert stderr.startswith("flowers_sweep.summary: error:")


def test_a_wrong_formula_is_reported_loudly(monkeypatch, capsys):
    """The check is not vacuous: a formula that forgets padding is caught."""
    import flowers_sweep.summary as summary

    def no_padding(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
        return (size - dilation * (kernel - 1) - 1) // stride + 1

    monkeypatch.setattr(summary, "conv_output_size", no_padding)
    assert summary.main(["model=resnet18"]) == 1
    out, err = capsys.readouterr()
    assert "MISMATCH" in out
    assert "MISMATCH at conv1: formula gives 13 x 13, real pass gives 16 x 16" in err


def test_cpu_pass_agrees_with_meta():
    cfg = make_cfg("model=baseline_cnn", "dataset.image_size=64")
    meta, cpu = summarize(cfg), summarize(cfg, device="cpu")
    assert (cpu.params, cpu.macs, cpu.activations_per_sample) == (
        meta.params,
        meta.macs,
        meta.activations_per_sample,
    )
    assert [(r.name, r.shape, r.macs) for r in cpu.rows] == [
        (r.name, r.shape, r.macs) for r in meta.rows
    ]
