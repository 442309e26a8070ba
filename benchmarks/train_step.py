"""Our training epoch against a bare hand-written PyTorch loop, side by side.

    python benchmarks/train_step.py [--image-size N] [--batch-size 32] [--batches 6]

Same model, batch size, precision and memory layout, data already in memory, seeded as a
run seeds (`seed_everything` with `trainer.deterministic` from the config, or
--deterministic). Both are set up as a run of `experiment=report case=relu` is (the
run's placement, model and optimizer; the options below override the config's). "Ours"
is the framework's real path: `train_one_epoch` over `TensorBatches` of a split that
keeps each photo's original size, as the Flowers102 cache does (shuffle, index, the
report's flip and rotation as the bicubic squash-conjugated warp, normalisation, loss
and accuracy kept on the device, NaN check). "Bare" is zero_grad, forward, loss,
backward, step over pre-normalised tensors, nothing else. Both warm up on two batches of
the timed size first. The two alternate for several rounds and the best of each is kept;
the script prints both throughputs, a bf16 against fp32 line for this device, and last
`ratio: X` (ours over bare: what the loop and its augmentation cost on top of the
model).

The default image size is the report's 224 px on a GPU and 112 px on a CPU, so that it
finishes within minutes on a laptop's cores. The bf16 comparison is left out, with a
line saying so, where bf16 would be emulated (a CPU without AVX512-BF16 or AMX, a GPU
before Ampere): emulated bf16 is many times slower than fp32 (2.6 against 42 img/s at
112 px, measured on a 2-core CPU without it), which is why `precision=auto` never picks
it, and timing it would take most of the run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from benchlib import bench_state, compose_case, photo_split, warm_split, write_json

from flowers_sweep.data import batch_augment
from flowers_sweep.data.augment import normalize
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.trainer.hardware import native_bf16, resolve_device, resolve_precision
from flowers_sweep.trainer.loop import train_one_epoch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_epoch(model, opt, x_all, y_all, bs, cast) -> None:
    model.train()
    for lo in range(0, len(y_all), bs):
        x, y = x_all[lo : lo + bs], y_all[lo : lo + bs]
        opt.zero_grad(set_to_none=True)
        with cast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()


def timed(fn, n_images, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return n_images / (time.perf_counter() - start)


def case_config(args, device, precision: str):
    """`experiment=report case=relu` (ResNet-18, 102 classes, Adam 0.001, the report's
    augmentation and normalisation) at this benchmark's size, batch, device, precision,
    layout and determinism."""
    return compose_case("relu", [
        f"dataset.image_size={args.image_size}", f"trainer.batch_size={args.batch_size}",
        f"trainer.device={device}", f"trainer.precision={precision}",
        f"trainer.channels_last={str(not args.no_channels_last).lower()}",
        f"trainer.deterministic={str(args.deterministic).lower()}", "trainer.compile=false",
    ])  # fmt: skip


def compare(args, device, dtype) -> tuple[float, float]:
    """Best images/s of (ours, bare) over alternating rounds."""
    cfg = case_config(args, device, "bf16" if dtype is torch.bfloat16 else "32")
    n = args.batch_size * args.batches
    ours = bench_state(cfg, device)  # seeded as a run: the same weights for ours and bare
    bare = bench_state(cfg, device)
    layout, cast = ours.placement.layout, ours.cast
    mean, std = cfg.dataset.mean, cfg.dataset.std
    split = photo_split(n, args.image_size, cfg.dataset.num_classes, device)  # the warp path
    aug = batch_augment(cfg, layout)
    batches = TensorBatches(split, args.batch_size, device, aug.train_view)
    x_all = normalize(split.images, mean, std, memory_format=layout)
    warm = warm_split(split, args.batch_size)  # two batches of the timed size: not timed
    bare_epoch(bare.model, bare.optimizer, normalize(warm.images, mean, std,
               memory_format=layout), warm.labels, args.batch_size, cast)  # fmt: skip
    train_one_epoch(ours, TensorBatches(warm, args.batch_size, device, aug.train_view),
                    "warm-up").means()  # fmt: skip
    best_ours = best_bare = 0.0
    for _ in range(args.rounds):
        best_bare = max(best_bare, timed(
            lambda: bare_epoch(bare.model, bare.optimizer, x_all, split.labels,
                               args.batch_size, cast), n, device))  # fmt: skip
        best_ours = max(best_ours, timed(
            lambda: train_one_epoch(ours, batches, "bench").means(), n, device))  # fmt: skip
    return best_ours, best_bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, help="default: 224 on a GPU, 112 on a CPU")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=6, help="batches per timed epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"])
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--deterministic", choices=["true", "false"],
                        help="default: trainer.deterministic of the composed config")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    if args.deterministic is None:
        args.deterministic = bool(compose_case("relu").trainer.deterministic)
    else:
        args.deterministic = args.deterministic == "true"

    device = resolve_device(args.device)
    if args.image_size is None:
        args.image_size = 112 if device.type == "cpu" else 224
    layout = torch.contiguous_format if args.no_channels_last else torch.channels_last
    dtype = resolve_precision(args.precision, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name}), torch threads {torch.get_num_threads()}, "
          f"ResNet-18 at {args.image_size} px, batch {args.batch_size}, "
          f"{'channels_last' if layout == torch.channels_last else 'NCHW'}, "
          f"deterministic={args.deterministic}")  # fmt: skip

    other = None if dtype is not None else torch.bfloat16
    if other is torch.bfloat16 and not native_bf16(device):
        other = "emulated"  # not timed: see the docstring
    label = {None: "fp32", torch.bfloat16: "bf16"}
    ours, bare = compare(args, device, dtype)
    other_ours = other_bare = None
    if other == "emulated":
        print(f"bf16 vs fp32: not timed, bf16 is emulated on this {device.type} (no native "
              f"bf16), many times slower than fp32; precision=auto keeps fp32 here")  # fmt: skip
    else:
        other_ours, other_bare = compare(args, device, other)
        print(f"{label[other]} for comparison: ours {other_ours:.1f} img/s, "
              f"bare {other_bare:.1f} img/s")  # fmt: skip
        print(f"bf16 vs fp32 (bare loop): {max(bare, other_bare) / min(bare, other_bare):.2f}x "
              f"{'faster' if (dtype is torch.bfloat16) == (bare >= other_bare) else 'slower'} "
              f"in bf16")  # fmt: skip
    print(f"{label[dtype]} (precision={args.precision}): bare loop {bare:.1f} img/s")
    print(f"{label[dtype]} (precision={args.precision}): ours      {ours:.1f} img/s")
    print(f"ratio: {ours / bare:.3f}")
    write_json(args.json, {
        "device": str(device), "image_size": args.image_size, "batch_size": args.batch_size,
        "precision": label[dtype], "deterministic": args.deterministic,
        "ours_img_s": round(ours, 2), "bare_img_s": round(bare, 2),
        "other_precision": label.get(other, other),
        "other_ours_img_s": None if other_ours is None else round(other_ours, 2),
        "other_bare_img_s": None if other_bare is None else round(other_bare, 2),
        "ratio": round(ours / bare, 4),
    })  # fmt: skip


if __name__ == "__main__":
    main()
