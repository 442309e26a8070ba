"""Model EMA (trainer.ema_decay, ema_every, ema_warmup; flowers_sweep/trainer/ema.py):
against torch's AveragedModel, its counts, its checkpoint, and a run that validates,
tests, keeps and hands its EMA to evaluate, predict, model.weights and the aggregator.

Equality is exact throughout: ModelEma applies AveragedModel's own operations
(`torch._foreach_lerp_` with the weight 1 - decay on floating tensors, AveragedModel's
expression on integer ones) to the same values in the same order, and each is
elementwise, so float32 rounding is the same on both sides: no tolerance is needed,
and any difference means a different formula, pairing or order of updates.
"""

from __future__ import annotations

import copy
import json
import logging

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import flowers_sweep as fs
from flowers_sweep.aggregate.report import build
from flowers_sweep.aggregate.tables import selected
from flowers_sweep.config.validate import validate
from flowers_sweep.errors import CheckpointError, ConfigError, FlowersSweepError
from flowers_sweep.evaluate import evaluate_run, restore
from flowers_sweep.evaluate import main as evaluate_main
from flowers_sweep.models import build_model
from flowers_sweep.models.weights import load_weights
from flowers_sweep.predict import main as predict_main
from flowers_sweep.record.runrecord import (
    BEST_WEIGHTS_FILE,
    EMA_WEIGHTS_FILE,
    WEIGHTS_FILE,
    read_metrics,
    read_result,
)
from flowers_sweep.trainer.checkpoint import (
    Checkpointer,
    checkpoint_state,
    load_checkpoint,
    save_checkpoint,
)
from flowers_sweep.trainer.ema import ModelEma, build_ema
from flowers_sweep.trainer.loop import train_one_epoch
from flowers_sweep.trainer.runstate import RunState
from flowers_sweep.trainer.training import keep_weights

from .helpers.batches import Batches
from .helpers.cli import TINY, make_cfg
from .helpers.runfolders import write_run

FEATURES, CLASSES, CPU = 12, 5, torch.device("cpu")


def batches(n: int, size: int = 8, seed: int = 0) -> Batches:
    g = torch.Generator().manual_seed(seed)
    x, y = (
        torch.randn(n * size, FEATURES, generator=g),
        torch.randint(0, CLASSES, (n * size,), generator=g),
    )
    return Batches(list(zip(x.split(size), y.split(size), strict=True)), size)


def with_bn(seed: int = 1) -> nn.Module:
    """A small model with batch norm: running mean, var and num_batches_tracked buffers."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, CLASSES)
    )


def run_of(model: nn.Module, ema: ModelEma | None = None, **trainer) -> RunState:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    return RunState(
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1),
        gen=torch.Generator().manual_seed(0),
        device=CPU,
        ema=ema,
        cfg=OmegaConf.create({"trainer": trainer}),
    )


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def nudge(model: nn.Module, k: int) -> None:
    """A stand-in for an optimizer step: every tensor of the model moves (buffers too)."""
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            t.add_(k if not t.is_floating_point() else 0.1 * k * torch.ones_like(t))


def test_the_ema_is_averaged_models_with_buffers_after_each_step():
    """train_one_epoch's plain step updates it: the same as AveragedModel(use_buffers=True,
    multi_avg_fn=get_ema_multi_avg_fn) updated after each step of a twin trained by hand."""
    model, data, decay = with_bn(), batches(6), 0.8
    twin = copy.deepcopy(model)
    run = run_of(model, ModelEma(model, decay))
    train_one_epoch(run, data)

    reference = AveragedModel(twin, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.3, momentum=0.9)
    twin.train()
    for x, y in data():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(twin(x), y).backward()
        optimizer.step()
        reference.update_parameters(twin)
    assert same(model.state_dict(), twin.state_dict())  # the same training
    assert same(run.ema.module.state_dict(), reference.module.state_dict())
    assert not same(run.ema.module.state_dict(), model.state_dict())  # an average, not a copy
    assert run.ema.steps == 6 and run.ema.updates == 6


def test_accumulated_steps_update_it_once_per_optimizer_step():
    """Stepper's path: 5 batches, 2 per step, make 3 steps (the last one partial)."""
    model = with_bn()
    run = run_of(model, ModelEma(model, 0.9), accumulate=2)
    train_one_epoch(run, batches(5))
    assert run.ema.steps == 3


def test_every_n_steps_updates_at_the_nth_and_its_multiples():
    model = with_bn()
    ema = ModelEma(model, 0.5, every=3)
    reference = AveragedModel(
        copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True
    )
    for k in range(1, 8):
        nudge(model, k)
        ema.step()
        if k % 3 == 0:
            reference.update_parameters(model)
    assert (ema.steps, ema.updates) == (7, 2)
    assert same(ema.module.state_dict(), reference.module.state_dict())


