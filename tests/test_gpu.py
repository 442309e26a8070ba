"""What only a GPU can show: no hidden host syncs, resumes on CUDA, bf16 choice.

Marked `gpu`: collected everywhere, skipped without CUDA (`pytest -m gpu` runs only
these; `bash benchmarks/gpu_check.sh` runs them with the GPU benchmarks).
"""

import pytest
import torch

from flowers_sweep.data.augment import BatchAugment, rotate_by
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.data.splits import Split
from flowers_sweep.data.synthetic import generate_split
from flowers_sweep.errors import DivergedError
from flowers_sweep.models import ResNet
from flowers_sweep.trainer.checkpoint import Progress, TrainState, load_checkpoint, save_checkpoint
from flowers_sweep.trainer.hardware import (
    autocast,
    grad_scaler,
    native_bf16,
    resolve_precision,
)
from flowers_sweep.trainer.loop import FiniteCheck, train_one_epoch
from flowers_sweep.trainer.runstate import RunState, seed_everything

from .helpers.state import ProcessState

pytestmark = pytest.mark.gpu
MEAN, STD = [0.49, 0.48, 0.45], [0.2, 0.2, 0.2]


@pytest.fixture()
def cuda():
    return torch.device("cuda")


@pytest.fixture()
def seeded_like_a_run():
    """seed_everything(0, deterministic=True), as a run starts: it sets process-wide state
    (deterministic kernels, CUBLAS_WORKSPACE_CONFIG, the NaN fill, cuDNN's autotuner),
    put back after the test for the tests that follow."""
    before = ProcessState.capture()
    seed_everything(0, deterministic=True)
    yield
    before.restore()


def device_split(device, n=160, size=32, squashed=False):
    """squashed: as a Flowers102 cache, with each image's original size (on the host)."""
    images, labels = generate_split(n, 4, size, seed=0, split="train")
    sizes = torch.tensor([[667, 500], [500, 667]]).repeat(n // 2, 1) if squashed else None
    return Split(torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device), sizes)


def model_and_optimizer(device):
    torch.manual_seed(0)
    model = ResNet("basic", [1, 1, 1, 1], 4).to(device, memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def pass_without_sync(run, batches):
    """A warm-up pass (cuDNN, allocator), then a pass under sync debug mode "error":
    any blocking copy or read raises."""
    train_one_epoch(run, batches, "warm-up")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        return train_one_epoch(run, batches, "t")
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("squashed", [False, True], ids=["synthetic", "flowers102-cache"])
def test_a_training_pass_makes_no_host_sync(cuda, squashed, seeded_like_a_run):
    """The real path: shuffle, index, flip, rotate (the squash-conjugated warp for a
    Flowers102 cache), normalise, forward, backward, step, NaN watch, loss and accuracy
    sums. Any blocking copy or read raises here."""
    aug = BatchAugment(MEAN, STD, 0.5, 10, memory_format=torch.channels_last)
    batches = TensorBatches(device_split(cuda, squashed=squashed), 32, cuda, aug.train_view)
    model, optimizer = model_and_optimizer(cuda)
    cast = autocast(cuda, resolve_precision("auto", cuda))
    gen = torch.Generator().manual_seed(0)
    run = RunState(model, optimizer, None, gen, cuda, cast=cast)
    tally = pass_without_sync(run, batches)
    loss_sum, correct, seen = tally.loss_sum, tally.correct, tally.seen
    assert seen == 160 and torch.isfinite(loss_sum).item() and 0 <= correct.item() <= seen


def test_the_nan_watch_stops_a_gpu_run_within_a_few_batches(cuda):
    watch = FiniteCheck(cuda)
    with pytest.raises(DivergedError, match="batch 1"):
        watch(torch.tensor(float("nan"), device=cuda), "batch 1")
        torch.cuda.synchronize()
        for i in range(2, 5):
            watch(torch.tensor(1.0, device=cuda), f"batch {i}")


def test_checkpoint_round_trip_on_cuda(cuda, tmp_path):
    model, optimizer = model_and_optimizer(cuda)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1], 0.5)
    x = torch.randn(4, 3, 32, 32, device=cuda).to(memory_format=torch.channels_last)
    model(x).sum().backward()
    optimizer.step()
    gen = torch.Generator().manual_seed(3)
    cuda_state = torch.cuda.get_rng_state(cuda)
    saved = TrainState(model, optimizer, scheduler, gen, cuda, Progress(epoch=2))
    save_checkpoint(tmp_path / "c.pt", saved)
    torch.cuda.manual_seed(123)
    fresh, fresh_opt = model_and_optimizer(cuda)
    fresh_sched = torch.optim.lr_scheduler.MultiStepLR(fresh_opt, [1], 0.5)
    resumed = TrainState(fresh, fresh_opt, fresh_sched, gen, cuda)
    load_checkpoint(tmp_path / "c.pt", resumed)
    assert resumed.progress.epoch == 2
    assert torch.equal(torch.cuda.get_rng_state(cuda), cuda_state)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert b.device.type == "cuda" and torch.equal(a, b)
    state = fresh_opt.state_dict()["state"][0]["exp_avg"]
    assert state.device.type == "cuda"


