"""`python -m flowers_sweep.data.preview [-cd DIR] [--out FILE] [overrides]`: look at the
training images as the model will see them, before training on them.

Composes the config as a run would (the same presets and overrides: `dataset=image_folder
dataset.root=~/photos augment=imagenet_style`), loads the training split through the
same cache, and draws a grid: one row per image, its class name, the image as evaluation
sees it, then augmented views from the training pipeline (the same batched warp, the same
seeded generator: a policy's ops and random erasing included). The title names the
augmentation as the run's log does (`describe_augment`). Writes a PNG and prints its path.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from flowers_sweep.atomic import OutputError, atomic_write, writing_to
from flowers_sweep.config.composition import compose_config, config_dir_overrides
from flowers_sweep.config.validate import validate
from flowers_sweep.data import batch_augment, decode_workers, describe_augment, load_splits
from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.geometry import MIXES
from flowers_sweep.job import outcome

PROG = "flowers_sweep.data.preview"
MOST_IMAGES, MOST_VIEWS = 32, 12  # a grid a screen can show


def views(
    aug: BatchAugment, images: torch.Tensor, sizes: torch.Tensor | None, count: int, seed: int
) -> torch.Tensor:
    """(count + 1, N, 3, H, W) uint8: the evaluation view, then `count` training views
    of the same N images, drawn from one generator seeded with `seed`."""
    gen = torch.Generator().manual_seed(seed)
    out = [aug.eval_view(images)]
    out += [aug.train_view(images, gen, sizes) for _ in range(count)]
    mean = torch.tensor(aug.mean).view(1, 3, 1, 1)
    std = torch.tensor(aug.std).view(1, 3, 1, 1)
    # undo the normalisation: back to the pixels the model's input stands for
    return torch.stack([((v * std + mean) * 255).round().clamp(0, 255) for v in out]).to(
        torch.uint8
    )


def draw(grid: torch.Tensor, names: Sequence[str], title: str, out: Path) -> None:
    """A PNG of the (V, N, 3, H, W) grid: one row per image, one column per view."""
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched

    n_views, n = grid.shape[:2]
    fig = Figure(figsize=(1.4 * n_views, 1.4 * n))
    axes = fig.subplots(n, n_views, squeeze=False)
    for row in range(n):
        for col in range(n_views):
            ax = axes[row][col]
            ax.imshow(grid[col, row].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("as evaluated" if col == 0 else f"train view {col}", fontsize=7)
        axes[row][0].set_ylabel(names[row], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    kind = out.suffix.lstrip(".").lower() or "png"  # the file's name says its format
    with writing_to(out, "the preview"):
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: fig.savefig(f, format=kind, dpi=110))


def arg_parser() -> argparse.ArgumentParser:
    """The command line's own options; every other argument is a Hydra override."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        usage=f"python -m {PROG} [-h] [-cd CONFIG_DIR] [--out FILE]\n"
        "         [--images N] [--views N] [--seed N] [OVERRIDE ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Draw training images as the model will see them, before training on them:\n"
        "one row per image with its class name, the image as evaluation sees it, then\n"
        "augmented views from the training pipeline. Writes the picture, prints its path.\n\n"
        "The config is composed as for a run: every argument that is not an option below\n"
        "is one of the run's Hydra overrides (dataset=image_folder dataset.root=DIR\n"
        "augment=imagenet_style); `python -m flowers_sweep --help` lists the groups.",
        epilog=f"example:\n  python -m {PROG} dataset=image_folder dataset.root=~/photos \\\n"
        "      augment=imagenet_style --out preview.png\n"
        "docs: docs/data.md",
    )
    parser.add_argument(
        "-cd",
        "--config-dir",
        metavar="CONFIG_DIR",
        help="your own config folder, searched before the package's, as for a run",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("augment_preview.png"),
        metavar="FILE",
        help="the picture to write: .png, .jpg, .pdf or .svg (default augment_preview.png)",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=6,
        metavar="N",
        help=f"rows: training images drawn at random (default 6, at most {MOST_IMAGES})",
    )
    parser.add_argument(
        "--views",
        type=int,
        default=5,
        metavar="N",
        help=f"augmented training views per image (default 5, at most {MOST_VIEWS})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seeds which images are drawn and their augmentations (default 0)",
    )
    return parser


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options, checked, and the Hydra overrides (`-cd DIR` among them, for compose)."""
    parser = arg_parser()
    args, overrides = parser.parse_known_args(argv)
    for name, most in (("images", MOST_IMAGES), ("views", MOST_VIEWS)):
        if not 1 <= getattr(args, name) <= most:
            parser.error(f"--{name}={getattr(args, name)} is invalid: 1 to {most}")
    kind = args.out.suffix.lstrip(".").lower()
    if kind not in ("png", "jpg", "jpeg", "pdf", "svg"):
        parser.error(f"--out={args.out} is invalid: a .png, .jpg, .pdf or .svg file")
    if args.config_dir:
        overrides = ["--config-dir", args.config_dir, *overrides]
    return args, overrides


@outcome.command(PROG, HydraException, OmegaConfBaseException, OutputError)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 on success, 2 with one line on stderr for a bad config or data, or
    a picture it cannot write."""
    args, overrides = parse(list(sys.argv[1:] if argv is None else argv))
    cfg, choices = compose_config(config_dir_overrides(overrides))
    validate(cfg)
    splits = load_splits(cfg.dataset, decode_workers(cfg.trainer.num_workers))
    train = splits.train
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
    pick = pick[: args.images]
    sizes = None if train.image_sizes is None else train.image_sizes[pick]
    aug = batch_augment(cfg, torch.contiguous_format, train)
    grid = views(aug, train.images[pick], sizes, args.views, args.seed)
    names = [splits.class_names[int(i)] for i in train.labels[pick]]
    title = f"dataset={choices.get('dataset')}  augment={choices.get('augment')}"
    changed = [o for o in overrides if o.startswith(("augment.", "dataset.")) and "root" not in o]
    title += "".join(f"  {o}" for o in changed)[:150]
    title += f"\n{describe_augment(cfg.augment)}"[:200]  # the moves, policy and erasing
    if any(cfg.augment.get(key, 0) > 0 for _, key in MIXES):  # the loop mixes, not the view
        title += "\n(MixUp/CutMix not drawn: they mix whole batches in the training loop)"
    draw(grid, names, title, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
