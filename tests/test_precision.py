"""bf16 autocast and channels_last: correct results on the CPU (speed is benchmarked)."""

import json
from contextlib import nullcontext

import pytest
import torch

from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.data.splits import Split
from flowers_sweep.data.synthetic import generate_split
from flowers_sweep.models import ResNet
from flowers_sweep.trainer.hardware import autocast
from flowers_sweep.trainer.loop import eval_one_epoch, train_one_epoch
from flowers_sweep.trainer.runstate import RunState

from .helpers.cli import TINY, run_cli

CPU = torch.device("cpu")
MEAN, STD = [0.49, 0.48, 0.45], [0.2, 0.2, 0.2]


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


@pytest.mark.parametrize(("precision", "expected"), [("32", "32")])  # bf16: auto, where native
def test_cli_records_the_precision(tmp_path, cache_dir, precision, expected):
    run_dir = tmp_path / "run"
    proc = run_cli(
        *TINY, f"trainer.precision={precision}", "trainer.channels_last=true",
        f"hydra.run.dir={run_dir}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["precision"] == expected
    assert "channels_last" in (run_dir / "flowers_sweep.log").read_text()
