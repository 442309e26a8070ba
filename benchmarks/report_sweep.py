"""How long would the report's full sweep take here? Measured, then extrapolated.

    python benchmarks/report_sweep.py [--batches 3] [--json FILE] [overrides ...]

Composes `experiment=report` for each of the report's four cases (ResNet-18 with ReLU,
Sigmoid, LeakyReLU; the baseline CNN) and times what a run of each does, on this
device, with the preset's batch size, precision, layout and determinism:

- training and evaluation batches through the framework's own loop, with what a run's
  set-up builds (`runstate`: placement, model, optimizer), seeded as a run seeds
  (`seed_everything`), on an in-memory split that keeps each photo's original size as
  the Flowers102 cache does, so augmentation is the report's bicubic squash-conjugated
  warp; random pixels stand in for the photos. Warm-up passes use exactly the batch
  shapes that are timed;
- one real `save_checkpoint` of the case's model and optimizer (the best of two
  writes, to a temporary folder), counted as often as `trainer.checkpoint_every_epochs`
  and `trainer.checkpoint_every_s` make a run write one (every epoch where a config
  has neither key), always once at the end;
- start-up, once, in a fresh process: interpreter and imports, composing the config,
  loading a cache file the size of Flowers102's three splits and moving it to the
  device, building the model and its first training step; counted once per case.

It multiplies out to the preset's epochs of 6,149 training and 1,020 validation images
plus two test passes (the last and the best validation weights). Extra Hydra overrides
(e.g. trainer.precision=32) apply to every case. Not counted: the one-time decoding of
Flowers102 into the cache (see data_pipeline.py) and the weights files a run keeps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()  # the probe's start-up clock starts with its imports

import torch  # noqa: E402
from benchlib import (  # noqa: E402
    CASES,
    REPORT_SPLIT,
    bench_state,
    checkpoint_policy,
    checkpoints_per_run,
    compose_case,
    layout_label,
    photo_split,
    precision_label,
    sync,
    timed,
    write_json,
)

from flowers_sweep.data import batch_augment  # noqa: E402
from flowers_sweep.data.loaders import TensorBatches  # noqa: E402
from flowers_sweep.data.splits import Split  # noqa: E402
from flowers_sweep.trainer.checkpoint import Progress, save_checkpoint  # noqa: E402
from flowers_sweep.trainer.hardware import resolve_device  # noqa: E402
from flowers_sweep.trainer.loop import eval_one_epoch, train_one_epoch  # noqa: E402

TEST_PASSES = 2  # the last weights, then the best validation epoch's


def measure(cfg, batches: int, folder: Path) -> dict:
    """Train and eval img/s, and the seconds of one checkpoint write, for one case."""
    t, d = cfg.trainer, cfg.dataset
    run = bench_state(cfg)  # as a run's set-up builds it, less the data
    device, aug = run.device, batch_augment(cfg, run.placement.layout)
    bs, eval_bs = t.batch_size, 2 * t.batch_size  # as build_loaders batches the splits
    train_split = photo_split(bs * batches, d.image_size, d.num_classes, device)
    eval_split = photo_split(eval_bs * max(1, batches // 2), d.image_size, d.num_classes,
                             device, seed=1)  # fmt: skip
    train = TensorBatches(train_split, bs, device, aug.train_view)
    val = TensorBatches(eval_split, eval_bs, device, aug.eval_view)

    def head(split: Split, n: int) -> Split:
        return Split(split.images[:n], split.labels[:n], split.image_sizes[:n])

    # warm-up at the timed shapes: full training batches of bs, evaluation batches of 2 bs
    warm_train = TensorBatches(head(train_split, 2 * bs), bs, device, aug.train_view)
    train_one_epoch(run, warm_train, "warm-up").means()
    eval_one_epoch(run, TensorBatches(head(eval_split, eval_bs), eval_bs, device, aug.eval_view))
    train_s = timed(lambda: train_one_epoch(run, train, "t").means(), device)
    eval_s = timed(lambda: eval_one_epoch(run, val), device)

    run.progress = Progress(epoch=1)
    path = folder / "checkpoint.pt"
    writes = []
    for _ in range(2):  # the first also creates the file; the best of two is kept
        sync(device)
        start = time.perf_counter()
        save_checkpoint(path, run)
        writes.append(time.perf_counter() - start)
    return {
        "train_img_s": round(len(train_split) / train_s, 2),
        "eval_img_s": round(len(eval_split) / eval_s, 2),
        "checkpoint_s": round(min(writes), 4),
        "checkpoint_mb": round(path.stat().st_size / 2**20, 1),
        "device": str(device),
        "precision": precision_label(run.placement),
        "layout": layout_label(run.placement),
        "batch_size": bs,
        "deterministic": bool(t.deterministic),
    }


def startup_probe(overrides: list[str], cache_file: Path) -> None:
    """Run in a fresh process: what a run does before its first epoch, timed by part."""
    import flowers_sweep.app  # noqa: F401  (the CLI's own imports)

    parts = {"imports": time.perf_counter() - START}
    mark = time.perf_counter()
    cfg = compose_case("relu", overrides)
    parts["compose"] = time.perf_counter() - mark
    mark = time.perf_counter()
    run = bench_state(cfg)
    device, aug = run.device, batch_augment(cfg, run.placement.layout)
    sync(device)
    parts["device_and_model"] = time.perf_counter() - mark
    mark = time.perf_counter()
    entry = torch.load(cache_file, weights_only=True, mmap=True)  # as data/cache.py loads
    labels, sizes = entry["labels"], entry["sizes"]
    splits = {role: Split(images.to(device), labels[role].to(device), sizes[role])
              for role, images in entry["images"].items()}  # fmt: skip
    sync(device)
    parts["data"] = time.perf_counter() - mark
    mark = time.perf_counter()
    bs = cfg.trainer.batch_size
    train = splits["train"]
    first = Split(train.images[:bs], train.labels[:bs], train.image_sizes[:bs])
    batches = TensorBatches(first, bs, device, aug.train_view)
    train_one_epoch(run, batches, "first step").means()
    parts["first_step"] = time.perf_counter() - mark
    print(json.dumps({k: round(v, 3) for k, v in parts.items()}))


def measure_startup(overrides: list[str], size: int, folder: Path) -> dict:
    """A fresh process's start-up, with a cache file the size of Flowers102's splits."""
    n = sum(REPORT_SPLIT.values())
    entry = {"images": {}, "labels": {}, "sizes": {}}
    for role, count in REPORT_SPLIT.items():
        entry["images"][role] = torch.zeros(count, 3, size, size, dtype=torch.uint8)
        entry["labels"][role] = torch.zeros(count, dtype=torch.int64)
        entry["sizes"][role] = torch.full((count, 2), 500, dtype=torch.int64)
    cache_file = folder / "cache.pt"
    torch.save(entry, cache_file)
    del entry
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--startup-probe", str(cache_file), *overrides],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"report_sweep: the start-up probe failed:\n{proc.stderr[-3000:]}")
    parts = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"startup_s": round(wall, 2), "parts": parts, "cache_mb": round(n * 3 * size * size
            / 2**20, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=3, help="timed batches per case")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--startup-probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every case")
    args = parser.parse_args()
    if args.startup_probe:
        startup_probe(args.overrides, args.startup_probe)
        return
    report: dict = {"cases": {}}
    total = {"train": 0.0, "eval": 0.0, "checkpoints": 0.0, "startup": 0.0}
    with tempfile.TemporaryDirectory(prefix="report_sweep-") as tmp:
        folder = Path(tmp)
        cfg = compose_case(CASES[0], args.overrides)
        startup = measure_startup(args.overrides, cfg.dataset.image_size, folder)
        report["startup"] = startup
        p = startup["parts"]
        print(f"start-up of a run (fresh process): {startup['startup_s']:.1f} s: imports "
              f"{p['imports']:.1f}, compose {p['compose']:.2f}, device and model "
              f"{p['device_and_model']:.1f}, cache of {startup['cache_mb']:.0f} MB to "
              f"{resolve_device(cfg.trainer.device)} {p['data']:.1f}, first step "
              f"{p['first_step']:.1f} s")  # fmt: skip
        for case in CASES:
            cfg = compose_case(case, args.overrides)
            m = measure(cfg, args.batches, folder)
            epochs = cfg.trainer.epochs
            epoch_s = REPORT_SPLIT["train"] / m["train_img_s"] + REPORT_SPLIT["val"] / m[
                "eval_img_s"]  # fmt: skip
            policy = checkpoint_policy(cfg.trainer)
            writes = checkpoints_per_run(epochs, epoch_s, policy)
            parts = {
                "train": epochs * REPORT_SPLIT["train"] / m["train_img_s"],
                "eval": (epochs * REPORT_SPLIT["val"] + TEST_PASSES * REPORT_SPLIT["test"])
                / m["eval_img_s"],
                "checkpoints": writes * m["checkpoint_s"],
                "startup": startup["startup_s"],
            }
            seconds = sum(parts.values())
            for k, v in parts.items():
                total[k] += v
            report["cases"][case] = {**m, "epochs": epochs, "epoch_s": round(epoch_s, 3),
                                     "checkpoints": writes, "checkpoint_policy": policy,
                                     "run_s": round(seconds, 1)}  # fmt: skip
            print(f"{case:>12}: train {m['train_img_s']:8.1f} img/s, eval {m['eval_img_s']:8.1f} "
                  f"img/s ({m['device']}, {m['precision']}, {m['layout']}, batch "
                  f"{m['batch_size']}, deterministic={m['deterministic']}); checkpoint "
                  f"{m['checkpoint_mb']:.0f} MB in {m['checkpoint_s']:.2f} s x {writes} -> "
                  f"{epochs} epochs ~{seconds / 60:.1f} min")  # fmt: skip
    whole = sum(total.values())
    report["total_s"] = round(whole, 1)
    report["parts_s"] = {k: round(v, 1) for k, v in total.items()}
    write_json(args.json, report)
    print(f"estimated wall time of the report's four-case sweep here: {whole / 60:.1f} min "
          f"({whole / 3600:.2f} h): training {total['train'] / 60:.1f} min, evaluation "
          f"{total['eval'] / 60:.1f}, checkpoints {total['checkpoints'] / 60:.2f}, start-up "
          f"{total['startup'] / 60:.2f}; plus a one-time Flowers102 cache build")  # fmt: skip


if __name__ == "__main__":
    main()
