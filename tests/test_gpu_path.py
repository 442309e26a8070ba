"""The GPU path's logic, run on the CPU: which GPU a job gets, which stream the NaN watch
waits on, one compiled graph per run. (What needs a real GPU is in test_gpu.py.)"""

import contextlib
import logging
import multiprocessing
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from flowers_sweep.errors import DivergedError, FlowersSweepError
from flowers_sweep.trainer import gpu_slots
from flowers_sweep.trainer.gpu_slots import assigned_device, claim_slot
from flowers_sweep.trainer.hardware import resolve_device
from flowers_sweep.trainer.loop import FiniteCheck, eval_one_epoch, train_one_epoch
from flowers_sweep.trainer.runstate import RunState

from .helpers.cli import HANG_GUARD_S

FOUR_GPUS = ["GPU-a", "GPU-b", "GPU-c", "GPU-d"]
# jobs are separate processes; fork starts them without importing torch again
MP = multiprocessing.get_context(
    "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
)


# --- the NaN watch waits on the run's own GPU's stream ----------------------------------


class FakeStream:
    def __init__(self, index: int) -> None:
        self.index, self.events = index, []

    def record_event(self):
        event = types.SimpleNamespace(landed=False, stream=self)
        event.query = lambda: event.landed
        self.events.append(event)
        return event


@pytest.fixture()
def fake_cuda(monkeypatch):
    """torch.cuda's stream calls, recorded: GPU 0 is current, as in any fresh process."""
    streams = {i: FakeStream(i) for i in range(2)}
    state = types.SimpleNamespace(current=streams[0], allocated_under=[])

    def current_stream(device=None):
        return streams[0 if device is None else torch.device(device).index]

    @contextlib.contextmanager
    def stream(s):
        before, state.current = state.current, s
        try:
            yield
        finally:
            state.current = before

    real_empty = torch.empty

    def empty(*size, pin_memory=False, **kwargs):
        state.allocated_under.append((state.current, pin_memory))
        return real_empty(*size, **kwargs)

    monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
    monkeypatch.setattr(torch.cuda, "stream", stream)
    monkeypatch.setattr(torch, "empty", empty)
    state.streams = streams
    return state


def test_the_nan_watch_copies_and_waits_on_the_runs_gpu_not_the_current_one(fake_cuda):
    """A run on cuda:1 in a process whose current GPU is 0: the loss's copy is queued, and
    its event recorded, on GPU 1's stream, so the value is read only once it has landed."""
    watch = FiniteCheck(torch.device("cuda", 1))
    watch(torch.tensor(float("nan")), "batch 1")  # queued; its copy has not landed yet
    gpu1 = fake_cuda.streams[1]
    assert fake_cuda.allocated_under == [(gpu1, True)]  # pinned buffer, copy on GPU 1
    assert [e.stream for e in gpu1.events] == [gpu1] and not fake_cuda.streams[0].events
    watch(torch.tensor(1.0), "batch 2")  # nothing read before its event says so
    gpu1.events[0].landed = True
    with pytest.raises(DivergedError, match="batch 1"):
        watch(torch.tensor(1.0), "batch 3")


def test_the_nan_watch_uses_the_stream_it_is_given(fake_cuda):
    side = FakeStream(1)
    watch = FiniteCheck(torch.device("cuda", 1), stream=side)
    watch(torch.tensor(1.0), "batch 1")
    assert fake_cuda.allocated_under == [(side, True)] and len(side.events) == 1


# --- which GPU a job gets -----------------------------------------------------------------


def hold_a_slot(keys, jobs_per_gpu, folder, barrier, got):
    with claim_slot(keys, jobs_per_gpu, folder, poll_s=0.02) as index:
        got.put(index)
        barrier.wait(timeout=HANG_GUARD_S)  # every job holds its GPU at once, as in a sweep


@pytest.mark.parametrize(("jobs", "jobs_per_gpu"), [(4, 1), (4, 2), (8, 2), (3, 1)])
def test_concurrent_jobs_get_one_gpu_each_before_any_gpu_gets_two(tmp_path, jobs, jobs_per_gpu):
    """Separate processes, as joblib's workers or submitit_local's jobs are; the GPUs are
    faked at the assignment level (four UUIDs)."""
    ctx = MP
    barrier, got = ctx.Barrier(jobs), ctx.Queue()
    procs = [
        ctx.Process(target=hold_a_slot, args=(FOUR_GPUS, jobs_per_gpu, tmp_path, barrier, got))
        for _ in range(jobs)
    ]
    for p in procs:
        p.start()
    indexes = sorted(got.get(timeout=HANG_GUARD_S) for _ in procs)
    for p in procs:
        p.join(timeout=HANG_GUARD_S)
        assert p.exitcode == 0
    per_gpu = {i: indexes.count(i) for i in set(indexes)}
    assert len(per_gpu) == min(jobs, len(FOUR_GPUS))  # spread over the GPUs first
    assert max(per_gpu.values()) == (jobs_per_gpu if jobs > len(FOUR_GPUS) else 1)


