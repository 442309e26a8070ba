"""What the benchmarks share, so each times what a real run runs.

- `seed_like_a_run`: `flowers_sweep.trainer.runstate.seed_everything(seed, deterministic)`, as
  a run's set-up (`runstate.set_up`) calls it (deterministic kernels, cuDNN benchmark
  off, and whatever else the package's seeding sets), optionally with the
  uninitialised-memory fill forced.
- `bench_state`: the `RunState` that `runstate.set_up(cfg, None, device)` builds (seeded,
  placed: device, precision, layout; the config's model, compiled or not; optimizer,
  schedule, generator), less the data: the benchmarks time their own in-memory splits
  (`photo_split`), through `loop.train_one_epoch` and `loop.eval_one_epoch`, augmented
  by `flowers_sweep.data.batch_augment`, as the run's loaders build it.
- `photo_split`: an in-memory split with each image's original photo size, so the
  training view is the report's bicubic squash-conjugated warp, as for a Flowers102
  cache, not the nearest-neighbour rotation of square images.
- `warm_split`: the first images of a split, as many as make the same batch shapes as a
  pass over all of it, so a warm-up meets every shape the timed pass meets.
- `write_flowers_tree`: a Flowers102 tree of generated JPEGs, a few drawn and copied.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from flowers_sweep.data.splits import Split
from flowers_sweep.trainer.runstate import Placement, RunState, build_state, place, seed_everything

REPO = Path(__file__).resolve().parent.parent
CASES = ("relu", "sigmoid", "leaky_relu", "baseline_cnn")  # the report's four
REPORT_SPLIT = {"train": 6149, "val": 1020, "test": 1020}  # the report's swapped split
# Flowers102's photos have 500 px on the short side; most are landscape.
PHOTO_SIZES = ((667, 500), (500, 667), (667, 500))


def seed_like_a_run(seed: int, deterministic: bool, nan_fill: bool | None = None) -> dict:
    """Seed and set determinism as a run's set-up does; nan_fill forces
    torch.utils.deterministic.fill_uninitialized_memory afterwards (None: as seeded)."""
    seed_everything(seed, deterministic)
    if nan_fill is not None:
        torch.utils.deterministic.fill_uninitialized_memory = nan_fill
    return seeding()


def seeding() -> dict:
    """The determinism settings in force (what `seed_like_a_run` set)."""
    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "fill_uninitialized_memory": bool(torch.utils.deterministic.fill_uninitialized_memory),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def bench_state(
    cfg: Any,
    device: torch.device | str | None = None,
    *,
    deterministic: bool | None = None,
    nan_fill: bool | None = None,
    compile: bool | None = None,
) -> RunState:
    """What `runstate.set_up(cfg, None, device)` builds, through the same steps, without
    loading the data (`data` stays None: pass batches to the loop). `device`: as `place`
    takes it (None: trainer.device). deterministic, compile: instead of the config's
    trainer values (None: the config's); nan_fill: as `seed_like_a_run` takes it."""
    trainer = cfg.trainer
    deterministic = trainer.deterministic if deterministic is None else deterministic
    seed_like_a_run(cfg.seed, deterministic, nan_fill)
    where = place(cfg, device)
    weights = cfg.model.get("weights")
    return build_state(cfg, where, cfg.dataset.num_classes, weights, compile=compile)


def precision_label(where: Placement) -> str:
    return "bf16" if where.dtype is torch.bfloat16 else "fp32"


def layout_label(where: Placement) -> str:
    return "NHWC" if where.layout == torch.channels_last else "NCHW"


def photo_split(n: int, size: int, num_classes: int, device: torch.device, seed: int = 0) -> Split:
    """n random uint8 images of size x size on the device, with original photo sizes
    (width, height) on the host, as the Flowers102 cache keeps them."""
    gen = torch.Generator(device).manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, device=device,
                           generator=gen)  # fmt: skip
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=torch.Generator()
                                              .manual_seed(seed))]  # fmt: skip
    sizes = torch.tensor(PHOTO_SIZES, dtype=torch.int64).repeat(n // len(PHOTO_SIZES) + 1, 1)
    return Split(images, labels.to(device), sizes[:n].contiguous())


def warm_split(split: Split, batch_size: int) -> Split:
    """Two full batches and the trailing partial one: the batch shapes of a whole pass."""
    n = len(split)
    k = min(n, 2 * batch_size + n % batch_size)
    image_sizes = None if split.image_sizes is None else split.image_sizes[:k]
    return Split(split.images[:k], split.labels[:k], image_sizes)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds for fn(), with the device's queued work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """torch.cuda.max_memory_allocated in MB since the last reset; None off CUDA."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def compose_case(case: str, overrides: Sequence[str] = ()) -> Any:
    """`experiment=report case=CASE` plus overrides, composed as the CLI composes it."""
    from hydra import compose, initialize_config_module

    from flowers_sweep.config import CONFIG_MODULE

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose("config", ["experiment=report", f"case={case}", *overrides])


def checkpoint_policy(trainer: Any) -> dict[str, Any]:
    """(every N epochs, every T seconds) of a composed trainer config. Configs from before
    the interval keys existed checkpoint every epoch."""
    if "checkpoint_every_epochs" not in trainer and "checkpoint_every_s" not in trainer:
        return {"every_epochs": 1, "every_s": None, "keys": False}
    return {
        "every_epochs": trainer.get("checkpoint_every_epochs"),
        "every_s": trainer.get("checkpoint_every_s"),
        "keys": True,
    }


def checkpoints_per_run(epochs: int, epoch_s: float, policy: dict[str, Any]) -> int:
    """Checkpoints a run writes: at the end of an epoch once either interval is reached
    since the last one, and always after the last epoch."""
    count, since_epochs, since_s = 0, 0, 0.0
    every_epochs, every_s = policy["every_epochs"], policy["every_s"]
    for epoch in range(1, epochs + 1):
        since_epochs, since_s = since_epochs + 1, since_s + epoch_s
        if (
            epoch == epochs
            or (every_epochs is not None and since_epochs >= every_epochs)
            or (every_s is not None and since_s >= every_s)
        ):
            count, since_epochs, since_s = count + 1, 0, 0.0
    return count


def write_flowers_tree(
    root: Path, per_split: int, size: int, upscale_to: tuple[int, int], pool: int = 12
) -> Path:
    """A Flowers102 tree with 3 x per_split JPEGs: `pool` drawn, the rest copies of them
    (drawing and encoding full-size JPEGs is slow and tells nothing about our speed)."""
    sys.path.insert(0, str(REPO))
    try:  # test data, not shipped; the clone's root leaves sys.path again after
        from tests.helpers.fake_flowers102 import write_mats, write_tree
    finally:
        sys.path.remove(str(REPO))

    n = 3 * per_split
    drawn = 3 * min(per_split, -(-pool // 3))
    base = write_tree(root, per_split=drawn // 3, size=size, upscale_to=upscale_to)
    write_mats(base, per_split)  # the label and split files of the whole tree
    for i in range(drawn + 1, n + 1):
        source = base / "jpg" / f"image_{(i - 1) % drawn + 1:05d}.jpg"
        shutil.copyfile(source, base / "jpg" / f"image_{i:05d}.jpg")
    return base


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    """The benchmark's figures, for gpu_check.sh to merge (nothing without --json)."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def sized_for(args: Any, gpu: dict[str, Any], cpu: dict[str, Any]) -> str:
    """Fill each size in `args` left at None: `gpu`'s (the report's scale) when
    `args.device` resolves to CUDA, `cpu`'s (smaller, so that the script finishes within
    a few minutes on a laptop's cores) otherwise. Returns the line that says which."""
    from flowers_sweep.trainer.hardware import resolve_device

    on_gpu = resolve_device(args.device).type == "cuda"
    chosen = gpu if on_gpu else cpu
    filled = {k: v for k, v in chosen.items() if getattr(args, k) is None}
    for key, value in filled.items():
        setattr(args, key, value)
    if not filled:
        return "sizes: as given"
    where = "a GPU: the report's scale" if on_gpu else "a CPU: sized down to finish in minutes"
    return f"sizes for {where} ({', '.join(f'{k}={v}' for k, v in filled.items())})"
