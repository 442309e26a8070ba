"""The batched augmentation's cost with a per-image policy on, against the same pipeline
without it, in one run.

The training view of augment=imagenet_style (RandomResizedCrop + hflip in one warp, then
normalisation) is the baseline; trivial_augment and rand_augment add the policy (its
geometric ops in the same warp, its colour ops after it), and `+ erasing` adds random
erasing (p=1: every image erased, the worst case) to trivial_augment. The cases are
timed alternating, round after round, and the median seconds per batch compared. Ends
with `ratio: X`, trivial_augment's time over the baseline's (the target is <= 1.5;
rand_augment, two ops an image, is printed above it).

    python benchmarks/augment_policy.py                    # CPU, 64 images of 224 px
    python benchmarks/augment_policy.py --threads 1        # a CPU shared with other jobs
    python benchmarks/augment_policy.py --device cuda --batch 256
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from benchlib import device_name, photo_split, timed, write_json
from omegaconf import OmegaConf

from flowers_sweep.data.augment import BatchAugment

REPO = Path(__file__).resolve().parent.parent
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's (torchvision)


def cases() -> dict[str, BatchAugment]:
    """Name -> the pipeline, from the shipped presets."""
    out = {}
    for name in ("imagenet_style", "trivial_augment", "rand_augment"):
        cfg = OmegaConf.load(REPO / "conf" / "augment" / f"{name}.yaml")
        out[name] = BatchAugment.from_config(cfg, MEAN, STD)
    erased = OmegaConf.load(REPO / "conf" / "augment" / "trivial_augment.yaml")
    erased.erase_p = 1.0
    out["trivial_augment + erasing"] = BatchAugment.from_config(erased, MEAN, STD)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    split = photo_split(args.batch, args.size, 10, device)
    pipelines = cases()
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    gen = torch.Generator().manual_seed(0)
    for aug in pipelines.values():  # warm-up: kernels, allocator, caches
        aug.train_view(split.images, gen)
    for _ in range(args.rounds):
        for name, aug in pipelines.items():
            times[name].append(timed(lambda a=aug: a.train_view(split.images, gen), device))
    base = statistics.median(times["imagenet_style"])
    print(f"device: {device_name(device)}, batch {args.batch} x 3 x {args.size}^2, "
          f"median of {args.rounds} rounds, alternating")  # fmt: skip
    figures = {}
    for name, t in times.items():
        med = statistics.median(t)
        figures[name] = {"s_per_batch": med, "ratio": med / base}
        print(f"{name:28s} {med * 1000:8.1f} ms/batch  {med / base:5.2f}x")
    print(f"ratio: {figures['trivial_augment']['ratio']:.2f}")
    write_json(args.json, {"device": device_name(device), "batch": args.batch,
                           "size": args.size, "cases": figures})  # fmt: skip


if __name__ == "__main__":
    main()
