"""One training epoch at the report's scale, as a run trains it, in three settings.

    python benchmarks/epoch_speed.py [--device cuda] [--cases relu baseline_cnn]
        [--train-size 6149] [--image-size 224] [--json FILE] [overrides ...]

Each case is composed as `experiment=report case=CASE` (batch size, precision, layout
and model as shipped; extra Hydra overrides apply to every case). Its training split is
held on the device as a Flowers102 cache is: uint8 images with each photo's original
size, so augmentation is the report's bicubic squash-conjugated warp. One whole epoch
goes through the framework's `train_one_epoch` after a warm-up at the same batch shapes,
with a fresh model (set up as a run sets it up), in three settings:

- shipped: `seed_everything(seed, trainer.deterministic)`, exactly as a run seeds;
- nan_fill: the same, then `torch.utils.deterministic.fill_uninitialized_memory = True`
  (every new tensor filled with NaN, PyTorch's default under deterministic algorithms);
- nondeterministic: `seed_everything(seed, False)` (cuDNN benchmark on).

Also measured, in the shipped setting: peak device memory of the epoch
(torch.cuda.max_memory_allocated, split included; none on a CPU) and the device
pipeline alone (shuffle, index, warp, normalise: what feeds the model) in img/s,
against the step's. The last line is `ratio: X`, the first case's nan_fill epoch time
over its shipped one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from benchlib import (
    REPORT_SPLIT,
    bench_state,
    compose_case,
    device_name,
    layout_label,
    peak_memory_mb,
    photo_split,
    precision_label,
    reset_peak_memory,
    seed_like_a_run,
    seeding,
    sized_for,
    timed,
    warm_split,
    write_json,
)

from flowers_sweep.data import batch_augment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.record.labels import model_label
from flowers_sweep.trainer.hardware import resolve_device
from flowers_sweep.trainer.loop import train_one_epoch
from flowers_sweep.trainer.runstate import place

SETTINGS = ("shipped", "nondeterministic", "nan_fill")  # nan_fill last: it sticks


def time_setting(cfg, setting: str, split, batches, warm, device) -> dict:
    """One epoch with a fresh model, seeded for `setting`, after a warm-up."""
    deterministic = bool(cfg.trainer.deterministic) if setting != "nondeterministic" else False
    run = bench_state(cfg, device, deterministic=deterministic,
                      nan_fill=True if setting == "nan_fill" else None)  # fmt: skip
    seeded = seeding()
    train_one_epoch(run, warm, "warm-up").means()
    reset_peak_memory(device)
    seconds = timed(lambda: train_one_epoch(run, batches, setting).means(), device)
    out = {**seeded, "epoch_s": round(seconds, 3), "img_s": round(len(split) / seconds, 1)}
    if setting == "shipped":
        out["peak_memory_mb"] = peak_memory_mb(device)
    return out


def time_pipeline(split, batches, warm, device) -> float:
    """img/s of the training batches alone: shuffle, index, warp, normalise."""
    gen = torch.Generator().manual_seed(0)
    for _ in warm(gen):  # the pipeline's own warm-up, same shapes
        pass

    def one_pass() -> None:
        for _ in batches(gen):
            pass

    return len(split) / timed(one_pass, device)


def one_case(cfg, args) -> dict:
    t, d = cfg.trainer, cfg.dataset
    where = place(cfg)  # the run's device, precision and layout
    device = where.device
    split = photo_split(args.train_size, d.image_size, d.num_classes, device)
    aug = batch_augment(cfg, where.layout)
    batches = TensorBatches(split, t.batch_size, device, aug.train_view)
    warm = TensorBatches(warm_split(split, t.batch_size), t.batch_size, device, aug.train_view)
    out: dict = {
        "model": model_label(cfg.model),
        "precision": precision_label(where),
        "layout": layout_label(where),
        "batch_size": t.batch_size,
        "compile": bool(t.compile),
        "split_mb": round(split.images.numel() / 2**20, 1),
    }
    for setting in SETTINGS:
        out[setting] = time_setting(cfg, setting, split, batches, warm, device)
        if setting == "shipped":
            out["peak_memory_mb"] = out[setting].pop("peak_memory_mb")
            seed_like_a_run(cfg.seed, bool(t.deterministic))
            out["pipeline_img_s"] = round(time_pipeline(split, batches, warm, device), 1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out["pipeline_over_step"] = round(out["pipeline_img_s"] / out["shipped"]["img_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", nargs="+", default=["relu", "baseline_cnn"])
    parser.add_argument("--train-size", type=int, help="default: 6149 on a GPU, 512 on a CPU")
    parser.add_argument("--image-size", type=int, help="default: 224 on a GPU, 64 on a CPU")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every case")
    args = parser.parse_args()
    print(sized_for(args, {"train_size": REPORT_SPLIT["train"], "image_size": 224},
                    {"train_size": 512, "image_size": 64}))  # fmt: skip
    overrides = [f"trainer.device={args.device}", f"dataset.image_size={args.image_size}",
                 *args.overrides]  # fmt: skip
    report: dict = {"train_size": args.train_size, "image_size": args.image_size, "cases": {}}
    ratio = None
    for case in args.cases:
        cfg = compose_case(case, overrides)
        device = resolve_device(cfg.trainer.device)
        report["device"], report["device_name"] = str(device), device_name(device)
        r = one_case(cfg, args)
        report["cases"][case] = r
        s, nd, nf = r["shipped"], r["nondeterministic"], r["nan_fill"]
        print(f"{case} ({r['model']}, {r['precision']}, {r['layout']}, batch {r['batch_size']}, "
              f"{args.train_size} images at {args.image_size} px, {device}):")  # fmt: skip
        print(f"  shipped (deterministic={s['deterministic']}, NaN fill "
              f"{'on' if s['fill_uninitialized_memory'] else 'off'}): {s['img_s']:.1f} img/s "
              f"({s['epoch_s']:.2f} s/epoch)")  # fmt: skip
        print(f"  with the NaN fill: {nf['img_s']:.1f} img/s ({nf['epoch_s'] / s['epoch_s']:.2f}x "
              f"the shipped epoch time)")  # fmt: skip
        print(f"  deterministic=false: {nd['img_s']:.1f} img/s "
              f"({nd['epoch_s'] / s['epoch_s']:.2f}x the shipped epoch time)")  # fmt: skip
        peak = r["peak_memory_mb"]
        print(f"  peak memory: {'n/a (not CUDA)' if peak is None else f'{peak:.0f} MB'} "
              f"(split {r['split_mb']:.0f} MB)")  # fmt: skip
        print(f"  device pipeline alone: {r['pipeline_img_s']:.1f} img/s, "
              f"{r['pipeline_over_step']:.2f}x the training step's")  # fmt: skip
        ratio = ratio or nf["epoch_s"] / s["epoch_s"]
    write_json(args.json, report)
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