def test_warmup_epochs_copy_the_model_as_torchvisions_reference_does():
    """torchvision's train.py: `if epoch < lr_warmup_epochs: n_averaged.fill_(0)` after
    each update; its epochs count from 0, ours from 1."""
    model, decay, warmup = with_bn(), 0.5, 2
    ema = ModelEma(model, decay, warmup=warmup)
    reference = AveragedModel(
        copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
    )
    for epoch in range(3):
        ema.start_epoch(epoch + 1)
        for k in range(3):
            nudge(model, 3 * epoch + k + 1)
            ema.step()
            reference.update_parameters(model)
            if epoch < warmup:
                reference.n_averaged.fill_(0)
            if epoch < warmup:  # a copy of the model throughout the warm-up
                assert same(ema.module.state_dict(), model.state_dict())
    assert same(ema.module.state_dict(), reference.module.state_dict())
    assert not same(ema.module.state_dict(), model.state_dict())


def test_the_checkpoint_restores_it_exactly_and_training_goes_on_as_if_never_stopped(tmp_path):
    path = tmp_path / "checkpoint.pt"
    first = with_bn(seed=1)
    run = run_of(first, ModelEma(first, 0.9, every=2, warmup=1))
    run.ema.start_epoch(1)
    train_one_epoch(run, batches(5))
    save_checkpoint(path, run)

    other = with_bn(seed=2)  # another initialisation: everything must come from the file
    resumed = run_of(other, ModelEma(other, 0.9, every=2, warmup=1))
    load_checkpoint(path, resumed)
    assert same(resumed.ema.module.state_dict(), run.ema.module.state_dict())
    assert (resumed.ema.steps, resumed.ema.updates) == (run.ema.steps, run.ema.updates) == (5, 0)
    for state in (run, resumed):
        state.ema.start_epoch(2)
        train_one_epoch(state, batches(5, seed=1))
    assert same(resumed.ema.module.state_dict(), run.ema.module.state_dict())
    assert same(resumed.model.state_dict(), run.model.state_dict())


def test_without_ema_the_checkpoint_is_todays_and_an_old_one_cannot_resume_an_ema_run(tmp_path):
    path = tmp_path / "checkpoint.pt"
    plain = run_of(with_bn())
    save_checkpoint(path, plain)
    assert set(checkpoint_state(plain)) == {"model", "optimizer", "scheduler", "rng", "progress"}
    load_checkpoint(path, run_of(with_bn(seed=3)))  # loads as it always did
    model = with_bn()
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt cannot be resumed from"):
        load_checkpoint(path, run_of(model, ModelEma(model, 0.9)))


def test_no_ema_without_the_key_and_keep_weights_ema_needs_it():
    assert build_ema(with_bn(), OmegaConf.create({"ema_decay": None})) is None
    validate(make_cfg("trainer.ema_decay=0.99", "trainer.keep_weights=last_ema"))
    for value in ("ema", "last_ema"):
        with pytest.raises(ConfigError, match=f"trainer.keep_weights='{value}' is invalid"):
            validate(make_cfg(f"trainer.keep_weights={value}"))


def test_settings_that_leave_the_ema_nothing_to_do_are_warned_of(caplog):
    """ema_every or ema_warmup without ema_decay (no EMA), a warm-up over every epoch
    (the EMA is the model's copy); the defaults and a shorter warm-up say nothing."""
    trainer = {"ema_decay": None, "ema_every": 1, "ema_warmup": 0, "epochs": 2}
    cases = [
        ({}, None),
        ({"ema_warmup": 5}, "set without trainer.ema_decay: no EMA is kept"),
        ({"ema_every": 4}, "set without trainer.ema_decay: no EMA is kept"),
        ({"ema_decay": 0.9, "ema_warmup": 1}, None),
        ({"ema_decay": 0.9, "ema_warmup": 2}, "ema_warmup=2 covers all 2 epochs"),
    ]
    for change, said in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="flowers_sweep.trainer.ema"):
            ema = build_ema(with_bn(), OmegaConf.create({**trainer, **change}))
        assert (ema is None) == ("ema_decay" not in change)
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == (said is not None) and all(said in w for w in warned), warned


@pytest.mark.parametrize(
    ("which", "kept"),
    [("ema", {EMA_WEIGHTS_FILE}), ("last_ema", {WEIGHTS_FILE, EMA_WEIGHTS_FILE})],
)
def test_keep_weights_ema_keeps_the_averages_weights(tmp_path, which, kept):
    model = with_bn()
    run = run_of(model, ModelEma(model, 0.9))
    run.run_dir = tmp_path
    train_one_epoch(run, batches(3))
    saver = Checkpointer(tmp_path, None, None, epoch=0)
    saver.new_best(model.state_dict())
    saver.epoch_end(1, run)
    keep_weights(which, run, saver)
    assert {p.name for p in tmp_path.glob("*.pt")} == kept
    assert BEST_WEIGHTS_FILE not in kept
    on_disk = torch.load(tmp_path / EMA_WEIGHTS_FILE, weights_only=True)
    assert same(on_disk, run.ema.module.state_dict())


