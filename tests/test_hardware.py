"""Device choices and the host-to-device traffic of the GPU path, checked on the CPU."""

import os

import pytest
import torch

from flowers_sweep.data import augment, decode_workers, loaders
from flowers_sweep.data.augment import BatchAugment, rotate, vertical_flip
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.data.splits import Split
from flowers_sweep.trainer.hardware import native_bf16, resolve_precision, to_device

CPU = torch.device("cpu")


@pytest.fixture()
def two_gpus(monkeypatch):
    """cuda:0 a V100 (7.0: bf16 only emulated), cuda:1 an A100 (8.0: native)."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: [(7, 0), (8, 0)][d.index])
    # PyTorch's own answer counts emulation, and is about the current GPU: both say yes.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def test_auto_precision_picks_fp16_on_gpus_that_only_emulate_bf16(two_gpus):
    v100, a100 = torch.device("cuda", 0), torch.device("cuda", 1)
    assert not native_bf16(v100)
    assert resolve_precision("auto", v100) is torch.float16  # with a gradient scaler
    assert native_bf16(a100)
    assert resolve_precision("auto", a100) is torch.bfloat16
    assert resolve_precision("bf16", v100) is torch.bfloat16  # asked for: given


def test_decode_threads_follow_the_cpus_this_job_was_given(monkeypatch):
    """On a 64-core node where SLURM gave the job 3 CPUs, 3 threads, not 64."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert decode_workers("auto") == 3
    assert decode_workers(5) == 5


def test_to_device_is_a_plain_move_off_cuda():
    t = torch.arange(4)
    assert to_device(t, CPU) is t


def counting(monkeypatch, module):
    calls = []

    def spy(tensor, device):
        calls.append(tuple(tensor.shape))
        return to_device(tensor, device)

    monkeypatch.setattr(module, "to_device", spy)
    return calls


def test_the_batch_order_crosses_to_the_device_once_a_pass(monkeypatch):
    """A copy per batch from pageable memory would stall a GPU at every batch."""
    calls = counting(monkeypatch, loaders)
    split = Split(torch.zeros(50, 3, 8, 8, dtype=torch.uint8), torch.arange(50))
    batches = TensorBatches(split, 8, CPU, lambda x, gen, sizes: x)
    assert len(list(batches(torch.Generator().manual_seed(0)))) == 7
    assert calls == [(50,)]


def test_device_augmentation_queues_its_random_draws(monkeypatch):
    calls = counting(monkeypatch, augment)
    batch = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    rotate(vertical_flip(batch, 0.5, gen), 10, gen)
    assert calls == [(6,), (6,)]  # the flip mask, the angles: nothing else per batch


def test_the_squash_conjugated_warp_queues_one_small_tensor_a_batch(monkeypatch):
    """Each image's map is built on the host from its flip, angle and original size, and
    crosses to the device as one (n, 2, 2) tensor; the sampling grid is built there."""
    calls = counting(monkeypatch, augment)
    batch = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    sizes = torch.tensor([[667, 500]] * 6)
    augment.apply_geometry(batch, torch.zeros(6, dtype=torch.bool), torch.ones(6), sizes)
    assert calls == [(6, 2, 2)]


def test_normalisation_constants_are_built_once_per_device(monkeypatch):
    built = []
    real = augment.channel_affine
    monkeypatch.setattr(augment, "channel_affine", lambda *a: built.append(a) or real(*a))
    aug = BatchAugment([0.5] * 3, [0.25] * 3)
    batch = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    first = aug.eval_view(batch)
    for _ in range(5):
        assert torch.equal(aug.eval_view(batch), first)
    assert len(built) == 1
