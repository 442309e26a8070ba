"""bf16 and fp16 autocast, fp16's gradient scaler, and channels_last: correct results on
the CPU (speed is benchmarked)."""

import json
from contextlib import nullcontext

import pytest
import torch

from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.data.splits import Split
from flowers_sweep.data.synthetic import generate_split
from flowers_sweep.models import ResNet
from flowers_sweep.trainer import hardware
from flowers_sweep.trainer.checkpoint import load_checkpoint, save_checkpoint
from flowers_sweep.trainer.hardware import autocast, grad_scaler, resolve_precision
from flowers_sweep.trainer.loop import Stepper, eval_one_epoch, train_one_epoch
from flowers_sweep.trainer.runstate import RunState

from .helpers.cli import SHARED_RUN

CPU = torch.device("cpu")
MEAN, STD = [0.49, 0.48, 0.45], [0.2, 0.2, 0.2]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the CLI tests' runs (helpers/cli.TINY): the same sums
    whatever else runs, and no threads spinning for a core another test holds."""
    kept = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(kept)


def tiny_split(n=96):
    images, labels = generate_split(n, 4, 32, seed=0, split="train")
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def run_state(model, cast=nullcontext, optimizer=None, gen=None) -> RunState:
    """A run's state on the CPU, built by hand around `model` (no schedule)."""
    return RunState(model, optimizer, None, gen, CPU, cast=cast)


def losses(dtype, layout, epochs=4):
    torch.manual_seed(0)
    model = ResNet("basic", [1, 1, 1, 1], 4).to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    aug = BatchAugment(MEAN, STD, memory_format=layout)
    batches = TensorBatches(tiny_split(), 32, CPU, aug.train_view)
    gen = torch.Generator().manual_seed(0)
    run = run_state(model, autocast(CPU, dtype), opt, gen)
    return [train_one_epoch(run, batches, "t").means()[0] for _ in range(epochs)]


# Unit roundoffs (half an ulp at 1.0): bf16 keeps 8 significant bits, fp32 24.
U_BF16, U_FP32 = 2.0**-8, 2.0**-24


def weighted_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def bf16_bound(model: torch.nn.Module) -> float:
    """Relative error of a bf16-autocast forward pass, to first order: autocast rounds
    each conv/linear layer's input and weight to bf16 (each at most U_BF16 relative,
    so 2 * U_BF16 per layer, accumulation staying fp32), and the errors of the L such
    layers add up; batch norm keeps activations near unit scale, so nothing amplifies
    them (Higham, Accuracy and Stability of Numerical Algorithms, 2002, ch. 3)."""
    return len(weighted_layers(model)) * 2 * U_BF16


def reorder_bound(model: torch.nn.Module) -> float:
    """Relative error between two fp32 forward passes that sum in different orders
    (NCHW and channels_last kernels): at most fan_in * U_FP32 per layer for a dot
    product of fan_in terms (Higham, ch. 3), over the L layers, times two (both sides)."""
    layers = weighted_layers(model)
    fan_in = max(m.weight[0].numel() for m in layers)
    return 2 * len(layers) * fan_in * U_FP32


def init_loss(dtype, layout) -> tuple[float, torch.nn.Module]:
    """The loss of one forward pass at initialisation, in training mode (batch stats)."""
    torch.manual_seed(0)
    model = ResNet("basic", [1, 1, 1, 1], 4).to(memory_format=layout)
    aug = BatchAugment(MEAN, STD, memory_format=layout)
    x, y = next(iter(TensorBatches(tiny_split(), 32, CPU, aug.eval_view)()))
    with torch.no_grad(), autocast(CPU, dtype)():
        loss = torch.nn.functional.cross_entropy(model(x).float(), y)
    return float(loss), model


def test_bf16_forward_is_within_bf16_rounding_of_fp32():
    fp32, model = init_loss(None, torch.contiguous_format)
    bf16, _ = init_loss(torch.bfloat16, torch.contiguous_format)
    assert bf16 == pytest.approx(fp32, rel=bf16_bound(model))


def test_bf16_training_learns_as_fp32_does():
    # Training amplifies rounding differences without bound (the trajectories part
    # after a few steps), so what is compared is the outcome: both learn the task.
    for dtype in (None, torch.bfloat16):
        curve = losses(dtype, torch.contiguous_format, epochs=3)
        assert curve[-1] < curve[0] / 4, (dtype, curve)


def test_channels_last_gives_the_same_forward_pass():
    nchw, model = init_loss(None, torch.contiguous_format)
    nhwc, _ = init_loss(None, torch.channels_last)
    assert nhwc == pytest.approx(nchw, rel=reorder_bound(model))


def test_channels_last_batches_reach_the_model_in_that_layout():
    aug = BatchAugment(MEAN, STD, vflip_p=0.5, rotation=10, memory_format=torch.channels_last)
    x, _ = next(iter(TensorBatches(tiny_split(), 8, CPU, aug.train_view)(torch.Generator())))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.dtype == torch.float32