def test_fp16_with_a_fused_optimizer_trains_without_a_host_sync(cuda, seeded_like_a_run):
    """trainer.precision=fp16: autocast plus GradScaler. With a fused Adam the scaler
    leaves the inf check to the optimizer's kernel, so the pass still reads nothing."""
    aug = BatchAugment(MEAN, STD, 0.5, 10, memory_format=torch.channels_last)
    batches = TensorBatches(device_split(cuda), 32, cuda, aug.train_view)
    model, _ = model_and_optimizer(cuda)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(0)
    run = RunState(model, optimizer, None, gen, cuda, cast=autocast(cuda, torch.float16))
    run.scaler = grad_scaler(cuda, torch.float16)
    tally = pass_without_sync(run, batches)
    assert torch.isfinite(tally.loss_sum).item() and run.scaler.get_scale() > 0


def test_auto_bf16_follows_the_gpus_capability(cuda):
    major, _ = torch.cuda.get_device_capability(cuda)
    assert native_bf16(cuda) == (major >= 8)


def test_rotation_on_the_gpu_matches_the_cpu(cuda):
    batch = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    angles = torch.linspace(-10, 10, 8)
    on_gpu = rotate_by(batch.to(cuda), angles).cpu()
    agree = (on_gpu == rotate_by(batch, angles)).float().mean().item()
    assert agree > 0.99  # rounding ties of cos/sin may differ in the last bit


def test_the_squash_conjugated_warp_on_the_gpu_matches_the_cpu(cuda):
    from flowers_sweep.data.augment import apply_geometry

    batch = torch.randint(0, 255, (8, 3, 64, 64), dtype=torch.uint8)
    flips, angles = torch.arange(8) % 2 == 0, torch.linspace(-10, 10, 8)
    sizes = torch.tensor([[667, 500], [500, 667]]).repeat(4, 1)
    on_gpu = apply_geometry(batch.to(cuda), flips, angles, sizes).cpu()
    assert torch.allclose(on_gpu, apply_geometry(batch, flips, angles, sizes), atol=0.05)


def test_the_nan_watch_waits_for_the_stream_that_computed_the_loss(cuda):
    """One GPU catches a watch that waits on the wrong stream (as one on GPU 0's stream did
    for a run on cuda:1): the NaN is written on a side stream behind a long kernel while
    the current stream is idle, so a copy or event on the current stream reads the
    buffer's old, finite value, and batch 1's NaN is never seen."""
    side = torch.cuda.Stream(cuda)
    loss = torch.ones((), device=cuda)
    torch.cuda.synchronize()
    watch = FiniteCheck(cuda, stream=side)
    with torch.cuda.stream(side):
        torch.cuda._sleep(1_000_000_000)  # about half a second of GPU clock cycles
        loss.fill_(float("nan"))
    watch(loss, "batch 1")  # called with the default stream current
    torch.cuda.synchronize()
    with pytest.raises(DivergedError, match="batch 1"):
        watch(torch.ones((), device=cuda), "batch 2")
