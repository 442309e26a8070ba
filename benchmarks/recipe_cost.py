"""What each training-recipe key (docs/recipes.md) costs per epoch, against the plain
recipe, side by side.

    python benchmarks/recipe_cost.py [--image-size 64] [--batch-size 32] [--batches 8]

Each option is `experiment=report case=relu` (ResNet-18, the report's augmentation, Adam)
at this size with one key turned on; every option trains the framework's real epoch
(`train_one_epoch` over `TensorBatches` of the same in-memory split, augmented as a run
augments it), seeded as a run seeds. The options take turns for several rounds and the
best epoch of each is kept, so a busy moment of the machine costs every option alike.
It prints each option's images/s and `ratio` (its epoch time over the plain one's: 1.0
is free). Early stopping has no per-epoch cost (it reads the epochs' rows), so it is not
timed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchlib import bench_state, compose_case, photo_split, timed, warm_split, write_json

from flowers_sweep.data import batch_augment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.trainer.hardware import resolve_device
from flowers_sweep.trainer.loop import train_one_epoch

OPTIONS = {  # name -> the overrides that turn it on
    "plain": [],
    "label_smoothing=0.1": ["trainer.label_smoothing=0.1"],
    "clip_grad_norm=1.0": ["trainer.clip_grad_norm=1.0"],
    "accumulate=2": ["trainer.accumulate=2"],
    "norm_weight_decay=0 (adamw)": ["optimizer=adamw", "optimizer.norm_weight_decay=0"],
    "mixup_alpha=0.2": ["augment.mixup_alpha=0.2"],
    "cutmix_alpha=1.0": ["augment.cutmix_alpha=1.0"],
    "trivial_augment": ["augment=trivial_augment"],
    "rand_augment": ["augment=rand_augment"],
    "erase_p=0.1": ["augment.erase_p=0.1"],
    "ema_decay=0.99": ["trainer.ema_decay=0.99"],
    "modern's keys together": [  # conf/experiment/modern.yaml's, at this size
        "augment=trivial_augment",
        "augment.erase_p=0.1",
        "augment.mixup_alpha=0.2",
        "augment.cutmix_alpha=1.0",
        "optimizer=sgd",
        "optimizer.norm_weight_decay=0",
        "scheduler=cosine",
        "trainer.label_smoothing=0.1",
        "trainer.ema_decay=0.984",
    ],
    "precision=fp16": ["trainer.precision=fp16"],  # emulated on a CPU: see docs/speed.md
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8, help="batches per timed epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    size = [f"dataset.image_size={args.image_size}", f"trainer.batch_size={args.batch_size}",
            f"trainer.device={device}", "trainer.compile=false"]  # fmt: skip
    n = args.batch_size * args.batches
    states, batches = {}, {}
    for name, overrides in OPTIONS.items():
        cfg = compose_case("relu", [*size, *overrides])
        states[name] = state = bench_state(cfg, device)
        split = photo_split(n, args.image_size, cfg.dataset.num_classes, device)
        view = batch_augment(cfg, state.placement.layout).train_view
        batches[name] = TensorBatches(split, args.batch_size, device, view)
        warm = TensorBatches(warm_split(split, args.batch_size), args.batch_size, device, view)
        train_one_epoch(state, warm, "warm-up").means()  # not timed
    best = dict.fromkeys(OPTIONS, 0.0)
    for _ in range(args.rounds):
        for name in OPTIONS:

            def epoch(run=states[name], data=batches[name]) -> None:
                train_one_epoch(run, data, "bench").means()

            best[name] = max(best[name], n / timed(epoch, device))
    where = f"{device}, {args.image_size} px, batch {args.batch_size}, {n} images an epoch"
    print(f"ResNet-18 training epoch per recipe key ({where}; best of {args.rounds} rounds):")
    ratios = {name: best["plain"] / best[name] for name in OPTIONS}
    for name in OPTIONS:
        print(f"  {name:30s} {best[name]:8.1f} img/s   ratio {ratios[name]:.2f}")
    write_json(args.json, {"images_per_s": best, "ratio_to_plain": ratios, "where": where})
    print(f"ratio: {max(ratios.values()):.2f}")  # the costliest key's, against plain


if __name__ == "__main__":
    main()