def test_eval_under_bf16_matches_fp32_closely():
    torch.manual_seed(0)
    model = ResNet("basic", [1, 1, 1, 1], 4)
    batches = TensorBatches(tiny_split(64), 32, CPU, BatchAugment(MEAN, STD).eval_view)
    loss32, _ = eval_one_epoch(run_state(model), batches)
    loss16, _ = eval_one_epoch(run_state(model, autocast(CPU, torch.bfloat16)), batches)
    assert loss16 == pytest.approx(loss32, rel=bf16_bound(model))


@pytest.mark.e2e
def test_cli_records_the_precision(shared_run):
    """The real command line, precision=32 and channels_last on (conftest's shared_run;
    bf16 is `auto`'s where native, picked by the test below)."""
    assert "trainer.precision=32" in SHARED_RUN and "trainer.channels_last=true" in SHARED_RUN
    result = json.loads((shared_run / "result.json").read_text())
    assert result["status"] == "completed" and result["precision"] == "32"
    assert "(fp32, channels_last" in (shared_run / "flowers_sweep.log").read_text()


@pytest.mark.parametrize(
    ("setting", "device", "native", "expected"),
    [
        ("32", "cpu", True, None),
        ("bf16", "cpu", False, torch.bfloat16),
        ("fp16", "cpu", True, torch.float16),
        ("auto", "cpu", True, torch.bfloat16),
        ("auto", "cpu", False, None),  # emulated bf16 is slower than fp32
        ("auto", "cuda", True, torch.bfloat16),  # Ampere and later
        ("auto", "cuda", False, torch.float16),  # V100, T4: fp16 tensor cores, no bf16
        ("auto", "mps", False, None),
    ],
)
def test_precision_auto_picks_the_native_half_format(
    monkeypatch, setting, device, native, expected
):
    monkeypatch.setattr(hardware, "native_bf16", lambda _: native)
    assert resolve_precision(setting, torch.device(device)) is expected


def test_only_fp16_gets_a_gradient_scaler():
    assert grad_scaler(CPU, None) is None and grad_scaler(CPU, torch.bfloat16) is None
    assert isinstance(grad_scaler(CPU, torch.float16), torch.amp.GradScaler)


def scaled_run(scaler, clip=None, every=1):
    """A linear model's run with plain SGD, `scaler` and the trainer keys given."""
    torch.manual_seed(3)
    model = torch.nn.Linear(6, 3)
    run = run_state(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    run.scaler = scaler
    run.cfg = None
    return run, Stepper(run, every, clip)


def steps(run, stepper, n=3):
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        stepper.backward(torch.nn.functional.cross_entropy(run.model(x), y), 8, 8)
    stepper.finish()
    return [p.detach().clone() for p in run.model.parameters()]


@pytest.mark.parametrize("clip", [None, 0.05])
def test_the_scaler_steps_exactly_as_plain_fp32(clip):
    # The scale is a power of two (2**16), so scaling the loss and dividing the gradients
    # back are exact in fp32 while nothing overflows or underflows: the weights after a
    # scaled step (clipped on the unscaled gradients) equal the plain step's bit for bit.
    plain = steps(*scaled_run(None, clip))
    scaled = steps(*scaled_run(torch.amp.GradScaler("cpu"), clip))
    for a, b in zip(plain, scaled, strict=True):
        assert torch.equal(a, b)


def test_an_overflowed_step_is_skipped_and_the_scale_halved():
    run, stepper = scaled_run(torch.amp.GradScaler("cpu", init_scale=2.0**16))
    before = [p.detach().clone() for p in run.model.parameters()]
    x = torch.full((8, 6), float("inf"))  # gradients of inf and NaN: an overflow
    loss = run.model(x).sum() * 0
    stepper.backward(loss, 8, 8)
    for a, b in zip(before, run.model.parameters(), strict=True):
        assert torch.equal(a, b.detach())
    assert run.scaler.get_scale() == 2.0**15


def test_the_scaler_state_is_in_the_checkpoint(tmp_path):
    run, stepper = scaled_run(torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1))
    run.scheduler = torch.optim.lr_scheduler.StepLR(run.optimizer, 1)
    run.gen = torch.Generator()
    steps(run, stepper, n=2)  # two good steps: the scale has grown twice
    save_checkpoint(tmp_path / "c.pt", run)
    fresh, _ = scaled_run(torch.amp.GradScaler("cpu"))
    fresh.scheduler = torch.optim.lr_scheduler.StepLR(fresh.optimizer, 1)
    fresh.gen = torch.Generator()
    load_checkpoint(tmp_path / "c.pt", fresh)
    assert run.scaler.get_scale() == 2.0**12
    assert fresh.scaler.state_dict() == run.scaler.state_dict()
