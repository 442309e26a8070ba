"""`python -m flowers_sweep.predict RUN_DIR IMAGE... [--json] [--weights last|best_val|ema]`.

Labels photos with a finished run's model: the five most likely classes and their
probabilities for each image, through the run's own preprocessing (decode, resize to its
image size, greyscale if it trained on greyscale, its normalisation). An image that is
missing or cannot be decoded is named in one line on stderr; the others are still
answered, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.images import load_resized
from flowers_sweep.errors import ImageDecodeError
from flowers_sweep.evaluate import WEIGHT_FILES, RestoredRun, add_run_dir_argument, restore
from flowers_sweep.job import outcome
from flowers_sweep.paths import path_text

PROG = "flowers_sweep.predict"


@torch.no_grad()
def top5(run: RestoredRun, image: Path) -> list[dict[str, Any]]:
    """The run's five most likely classes for the image, most likely first."""
    dataset = run.cfg.dataset
    pixels = torch.from_numpy(load_resized(image, dataset.image_size)[0].copy())[None]
    augment = BatchAugment(
        run.mean, run.std, grayscale=run.cfg.augment.grayscale, memory_format=run.layout
    )
    with run.cast():
        logits = run.model(augment.eval_view(pixels.to(run.device)))
    probs = logits.float().softmax(1)[0].cpu()
    best = probs.topk(min(5, len(probs)))
    return [
        {"class": int(i), "name": run.class_names[int(i)], "probability": float(p)}
        for p, i in zip(best.values, best.indices, strict=True)
    ]


def arg_parser() -> argparse.ArgumentParser:
    """The command line: RUN_DIR, IMAGE..., --weights, --json."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Label photos with a finished run's model: the five most likely classes and\n"
        "their probabilities for each image, through the run's own preprocessing (resize\n"
        "to its image size, greyscale if it trained so, its normalisation). An image that\n"
        "is missing or cannot be decoded is named in one line on stderr; the others are\n"
        "still answered, and the exit status is 1.",
        epilog=f"example:\n  python -m {PROG} outputs/runs/2026-11-28_10-00-00 photo.jpg "
        "--json\ndocs: docs/using_models.md",
    )
    add_run_dir_argument(parser)
    parser.add_argument(
        "images",
        type=Path,
        nargs="+",
        metavar="IMAGE",
        help="one or more image files (JPEG, PNG, ... any size: each is resized as the "
        "run's images were)",
    )
    parser.add_argument(
        "--weights",
        choices=list(WEIGHT_FILES),
        default="last",
        help="the last epoch's weights (default), the best validation epoch's (kept when "
        "the run had trainer.keep_weights=best or both) or the model EMA's (kept with "
        "trainer.keep_weights=ema or last_ema)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list instead of text: per image, its top 5 with class index, "
        "name and probability",
    )
    return parser


@outcome.command(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 when every image is labelled, 1 if one could not be, 2 on errors."""
    args = arg_parser().parse_args(argv)
    run = restore(args.run_dir, args.weights)
    answers, failed = [], 0
    for image in args.images:
        try:
            answers.append({"image": str(image), "top5": top5(run, image)})
        except ImageDecodeError as exc:
            outcome.error_line(PROG, exc)
            failed += 1
            continue
        if not args.json:
            print(path_text(image))  # a name of any bytes: stdout may be strict UTF-8
            for rank, guess in enumerate(answers[-1]["top5"], start=1):
                print(f"  {rank}. {guess['name']:<32} {100 * guess['probability']:5.1f}%")
    if args.json:
        print(json.dumps(answers, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