@pytest.mark.e2e
def test_a_run_with_ema_validates_tests_and_keeps_it_for_evaluate_predict_and_report(
    tmp_path, monkeypatch, capsys, cache_dir
):
    """In this process: fs.train, then evaluate's and predict's main()s."""
    monkeypatch.chdir(tmp_path)
    overrides = ["model=baseline_cnn", *TINY, "trainer.epochs=2", "trainer.ema_decay=0.5"]
    cfg = fs.compose([*overrides, "trainer.keep_weights=last_ema"])
    result = fs.train(cfg, "run")
    run_dir = tmp_path / "run"
    assert result == read_result(run_dir)
    assert list(result)[-2:] == ["test_acc_ema", "test_loss_ema"]
    assert 0 <= result["test_acc_ema"] <= 1 and result["test_loss_ema"] > 0
    rows = read_metrics(run_dir)
    assert len(rows) == 2 and all(
        0 <= r["val_acc_ema"] <= 1 and r["val_loss_ema"] > 0 for r in rows
    )
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith(",epoch_s,val_loss_ema,val_acc_ema")
    assert {p.name for p in run_dir.glob("*.pt")} == {WEIGHTS_FILE, EMA_WEIGHTS_FILE}
    assert "EMA was never updated" not in (run_dir / "flowers_sweep.log").read_text()

    kept = torch.load(run_dir / EMA_WEIGHTS_FILE, weights_only=True)
    assert same(restore(run_dir, "ema").model.cpu().state_dict(), kept)
    assert not same(kept, torch.load(run_dir / WEIGHTS_FILE, weights_only=True))
    both = r"kept only its last and ema weights .*use --weights last or ema$"
    with pytest.raises(FlowersSweepError, match=both):  # not best_val's: which it kept
        restore(run_dir, "best_val")
    assert evaluate_run(run_dir, "test", "ema")["top1"] == result["test_acc_ema"]
    started = build_model(cfg.model, result["num_classes"], cfg.dataset.image_size)
    load_weights(started, str(run_dir / EMA_WEIGHTS_FILE), "baseline_cnn")  # model.weights=
    assert same(started.state_dict(), kept)

    image = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 40, 90)).save(image)
    capsys.readouterr()
    assert predict_main([str(run_dir), str(image), "--weights", "ema", "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert len(answer["top5"]) == 5 and answer["image"] == str(image)

    plain = write_run(tmp_path / "sweep" / "0", test_acc=0.25)  # a run without EMA
    report = build([run_dir, plain.parent], select="ema")
    assert list(report.runs.columns).index("test_acc_ema") == 1 + list(report.runs.columns).index(
        "test_acc_best_val"
    )
    scored = report.scored.set_index("run_dir")
    assert scored.loc[str(run_dir.resolve()), "test_acc"] == result["test_acc_ema"]
    assert scored.loc[str(plain.resolve()), "status"] == "no test_acc_ema"
    said = "1 completed run without test_acc_ema: listed in runs.csv, left out here."
    assert said in report.markdown and "not completed" not in report.markdown

    capsys.readouterr()  # evaluate's main, as `python -m` calls it (its real CLI: test_inference)
    assert evaluate_main([str(run_dir), "--weights", "ema"]) == 0, capsys.readouterr().err
    assert f"result.json test_acc_ema: {result['test_acc_ema']:.4f}" in capsys.readouterr().out
    assert (run_dir / "per_class-test-ema.csv").is_file()


def test_a_run_warns_when_its_ema_never_moved_and_when_fp16_is_emulated(tmp_path, monkeypatch):
    """3 optimizer steps, an EMA updated every 100th: its numbers are the first weights',
    which the log says; and fp16 on the CPU, which works but is emulated."""
    monkeypatch.chdir(tmp_path)
    overrides = ["model=baseline_cnn", *TINY, "trainer.ema_decay=0.5", "trainer.ema_every=100"]
    result = fs.train(fs.compose([*overrides, "trainer.precision=fp16"]), "run")
    assert result["status"] == "completed" and result["precision"] == "fp16"
    log = (tmp_path / "run" / "flowers_sweep.log").read_text()
    assert "the EMA was never updated (trainer.ema_every=100, 3 optimizer steps" in log
    assert "trainer.precision=fp16 on a CPU is emulated" in log


def test_select_ema_leaves_out_runs_without_it_even_when_no_run_has_it():
    runs = pd.DataFrame({"status": ["completed"], "test_acc": [0.5], "run_dir": ["/a"]})
    assert selected(runs, "ema")["status"].tolist() == ["no test_acc_ema"]
