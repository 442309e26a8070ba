"""The report's per-image data pipeline against ours, over the same Flowers102 images.

The report decodes and resizes every full-size JPEG every epoch, one image at a time.
We decode and resize once into a uint8 cache, then augment (the report's flip and
rotation of the full-size photo, carried over to the cached square) and normalise whole
batches. All are timed in one run, alternating, on the training split's first N images
(224 px output): the report's pipeline single-process, and in a DataLoader with one
worker per core as it would be run; ours on the same cores. The script prints both
ratios and ends with `ratio: X`, ours over the report's single-process figure.

    python benchmarks/data_pipeline.py --root DIR [--limit N]
    python benchmarks/data_pipeline.py --root /tmp/fake --generate 300   # no dataset
    python benchmarks/data_pipeline.py --root DIR --device cuda   # ours on the GPU

`--generate N` first writes 3N synthetic full-size JPEGs (667x500), N a split, in
Flowers102's layout with label and split files of its own; a pool of 48 is drawn and
copied to the rest (the images' content does not change the timings). `--json FILE`
writes the figures.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
import time
from pathlib import Path

import torch
from benchlib import write_flowers_tree, write_json
from omegaconf import OmegaConf

from flowers_sweep.data import flowers102 as fl
from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.data.splits import Split
from flowers_sweep.trainer.hardware import available_cpus

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


def report_loader_epoch(dataset, n: int, workers: int, batch_size: int) -> float:
    """The report's pipeline as its training loop would run it: a DataLoader, a worker
    per core (worker start-up included, as in every epoch of the report's loop)."""
    subset = torch.utils.data.Subset(dataset, range(n))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    for _ in loader:
        pass
    return n / (time.perf_counter() - start)


def our_epoch(batches: TensorBatches, gen: torch.Generator) -> float:
    start = time.perf_counter()
    seen = 0
    for x, _ in batches(gen):
        seen += len(x)
    if batches.device.type == "cuda":
        torch.cuda.synchronize(batches.device)  # the queued work is part of the epoch
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        help="folder holding flowers-102/ (default: generated JPEGs, --generate 300)",
    )
    parser.add_argument("--limit", type=int, default=300, help="images to time (default 300)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="where ours augments (cpu, cuda)")
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
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()  # fmt: skip
    if args.root is None:  # no dataset given: generated JPEGs, removed at the end
        args.root = Path(tempfile.mkdtemp(prefix="flowers_sweep_bench-"))
        atexit.register(shutil.rmtree, args.root, ignore_errors=True)
        args.generate = args.generate or 300
        print(f"no --root: {args.generate} generated JPEGs a split in {args.root}")

    if args.generate:
        start = time.perf_counter()
        write_flowers_tree(args.root, per_split=args.generate, size=224, upscale_to=(667, 500))
        print(f"tree: {3 * args.generate} JPEGs in {time.perf_counter() - start:.1f} s")
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

    workers = available_cpus()
    start = time.perf_counter()
    images, sizes = fl.decode_all(files, args.size, workers)
    cache_s = time.perf_counter() - start
    print(f"ours, one-time cache: {cache_s:.2f} s ({n / cache_s:.0f} img/s, {workers} threads)")
    device = torch.device(args.device)
    split = Split(images.to(device), torch.tensor(reference._labels[:n]).to(device), sizes)
    aug = BatchAugment(cfg.mean, cfg.std, augment_cfg.vflip_p, augment_cfg.rotation)
    batches = TensorBatches(split, args.batch_size, device, aug.train_view)
    gen = torch.Generator().manual_seed(0)

    best_ref = best_loader = best_ours = 0.0
    for _ in range(args.rounds):
        best_ref = max(best_ref, report_epoch(reference, n))
        best_loader = max(best_loader, report_loader_epoch(reference, n, workers, args.batch_size))
        best_ours = max(best_ours, our_epoch(batches, gen))
    print(f"report's per-image pipeline, one process:   {best_ref:.0f} img/s")
    print(f"report's pipeline, DataLoader, {workers} workers: {best_loader:.0f} img/s")
    where = f"{torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    print(f"ours, cached + batched, {where}: {best_ours:.0f} img/s")
    print(f"ratio against the DataLoader: {best_ours / best_loader:.1f}")
    print(f"ratio: {best_ours / best_ref:.1f}")
    write_json(args.json, {
        "images": n, "size": args.size, "device": str(device), "workers": workers,
        "cache_img_s": round(n / cache_s, 1), "report_img_s": round(best_ref, 1),
        "report_loader_img_s": round(best_loader, 1), "ours_img_s": round(best_ours, 1),
        "ratio_loader": round(best_ours / best_loader, 2), "ratio": round(best_ours / best_ref, 2),
    })  # fmt: skip


if __name__ == "__main__":
    main()
