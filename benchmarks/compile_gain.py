"""When does `trainer.compile=true` pay? Compile time against the steady-state gain.

    python benchmarks/compile_gain.py [--device cpu] [--image-size 64] [--batches 6]
        [--case relu] [--quick] [--json FILE]

Builds a report case (`experiment=report case=CASE`, ResNet-18 by default) at the given
size as a run's set-up builds it and times the framework's own training pass
(`train_one_epoch` over `TensorBatches` with the report's augmentation, the short last
batch included) and evaluation pass (`eval_one_epoch`), eager and compiled, on one
device, seeded as a run is. The compiled model's first passes include compiling; later
passes are its steady state. Prints the compile time, both throughputs, how many images
it takes to earn the compile back (and how many report epochs of 6,149 images that is),
the number of graphs compiled (2 expected: training and evaluation; more means a
recompile), and last `ratio: X`, compiled over eager steady-state training throughput.
"""

from __future__ import annotations

import argparse

from benchlib import (
    REPORT_SPLIT,
    bench_state,
    compose_case,
    photo_split,
    timed,
    warm_split,
    write_json,
)

from flowers_sweep.data import batch_augment
from flowers_sweep.data.loaders import TensorBatches
from flowers_sweep.trainer.hardware import resolve_device
from flowers_sweep.trainer.loop import eval_one_epoch, train_one_epoch
from flowers_sweep.trainer.runstate import RunState, place


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", default=None, help="default relu; --quick: baseline_cnn")
    parser.add_argument("--image-size", type=int, default=None, help="default 64, GPU 224")
    parser.add_argument("--batches", type=int, default=6, help="training batches a pass")
    parser.add_argument("--quick", action="store_true", help="32 px, 3 batches")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    size = args.image_size or (224 if device.type == "cuda" else 64)
    overrides = [f"dataset.image_size={size}"]
    if args.quick:  # compiling a ResNet-18 takes minutes on a small CPU
        size, args.batches = 32, 3
        overrides = ["dataset.image_size=32"]
    args.case = args.case or ("baseline_cnn" if args.quick else "relu")
    cfg = compose_case(args.case, overrides)
    bs = cfg.trainer.batch_size
    aug = batch_augment(cfg, place(cfg, device).layout)
    n = args.batches * bs - bs // 2  # a short last batch, as almost every real split has
    split = photo_split(n, size, cfg.dataset.num_classes, device)
    train = TensorBatches(split, bs, device, aug.train_view)
    val = TensorBatches(warm_split(split, bs), bs, device, aug.eval_view)

    def one_pass(run: RunState) -> None:
        train_one_epoch(run, train, "bench")
        eval_one_epoch(run, val)

    figures: dict = {"device": str(device), "case": args.case, "image_size": size, "batch": bs}
    run = bench_state(cfg, device, compile=False)
    one_pass(run)  # warm-up at the timed shapes
    eager_s = min(timed(lambda: one_pass(run), device) for _ in range(2))
    run = bench_state(cfg, device, compile=True)
    first_s = timed(lambda: one_pass(run), device)  # compiles both graphs
    one_pass(run)
    compiled_s = min(timed(lambda: one_pass(run), device) for _ in range(2))
    one_pass(run)  # a later epoch must not compile again
    images = train.num_samples + val.num_samples
    gain_per_image = (eager_s - compiled_s) / images
    compile_s = first_s - compiled_s
    epoch_images = REPORT_SPLIT["train"] + REPORT_SPLIT["val"]
    figures.update(
        compile_s=compile_s,
        eager_img_s=images / eager_s,
        compiled_img_s=images / compiled_s,
        graphs=graphs_compiled(),
        break_even_images=compile_s / gain_per_image if gain_per_image > 0 else None,
        ratio=eager_s / compiled_s,
    )
    be = figures["break_even_images"]
    print(f"{args.case} at {size} px, batch {bs}, on {device}")
    print(f"compile: {compile_s:.1f} s; graphs compiled: {figures['graphs']}")
    print(
        f"eager {figures['eager_img_s']:.1f} img/s, compiled {figures['compiled_img_s']:.1f} img/s"
    )
    if be is None:
        print("compiled is not faster here: it never pays")
    else:
        print(f"pays after {be:,.0f} images: {be / epoch_images:.1f} report epochs")
    write_json(args.json, figures)
    print(f"ratio: {figures['ratio']:.2f}")


if __name__ == "__main__":
    main()