def test_a_job_waits_for_a_free_gpu_when_every_slot_is_held(tmp_path, caplog):
    ctx = MP
    barrier, got = ctx.Barrier(2), ctx.Queue()
    holder = ctx.Process(target=hold_a_slot, args=(FOUR_GPUS[:1], 1, tmp_path, barrier, got))
    holder.start()
    assert got.get(timeout=HANG_GUARD_S) == 0
    with caplog.at_level(logging.INFO, "flowers_sweep.trainer.gpu_slots"):
        claim = claim_slot(FOUR_GPUS[:1], 1, tmp_path, poll_s=0.02)
        with ThreadPoolExecutor(1) as pool:
            waited = pool.submit(claim.__enter__)
            # the claim says it waits, and still waits: the only slot is held (no short
            # timeout decides this; a busy machine only makes the wait longer)
            deadline = time.monotonic() + HANG_GUARD_S
            while "waiting for a free one" not in caplog.text:
                assert time.monotonic() < deadline and not waited.done(), waited
                time.sleep(0.01)
            assert not waited.done()
            barrier.wait(timeout=HANG_GUARD_S)  # the holder ends its run
            holder.join(timeout=HANG_GUARD_S)
            assert waited.result(timeout=HANG_GUARD_S) == 0
        claim.__exit__(None, None, None)
    assert "waiting for a free one" in caplog.text


@pytest.fixture()
def four_gpus(monkeypatch, tmp_path):
    """torch sees four GPUs (as far as choosing one goes); slot locks under tmp_path."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    props = [types.SimpleNamespace(uuid=u) for u in "abcd"]
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(gpu_slots, "slot_dir", lambda: tmp_path)


def test_device_auto_claims_a_free_gpu_and_explicit_devices_claim_none(four_gpus, tmp_path):
    with assigned_device("auto", 1) as first, assigned_device("auto", 1) as second:
        assert (first, second) == (torch.device("cuda", 0), torch.device("cuda", 1))
        with assigned_device("cuda:0", 1) as chosen:  # the user's choice, shared or not
            assert chosen == torch.device("cuda", 0)
    with assigned_device("auto", 1) as again:  # released when the run ended
        assert again == torch.device("cuda", 0)
    assert sorted(p.name for p in tmp_path.glob("*.lock"))[:2] == [
        "GPU-a.slot0.lock",
        "GPU-b.slot0.lock",
    ]


def test_a_gpu_index_past_the_visible_ones_is_one_line(four_gpus):
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(FlowersSweepError, match=r"cuda:7.*sees 4 GPU\(s\): cuda:0 to cuda:3"):
        resolve_device("cuda:7")


def test_a_job_given_no_gpu_on_a_gpu_machine_says_so(monkeypatch, caplog):
    """submitit_local with Hydra's default gpus_per_node: null hides every GPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_slots.Path, "is_dir", lambda self: str(self).startswith("/proc/dri"))
    with caplog.at_level(logging.WARNING), assigned_device("auto", 1) as device:
        assert device == torch.device("cpu")
    (line,) = caplog.messages
    assert "given no GPU (CUDA_VISIBLE_DEVICES='')" in line and "gpus_per_node" in line
    caplog.clear()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # a machine without GPUs: nothing to say
    with caplog.at_level(logging.WARNING), assigned_device("auto", 1):
        assert not caplog.messages


# --- torch.compile: one graph for training, one for evaluation -----------------------------


class Batches:
    """A BatchSource of fixed tensors: 2 full training batches and a short last one."""

    def __init__(self, sizes, classes=3):
        g = torch.Generator().manual_seed(0)
        self.batches = [(torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % classes)
                        for n in sizes]  # fmt: skip
        self.num_samples, self.batch_size = sum(sizes), sizes[0]

    def __len__(self):
        return len(self.batches)

    def __call__(self, gen=None):
        return iter(self.batches)


def test_compiled_training_and_evaluation_compile_once_each():
    """Without the batch dimension marked, the short last batch and evaluation's batch
    size each compile another graph (3-4 a run), and a process running several jobs
    reaches torch._dynamo's recompile limit, past which it silently runs eager."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cpu = torch.device("cpu")
    run = RunState(model, optimizer, None, None, cpu, step_model=compiled)
    for _ in range(2):  # two epochs
        train_one_epoch(run, Batches([16, 16, 5]))
        eval_one_epoch(run, Batches([32, 7]))
    assert counter.frame_count == 2  # training mode and evaluation mode
    eager = eval_one_epoch(RunState(model, optimizer, None, None, cpu), Batches([32, 7]))
    padded_loss, padded_acc = eval_one_epoch(run, Batches([32, 7]))
    assert padded_acc == eager[1]  # the padding images are left out of both sums
    # the 7 images in a batch of 32: a conv may reorder its fp32 sums (fan-in 27)
    assert padded_loss == pytest.approx(eager[0], rel=4 * 27 * 2**-24)
