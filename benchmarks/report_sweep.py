"""How long would the report's full sweep take here? Measured, then extrapolated.

    python benchmarks/report_sweep.py [--batches 3] [overrides ...]

Composes `experiment=report` for each of the report's four cases (ResNet-18 with ReLU,
Sigmoid, LeakyReLU; the baseline CNN), times a few real training and evaluation batches
of each through the framework's own loop on this device (224 px, the preset's batch
size, precision and layout; random pixels stand in for Flowers102, whose cached
pipeline is not the bottleneck, see data_pipeline.py), and multiplies out to 100 epochs
of 6,149 training and 1,020 validation images plus one test pass. Extra Hydra overrides
(e.g. trainer.precision=32) apply to every case.
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_module

from flowers_sweep.config import CONFIG_MODULE
from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.data.splits import Split
from flowers_sweep.hardware import (
    autocast,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
)
from flowers_sweep.models import build_model
from flowers_sweep.optim import build_optimizer
from flowers_sweep.train import evaluate, train_epoch

CASES = ("relu", "sigmoid", "leaky_relu", "baseline_cnn")
SIZES = {"train": 6149, "val": 1020, "test": 1020}  # the report's swapped split


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(fn, n: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return n / (time.perf_counter() - start)


def measure(cfg, batches: int) -> tuple[float, float, str]:
    """(train img/s, eval img/s, description) for one composed case."""
    t, d = cfg.trainer, cfg.dataset
    device = resolve_device(t.device)
    layout = torch.channels_last if resolve_channels_last(t.channels_last, cfg.model.arch) else (
        torch.contiguous_format)  # fmt: skip
    dtype = resolve_precision(t.precision, device)
    cast = autocast(device, dtype)
    torch.manual_seed(0)
    model = build_model(cfg.model, d.num_classes, d.image_size).to(device, memory_format=layout)
    if t.compile:
        model = torch.compile(model)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    n = t.batch_size * batches
    images = torch.randint(0, 256, (n, 3, d.image_size, d.image_size), dtype=torch.uint8)
    split = Split(images.to(device), torch.randint(0, d.num_classes, (n,)).to(device))
    a = cfg.augment
    aug = BatchAugment(d.mean, d.std, a.vflip_p, a.rotation, a.grayscale, layout)
    train = TensorBatches(split, t.batch_size, device, aug.train_view)
    val = TensorBatches(split, 2 * t.batch_size, device, aug.eval_view)
    gen = torch.Generator().manual_seed(0)
    warm = TensorBatches(Split(split.images[: t.batch_size], split.labels[: t.batch_size]),
                         t.batch_size, device, aug.train_view)  # fmt: skip
    train_epoch(model, optimizer, warm, gen, device, "warm-up", cast)
    evaluate(model, warm, device, cast)
    train_ips = throughput(lambda: train_epoch(model, optimizer, train, gen, device, "t", cast),
                           n, device)  # fmt: skip
    eval_ips = throughput(lambda: evaluate(model, val, device, cast), n, device)
    what = f"{device}, {dtype or 'fp32'}, {'NHWC' if layout == torch.channels_last else 'NCHW'}"
    return train_ips, eval_ips, what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=3, help="timed batches per case")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every case")
    args = parser.parse_args()
    total = 0.0
    for case in CASES:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose("config", ["experiment=report", f"case={case}", *args.overrides])
        train_ips, eval_ips, what = measure(cfg, args.batches)
        epochs = cfg.trainer.epochs
        seconds = epochs * (SIZES["train"] / train_ips + SIZES["val"] / eval_ips)
        seconds += SIZES["test"] / eval_ips
        total += seconds
        print(f"{case:>12}: train {train_ips:8.1f} img/s, eval {eval_ips:8.1f} img/s "
              f"({what}, batch {cfg.trainer.batch_size}) -> {epochs} epochs "
              f"~{seconds / 60:.1f} min")  # fmt: skip
    print(f"estimated wall time of the report's four-case sweep here: {total / 60:.1f} min "
          f"({total / 3600:.2f} h), plus a one-time Flowers102 cache build")  # fmt: skip


if __name__ == "__main__":
    main()
