"""bf16 autocast and channels_last: correct results on the CPU (speed is benchmarked)."""

import json

import pytest
import torch

from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.data.splits import Split
from flowers_sweep.data.synthetic import generate_split
from flowers_sweep.hardware import (
    autocast,
)
from flowers_sweep.models import ResNet
from flowers_sweep.train import evaluate, train_epoch

from .conftest import TINY, run_cli

CPU = torch.device("cpu")
MEAN, STD = [0.49, 0.48, 0.45], [0.2, 0.2, 0.2]


def tiny_split(n=96):
    images, labels = generate_split(n, 4, 32, seed=0, split="train")
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def losses(dtype, layout, epochs=4):
    torch.manual_seed(0)
    model = ResNet("basic", [1, 1, 1, 1], 4).to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    aug = BatchAugment(MEAN, STD, memory_format=layout)
    batches = TensorBatches(tiny_split(), 32, CPU, aug.train_view)
    gen = torch.Generator().manual_seed(0)
    cast = autocast(CPU, dtype)
    return [train_epoch(model, opt, batches, gen, CPU, "t", cast)[0] for _ in range(epochs)]


def test_bf16_loss_tracks_fp32():
    fp32 = losses(None, torch.contiguous_format)
    bf16 = losses(torch.bfloat16, torch.contiguous_format)
    assert fp32[-1] < fp32[0] / 10  # it learns at all
    assert bf16[0] == pytest.approx(fp32[0], rel=0.02)
    for a, b in zip(fp32, bf16, strict=True):  # then within 0.05 nats all the way down
        assert abs(a - b) < 0.05


def test_channels_last_gives_the_same_training():
    nchw = losses(None, torch.contiguous_format, epochs=2)
    nhwc = losses(None, torch.channels_last, epochs=2)
    # Other kernels sum in another order; training amplifies the rounding a little.
    assert nhwc[0] == pytest.approx(nchw[0], rel=0.01)
    assert nhwc == pytest.approx(nchw, rel=0.05)


def test_channels_last_batches_reach_the_model_in_that_layout():
    aug = BatchAugment(MEAN, STD, vflip_p=0.5, rotation=10, memory_format=torch.channels_last)
    x, _ = next(iter(TensorBatches(tiny_split(), 8, CPU, aug.train_view)(torch.Generator())))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.dtype == torch.float32


def test_eval_under_bf16_matches_fp32_closely():
    torch.manual_seed(0)
    model = ResNet("basic", [1, 1, 1, 1], 4)
    batches = TensorBatches(tiny_split(64), 32, CPU, BatchAugment(MEAN, STD).eval_view)
    loss32, _ = evaluate(model, batches, CPU)
    loss16, _ = evaluate(model, batches, CPU, autocast(CPU, torch.bfloat16))
    assert loss16 == pytest.approx(loss32, rel=0.05)


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
