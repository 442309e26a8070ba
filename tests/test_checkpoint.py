"""Checkpoints that resume on any device, and fail clearly when they cannot."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from flowers_sweep.checkpoint import Progress, load_checkpoint, rng_state, save_checkpoint
from flowers_sweep.errors import CheckpointError

CPU = torch.device("cpu")


def parts(device=CPU):
    torch.manual_seed(0)
    model = nn.Linear(4, 3).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1], 0.5)
    return model, optimizer, scheduler, torch.Generator().manual_seed(7)


def trained_checkpoint(path):
    model, optimizer, scheduler, gen = parts()
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    random.seed(1)
    np.random.seed(2)
    torch.rand(3, generator=gen)
    save_checkpoint(path, model, optimizer, scheduler, gen, Progress(epoch=3), CPU)
    return np.random.get_state()[1].copy(), gen.get_state().clone(), model.weight.detach().clone()


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_resume_onto_another_device_restores_every_state(tmp_path):
    """A GPU run resumes with its parameters on the GPU; here the `meta` device stands in
    for it: the random states must still be read on the host (NumPy's key is an array)."""
    path = tmp_path / "checkpoint.pt"
    np_key, data_state, _ = trained_checkpoint(path)
    np.random.seed(99)
    meta = torch.device("meta")
    model, optimizer, scheduler, gen = parts(meta)
    progress = load_checkpoint(path, model, optimizer, scheduler, gen, meta)
    assert progress.epoch == 3
    assert np.array_equal(np.random.get_state()[1], np_key)
    assert torch.equal(gen.get_state(), data_state)
    assert optimizer.state_dict()["state"][0]["exp_avg"].device.type == "meta"
    assert scheduler.last_epoch == 1


def test_round_trip_on_the_cpu_restores_weights(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _, _, weight = trained_checkpoint(path)
    model, optimizer, scheduler, gen = parts()
    load_checkpoint(path, model, optimizer, scheduler, gen, CPU)
    assert torch.equal(model.weight, weight)


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

    from flowers_sweep.checkpoint import set_rng_state

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
        load_checkpoint(path, *parts(), CPU)
    message = str(err.value)
    assert str(path) in message and "resume=false" in message and "\n" not in message
