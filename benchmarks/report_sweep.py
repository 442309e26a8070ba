"""How long would the report's full sweep take here? Measured, then extrapolated.

    python benchmarks/report_sweep.py [--batches 3] [--json FILE] [overrides ...]

Composes `experiment=report` for each of the report's four cases (ResNet-18 with ReLU,
Sigmoid, LeakyReLU; the baseline CNN) and times what a run of each does, on this
device, with the preset's batch size, precision, layout and determinism:

- training and evaluation batches through the framework's own loop, seeded as a run
  seeds (`seed_everything`), on an in-memory split that keeps each photo's original
  size as the Flowers102 cache does, so augmentation is the report's bicubic
  squash-conjugated warp; random pixels stand in for the photos. Warm-up passes use
  exactly the batch shapes that are timed;
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
    checkpoint_policy,
    checkpoints_per_run,
    compose_case,
    photo_split,
    seed_like_a_run,
    sync,
    timed,
    write_json,
)

from flowers_sweep.checkpoint import Progress, save_checkpoint  # noqa: E402
from flowers_sweep.data.augment import BatchAugment  # noqa: E402
from flowers_sweep.data.loaders import TensorBatches  # noqa: E402
from flowers_sweep.data.splits import Split  # noqa: E402
from flowers_sweep.hardware import (  # noqa: E402
    autocast,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
)
from flowers_sweep.models import build_model  # noqa: E402
from flowers_sweep.optim import build_optimizer, build_scheduler  # noqa: E402
from flowers_sweep.train import evaluate, train_epoch  # noqa: E402

TEST_PASSES = 2  # the last weights, then the best validation epoch's


def setup(cfg):
    """Device, layout, autocast, seeded model and optimizer, augmentation: as train.run."""
    t, d, a = cfg.trainer, cfg.dataset, cfg.augment
    device = resolve_device(t.device)
    seed_like_a_run(cfg.seed, t.deterministic)
    layout = (torch.channels_last if resolve_channels_last(t.channels_last, cfg.model.arch)
              else torch.contiguous_format)  # fmt: skip
    dtype = resolve_precision(t.precision, device)
    model = build_model(cfg.model, d.num_classes, d.image_size).to(device, memory_format=layout)
    step_model = torch.compile(model) if t.compile else model
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    aug = BatchAugment(d.mean, d.std, a.vflip_p, a.rotation, a.grayscale, layout)
    return device, layout, dtype, autocast(device, dtype), model, step_model, optimizer, aug


def measure(cfg, batches: int, folder: Path) -> dict:
    """Train and eval img/s, and the seconds of one checkpoint write, for one case."""
    t, d = cfg.trainer, cfg.dataset
    device, layout, dtype, cast, model, step_model, optimizer, aug = setup(cfg)
    bs, eval_bs = t.batch_size, 2 * t.batch_size  # as build_loaders batches the splits
    train_split = photo_split(bs * batches, d.image_size, d.num_classes, device)
    eval_split = photo_split(eval_bs * max(1, batches // 2), d.image_size, d.num_classes,
                             device, seed=1)  # fmt: skip
    train = TensorBatches(train_split, bs, device, aug.train_view)
    val = TensorBatches(eval_split, eval_bs, device, aug.eval_view)
    gen = torch.Generator().manual_seed(cfg.seed)

    def head(split: Split, n: int) -> Split:
        return Split(split.images[:n], split.labels[:n], split.sizes[:n])

    # warm-up at the timed shapes: full training batches of bs, evaluation batches of 2 bs
    warm_train = TensorBatches(head(train_split, 2 * bs), bs, device, aug.train_view)
    train_epoch(step_model, optimizer, warm_train, gen, device, "warm-up", cast)
    evaluate(step_model, TensorBatches(head(eval_split, eval_bs), eval_bs, device,
                                       aug.eval_view), device, cast)  # fmt: skip
    train_s = timed(lambda: train_epoch(step_model, optimizer, train, gen, device, "t", cast),
                    device)  # fmt: skip
    eval_s = timed(lambda: evaluate(step_model, val, device, cast), device)

    scheduler = build_scheduler(optimizer, cfg.scheduler, t.epochs)
    path = folder / "checkpoint.pt"
    writes = []
    for _ in range(2):  # the first also creates the file; the best of two is kept
        sync(device)
        start = time.perf_counter()
        save_checkpoint(path, model, optimizer, scheduler, gen, Progress(epoch=1), device)
        writes.append(time.perf_counter() - start)
    return {
        "train_img_s": round(len(train_split) / train_s, 2),
        "eval_img_s": round(len(eval_split) / eval_s, 2),
        "checkpoint_s": round(min(writes), 4),
        "checkpoint_mb": round(path.stat().st_size / 2**20, 1),
        "device": str(device),
        "precision": "bf16" if dtype is torch.bfloat16 else "fp32",
        "layout": "NHWC" if layout == torch.channels_last else "NCHW",
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
    device, _, _, cast, _, step_model, optimizer, aug = setup(cfg)
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
    first = Split(train.images[:bs], train.labels[:bs], train.sizes[:bs])
    batches = TensorBatches(first, bs, device, aug.train_view)
    train_epoch(step_model, optimizer, batches, torch.Generator().manual_seed(0), device,
                "first step", cast)  # fmt: skip
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
