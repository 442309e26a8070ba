"""Checkpoints that resume on any device, and fail clearly when they cannot."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from flowers_sweep.errors import CheckpointError
from flowers_sweep.record.runrecord import BEST_WEIGHTS_FILE, CHECKPOINT_FILE, WEIGHTS_FILE
from flowers_sweep.trainer.checkpoint import (
    Checkpointer,
    Progress,
    TrainState,
    load_checkpoint,
    rng_state,
    save_checkpoint,
)
from flowers_sweep.trainer.runstate import RunState
from flowers_sweep.trainer.training import keep_weights

CPU = torch.device("cpu")


def parts(device=CPU):
    torch.manual_seed(0)
    model = nn.Linear(4, 3).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1], 0.5)
    return model, optimizer, scheduler, torch.Generator().manual_seed(7)


def state_of(device=CPU, epoch=0):
    """The TrainState of fresh `parts`, at the end of `epoch`."""
    return TrainState(*parts(device), device, Progress(epoch=epoch))


def trained_checkpoint(path):
    state = state_of(epoch=3)
    state.model(torch.randn(2, 4)).sum().backward()
    state.optimizer.step()
    state.scheduler.step()
    random.seed(1)
    np.random.seed(2)
    torch.rand(3, generator=state.gen)
    save_checkpoint(path, state)
    weight = state.model.weight.detach().clone()
    return np.random.get_state()[1].copy(), state.gen.get_state().clone(), weight


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_resume_onto_another_device_restores_every_state(tmp_path):
    """A GPU run resumes with its parameters on the GPU; here the `meta` device stands in
    for it: the random states must still be read on the host (NumPy's key is an array)."""
    path = tmp_path / "checkpoint.pt"
    np_key, data_state, _ = trained_checkpoint(path)
    np.random.seed(99)
    state = state_of(torch.device("meta"))
    load_checkpoint(path, state)
    assert state.progress.epoch == 3
    assert np.array_equal(np.random.get_state()[1], np_key)
    assert torch.equal(state.gen.get_state(), data_state)
    assert state.optimizer.state_dict()["state"][0]["exp_avg"].device.type == "meta"
    assert state.scheduler.last_epoch == 1


def test_round_trip_on_the_cpu_restores_weights(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _, _, weight = trained_checkpoint(path)
    state = state_of()
    load_checkpoint(path, state)
    assert torch.equal(state.model.weight, weight)


def test_a_cpu_run_never_touches_cuda(monkeypatch):
    """trainer.device=cpu on a GPU node: asking CUDA would start it (and take memory)."""

    def refuse(*args, **kwargs):
        raise AssertionError("CUDA was asked in a CPU run")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all"):
        monkeypatch.setattr(torch.cuda, name, refuse)
    state = rng_state(torch.Generator(), CPU)
    assert state["cuda"] == []


def test_only_the_runs_own_gpu_is_saved_and_restored(monkeypatch, tmp_path):
    """A run on cuda:1 saves that GPU's state alone, and puts it back on whatever GPU the
    resumed run has, so a machine with fewer GPUs resumes it."""
    asked, restored = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda d: asked.append(d) or torch.ones(4))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("all GPUs asked"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d: restored.append((s, d)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: pytest.fail("set on all"))
    state = rng_state(torch.Generator(), torch.device("cuda:1"))
    assert asked == [torch.device("cuda:1")] and len(state["cuda"]) == 1

    from flowers_sweep.trainer.checkpoint import set_rng_state

    set_rng_state(state, torch.Generator(), torch.device("cuda:0"))
    assert len(restored) == 1 and restored[0][1] == torch.device("cuda:0")
    assert torch.equal(restored[0][0], torch.ones(4))


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_a_damaged_checkpoint_names_the_file_and_the_way_out(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    trained_checkpoint(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        torch.save({"model": nn.Linear(9, 9).state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, state_of())
    message = str(err.value)
    assert str(path) in message and "resume=false" in message and "\n" not in message


class Clock:
    """Stands in for time.monotonic: the test says how much training time has passed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("flowers_sweep.trainer.checkpoint.time.monotonic", clock)
    return clock


def epochs_written(saver, path, epochs, seconds_each, clock):
    """Run `epochs` fake epochs; the epochs whose end wrote the checkpoint."""
    state = state_of()
    written = []
    for epoch in range(1, epochs + 1):
        clock.now += seconds_each
        state.progress = Progress(epoch=epoch)
        saver.epoch_end(epoch, state)
        if path.is_file():
            on_disk = torch.load(path, weights_only=True)["progress"]["epoch"]
            if not written or written[-1] != on_disk:
                written.append(on_disk)
    return written


@pytest.mark.parametrize(
    ("every_epochs", "every_s", "seconds_each", "expected"),
    [
        (1, None, 10, [1, 2, 3, 4, 5, 6]),  # every epoch, as before
        (2, None, 10, [2, 4, 6]),
        (None, 25, 10, [3, 6]),  # 30 s after the last write, at an epoch's end
        (4, 25, 10, [3, 6]),  # whichever comes first
        (2, 5, 10, [1, 2, 3, 4, 5, 6]),
        (None, None, 10, []),  # only at the end or when stopped
    ],
)
def test_a_checkpoint_is_due_every_n_epochs_or_t_seconds(
    tmp_path, clock, every_epochs, every_s, seconds_each, expected
):
    saver = Checkpointer(tmp_path, every_epochs, every_s, epoch=0)
    assert epochs_written(saver, tmp_path / CHECKPOINT_FILE, 6, seconds_each, clock) == expected
    assert saver.writes == len(expected)


def test_a_run_stopped_mid_epoch_writes_its_last_whole_epoch(tmp_path, clock):
    """Between due writes the last epoch is kept as a copy: the training that follows
    (here: a step that changes the weights, and a new best not yet committed by its
    epoch's end) must not leak into what is written."""
    state = state_of(epoch=1)
    model, optimizer = state.model, state.optimizer
    saver = Checkpointer(tmp_path, None, 300, epoch=0)
    weights_then = model.weight.detach().clone()
    saver.new_best(model.state_dict())
    saver.epoch_end(1, state)
    assert not (tmp_path / CHECKPOINT_FILE).exists()  # 300 s have not passed
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()  # epoch 2 under way...
    state.progress.epoch = 2  # ...and counted done (fit does so before its epoch_end)...
    saver.new_best(model.state_dict())  # ...and its weights are the best, then the job is stopped
    saver.write_pending()
    on_disk = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert on_disk["progress"]["epoch"] == 1
    assert torch.equal(on_disk["model"]["weight"], weights_then)
    assert not torch.equal(model.weight.detach(), weights_then)
    best = torch.load(tmp_path / BEST_WEIGHTS_FILE, weights_only=True)  # named by the checkpoint
    assert torch.equal(best["weight"], weights_then)
    saver.write_pending()  # nothing new: no second write
    assert saver.writes == 1


def test_resume_counts_the_interval_from_the_checkpoint_it_resumed(tmp_path, clock):
    saver = Checkpointer(tmp_path, 3, None, epoch=4)
    assert [saver.due(e) for e in (5, 6, 7)] == [False, False, True]


@pytest.mark.parametrize(
    ("which", "kept"),
    [
        ("last", {WEIGHTS_FILE}),
        ("best", {BEST_WEIGHTS_FILE}),
        ("both", {WEIGHTS_FILE, BEST_WEIGHTS_FILE}),
        ("none", set()),
    ],
)
def test_a_completed_run_keeps_the_weights_asked_for(tmp_path, which, kept):
    state = RunState(*parts(), CPU, Progress(epoch=1), run_dir=tmp_path)
    model = state.model
    saver = Checkpointer(tmp_path, None, None, epoch=0)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    saver.new_best(model.state_dict())
    saver.epoch_end(1, state)  # none due: kept in memory until the end
    with torch.no_grad():
        model.weight.add_(1.0)  # the last epoch differs from the best one
    keep_weights(which, state, saver)
    assert {p.name for p in tmp_path.glob("*.pt")} == kept
    if WEIGHTS_FILE in kept:
        last = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
        assert torch.equal(last["weight"], model.weight.detach())
    if BEST_WEIGHTS_FILE in kept:
        on_disk = torch.load(tmp_path / BEST_WEIGHTS_FILE, weights_only=True)
        assert torch.equal(on_disk["weight"], best["weight"])


@pytest.mark.parametrize("every_epochs", [1, None], ids=["written", "kept in memory"])
def test_the_best_weights_for_the_final_test_are_the_best_epochs(tmp_path, every_epochs):
    state = state_of(epoch=1)
    model, optimizer = state.model, state.optimizer
    saver = Checkpointer(tmp_path, every_epochs, None, epoch=0)
    weights_then = model.weight.detach().clone()
    saver.new_best(model.state_dict())
    saver.epoch_end(1, state)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()  # later epochs train on; the best stays the first epoch's
    best = saver.best or saver.load_best()
    assert torch.equal(best["weight"], weights_then)
