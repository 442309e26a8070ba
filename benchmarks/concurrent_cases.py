"""The report's four cases trained at once on one device, one process each, against one
after another: is one GPU better shared?

    python benchmarks/concurrent_cases.py [--device cuda] [--train-size 6149]
        [--image-size 224] [--json FILE] [overrides ...]

Each case is composed as `experiment=report case=CASE`, set up and seeded as a run is,
with its own training split on the device that keeps each photo's original size (the
report's warp), and trains one epoch through `train_one_epoch` after a warm-up at the
same batch shapes. Sequentially: the four in this process, one at a time. Concurrently:
four spawned processes (as four jobs of a joblib sweep on one GPU would be), each warmed
up, then started together at a barrier. Aggregate img/s: all images over the wall time
from the first start to the last end (concurrently) or over the sum of the epochs
(sequentially). On a CPU each process gets its share of the cores, as parallel joblib
jobs do. The last line is `ratio: X`, concurrent over sequential aggregate img/s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import torch
from benchlib import (
    CASES,
    REPORT_SPLIT,
    bench_state,
    compose_case,
    device_name,
    photo_split,
    sized_for,
    sync,
    warm_split,
    write_json,
)

from flowers_sweep.data import batch_augment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.trainer.hardware import available_cpus, resolve_device
from flowers_sweep.trainer.loop import train_one_epoch

BARRIER_S = 600  # a hang guard: the slowest process's start-up and warm-up, far above


def train_case(case: str, args, threads: int, barrier=None) -> dict:
    """One case's timed epoch: (case, images, start, end) on the monotonic clock."""
    torch.set_num_threads(threads)
    overrides = [f"trainer.device={args.device}", f"dataset.image_size={args.image_size}"]
    cfg = compose_case(case, [*overrides, *args.overrides])
    t, d = cfg.trainer, cfg.dataset
    run = bench_state(cfg)  # as a run's set-up builds it, less the data
    device = run.device
    split = photo_split(args.train_size, d.image_size, d.num_classes, device)
    aug = batch_augment(cfg, run.placement.layout)
    batches = TensorBatches(split, t.batch_size, device, aug.train_view)
    warm = TensorBatches(warm_split(split, t.batch_size), t.batch_size, device, aug.train_view)
    train_one_epoch(run, warm, "warm-up").means()
    sync(device)
    if barrier is not None:
        barrier.wait(timeout=BARRIER_S)
    start = time.monotonic()
    train_one_epoch(run, batches, case).means()
    sync(device)
    return {"case": case, "images": len(split), "start": start, "end": time.monotonic()}


def worker(case: str, args, threads: int, barrier, results) -> None:
    try:
        results.put(train_case(case, args, threads, barrier))
    except BaseException as exc:  # the parent reports it; a broken barrier frees the others
        barrier.abort()
        results.put({"case": case, "error": f"{type(exc).__name__}: {exc}"})


def concurrently(args) -> list[dict]:
    ctx = mp.get_context("spawn")  # a fresh CUDA context each, as separate jobs have
    barrier, results = ctx.Barrier(len(args.cases)), ctx.Queue()
    threads = max(1, available_cpus() // len(args.cases))
    procs = [ctx.Process(target=worker, args=(case, args, threads, barrier, results))
             for case in args.cases]  # fmt: skip
    for p in procs:
        p.start()
    out = [results.get(timeout=2 * BARRIER_S) for _ in procs]
    for p in procs:
        p.join()
    errors = [r for r in out if "error" in r]
    if errors:
        raise SystemExit("concurrent_cases: " + "; ".join(f"{r['case']}: {r['error']}"
                                                           for r in errors))  # fmt: skip
    return sorted(out, key=lambda r: args.cases.index(r["case"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--train-size", type=int, help="default: 6149 on a GPU, 512 on a CPU")
    parser.add_argument("--image-size", type=int, help="default: 224 on a GPU, 64 on a CPU")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every case")
    args = parser.parse_args()
    print(sized_for(args, {"train_size": REPORT_SPLIT["train"], "image_size": 224},
                    {"train_size": 512, "image_size": 64}))  # fmt: skip

    device = resolve_device(args.device)
    print(f"{len(args.cases)} cases, {args.train_size} images each at {args.image_size} px, "
          f"on {device} ({device_name(device)})")  # fmt: skip
    together = concurrently(args)
    wall = max(r["end"] for r in together) - min(r["start"] for r in together)
    images = sum(r["images"] for r in together)
    concurrent_ips = images / wall
    print(f"concurrent ({len(args.cases)} processes): {concurrent_ips:.1f} img/s aggregate "
          f"({wall:.2f} s)")  # fmt: skip
    alone = [train_case(case, args, available_cpus()) for case in args.cases]
    seq_s = sum(r["end"] - r["start"] for r in alone)
    sequential_ips = images / seq_s
    print(f"sequential: {sequential_ips:.1f} img/s aggregate ({seq_s:.2f} s for {images} images)")
    per_case = {r["case"]: {"alone_img_s": round(r["images"] / (r["end"] - r["start"]), 1),
                            "together_img_s": round(c["images"] / (c["end"] - c["start"]), 1)}
                for r, c in zip(alone, together, strict=True)}  # fmt: skip
    for case, r in per_case.items():
        print(f"  {case:>12}: alone {r['alone_img_s']:.1f} img/s, together "
              f"{r['together_img_s']:.1f} img/s")  # fmt: skip
    write_json(args.json, {
        "device": str(device), "device_name": device_name(device), "cases": args.cases,
        "train_size": args.train_size, "image_size": args.image_size,
        "sequential_img_s": round(sequential_ips, 1), "concurrent_img_s": round(concurrent_ips, 1),
        "sequential_s": round(seq_s, 3), "concurrent_s": round(wall, 3), "per_case": per_case,
        "ratio": round(concurrent_ips / sequential_ips, 3),
    })  # fmt: skip
    print(f"ratio: {concurrent_ips / sequential_ips:.3f}")


if __name__ == "__main__":
    main()
