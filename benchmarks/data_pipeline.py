"""The report's per-image data pipeline against ours, over the same Flowers102 images.

The report decodes and resizes every full-size JPEG every epoch, one image at a time.
We decode and resize once into a uint8 cache, then augment and normalise whole batches.
Both are timed in one process, alternating, on the training split's first N images
(224 px output, the report's augmentation), and the script ends with `ratio: X`, our
steady-state epoch throughput over the report's.

    python benchmarks/data_pipeline.py --root DIR [--limit N]
    python benchmarks/data_pipeline.py --root /tmp/fake --generate 300   # no dataset

`--generate N` first writes 3N synthetic full-size JPEGs (667x500), N a split, in
Flowers102's layout with label and split files of its own.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from flowers_sweep.data import flowers102 as fl
from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.data.splits import Split

REPO = Path(__file__).resolve().parent.parent


def dataset_cfg(root: Path, verify: bool, size: int):
    cfg = OmegaConf.load(REPO / "conf" / "dataset" / "flowers102.yaml")
    cfg.root, cfg.verify_checksums, cfg.image_size = str(root), verify, size
    return cfg


def report_epoch(dataset, n: int) -> float:
    """The report's way: every image decoded, augmented, normalised, resized, each epoch."""
    start = time.perf_counter()
    for i in range(n):
        dataset[i]
    return n / (time.perf_counter() - start)


def our_epoch(batches: TensorBatches, gen: torch.Generator) -> float:
    start = time.perf_counter()
    seen = 0
    for x, _ in batches(gen):
        seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding flowers-102/")
    parser.add_argument("--limit", type=int, default=300, help="images to time (default 300)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternating timings of each")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the md5 checks of the label and split files"
    )
    parser.add_argument(
        "--generate",
        type=int,
        default=0,
        metavar="N",
        help="first write a tree of N synthetic full-size JPEGs a split",
    )
    args = parser.parse_args()  # fmt: skip

    if args.generate:
        from flowers_sweep.data.fake_flowers102 import write_tree

        write_tree(args.root, per_split=args.generate, size=224, upscale_to=(667, 500))
    cfg = dataset_cfg(args.root, not (args.no_verify or args.generate), args.size)
    augment_cfg = OmegaConf.load(REPO / "conf" / "augment" / "report.yaml")
    role = "train"
    reference = fl.open_split(
        cfg, cfg.splits[role], transform=fl.reference_transform(cfg, augment_cfg, train=True)
    )
    n = min(args.limit, len(reference))
    files = [Path(f) for f in reference._image_files[:n]]
    kb = sum(f.stat().st_size for f in files) / n / 1024
    print(f"images: {n} from split {cfg.splits[role]!r}, mean JPEG {kb:.0f} KB, "
          f"output {args.size} px, torch threads {torch.get_num_threads()}")  # fmt: skip

    workers = os.cpu_count() or 1
    start = time.perf_counter()
    images = fl.decode_all(files, args.size, workers)
    cache_s = time.perf_counter() - start
    print(f"ours, one-time cache: {cache_s:.2f} s ({n / cache_s:.0f} img/s, {workers} threads)")
    split = Split(images, torch.tensor(reference._labels[:n]))
    aug = BatchAugment(cfg.mean, cfg.std, augment_cfg.vflip_p, augment_cfg.rotation)
    batches = TensorBatches(split, args.batch_size, torch.device("cpu"), aug.train_view)
    gen = torch.Generator().manual_seed(0)

    best_ref = best_ours = 0.0
    for _ in range(args.rounds):
        best_ref = max(best_ref, report_epoch(reference, n))
        best_ours = max(best_ours, our_epoch(batches, gen))
    print(f"report's per-image pipeline: {best_ref:.0f} img/s")
    print(f"ours, cached + batched:      {best_ours:.0f} img/s")
    print(f"ratio: {best_ours / best_ref:.1f}")


if __name__ == "__main__":
    main()
