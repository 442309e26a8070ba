"""`python -m flowers_sweep.evaluate RUN_DIR [--split test|val] [--weights last|best_val|ema]`.

Rebuilds a finished run from its own saved config (`.hydra/config.yaml`) and weights,
evaluates it on one split the way training did (same batches, precision and layout, so
its top-1 equals the run's `test_acc`), and writes into the run folder what the report
never looked at: accuracy per class (`per_class.csv`) and a confusion matrix
(`confusion_matrix.png`, classes ordered so that the ones confused together sit
together). Prints top-1 and top-5 accuracy, and the classes the model gets least right,
by the names the run trained with (its data.json).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.atomic import OutputError, atomic_write, atomic_write_text, writing_to
from flowers_sweep.data import build_loaders
from flowers_sweep.data.sources import open_source
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.job.outcome import command
from flowers_sweep.paths import rebase_run_paths
from flowers_sweep.record.legacy import upgrade_tree
from flowers_sweep.record.runrecord import (
    DATA_FILE,
    RESULT_FILE,
    TEST_ACC_OF,
    WEIGHT_FILES,
    config_path,
    evaluation_files,
    read_data,
    read_result,
    read_run,
    read_yaml,
)
from flowers_sweep.trainer.runstate import place, placed_model

PROG = "flowers_sweep.evaluate"
SHOWN_CLASSES = 10  # per-class accuracies printed; per_class.csv has them all


@dataclass
class RestoredRun:
    """A finished run, ready to predict: its config, model, device and number format."""

    cfg: DictConfig
    model: torch.nn.Module
    device: torch.device
    layout: torch.memory_format
    cast: Any
    class_names: list[str]
    mean: list[float]  # the normalisation the run trained with (dataset.mean, auto resolved)
    std: list[float]


def data_of(cfg: DictConfig, run_dir: Path) -> tuple[list[str], list[float], list[float]]:
    """The run's class names and normalisation, as its data.json recorded them; for a
    run from before data.json, from its config (the source's names, without data)."""
    record = read_data(run_dir) or {}
    if all(isinstance(record.get(k), list) for k in ("class_names", "mean", "std")):
        return record["class_names"], record["mean"], record["std"]
    if "auto" in (cfg.dataset.get("mean"), cfg.dataset.get("std")):
        raise FlowersSweepError(
            f"{Path(run_dir) / DATA_FILE} is missing or unreadable, and the run normalised with "
            f"dataset.mean/std=auto: the numbers it used are unknown"
        )
    try:
        names = open_source(cfg.dataset).class_names()
    except FlowersSweepError:  # a function target: only its data knows the names
        names = [str(i) for i in range(cfg.dataset.num_classes)]
    return names, list(cfg.dataset.mean), list(cfg.dataset.std)


def restore(run_dir: Path, weights: str = "last", device: str = "auto") -> RestoredRun:
    """The run's model with its saved weights, under the run's own settings."""
    run_dir = Path(run_dir)
    config, weights_file = config_path(run_dir), run_dir / WEIGHT_FILES[weights]
    if not config.is_file():
        raise FlowersSweepError(
            f"{config} not found: expected a finished run folder (one that has "
            f"{RESULT_FILE} with status completed)"
        )
    cfg = OmegaConf.create(upgrade_tree(read_yaml(config)))  # in today's keys (legacy.py)
    if not weights_file.is_file():
        kept = [k for k, f in WEIGHT_FILES.items() if (run_dir / f).is_file()]
        if weights == "ema" and cfg.trainer.get("ema_decay") is None:
            raise FlowersSweepError(
                f"{weights_file} not found: this run had no EMA (trainer.ema_decay=null); "
                f"use --weights {kept[0] if kept else 'last'}"
            )
        raise FlowersSweepError(
            f"{weights_file} not found: "
            + (
                f"this run kept only its {' and '.join(kept)} weights "
                f"(trainer.keep_weights); use --weights {' or '.join(kept)}"
                if kept
                else "this run kept no weights (trainer.keep_weights=none, or it has not "
                f"completed: see its {RESULT_FILE})"
            )
        )
    rebase_run_paths(cfg, run_dir)  # relative to where the run was launched, not to here
    names, mean, std = data_of(cfg, run_dir)
    where = place(cfg, device, len(names))  # as the run computed: its layout, number format
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    model = placed_model(cfg, len(names), where, state).eval()
    return RestoredRun(cfg, model, where.device, where.layout, where.cast, names, mean, std)


@torch.no_grad()
def predictions(run: RestoredRun, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of a split, batched exactly as the run evaluated it.

    Raises:
        FlowersSweepError: the data's classes are no longer the run's, or the split is
            empty (a folder changed since the run).
    """
    loaders = build_loaders(run.cfg, run.device, run.layout)
    if loaders.class_names != run.class_names:
        raise FlowersSweepError(
            f"the data's classes are not the ones the run trained on ({len(loaders.class_names)}"
            f" now, {len(run.class_names)} in its {DATA_FILE}): its labels would not mean the "
            f"same; evaluate on the data as it was"
        )
    batches = getattr(loaders, split)
    logits, labels = [], []
    for x, y in batches():
        with run.cast():
            logits.append(run.model(x).float().cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def per_class_table(logits: torch.Tensor, labels: torch.Tensor, names: list[str]) -> pd.DataFrame:
    predicted = logits.argmax(1)
    rows = []
    for c, name in enumerate(names):
        mine = labels == c
        support = int(mine.sum())
        acc = float((predicted[mine] == c).float().mean()) if support else float("nan")
        rows.append({"class": c, "name": name, "support": support, "accuracy": acc})
    return pd.DataFrame(rows)


def confusion(logits: torch.Tensor, labels: torch.Tensor, n: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    flat = labels.numpy() * n + logits.argmax(1).numpy()
    return np.bincount(flat, minlength=n * n).reshape(n, n)


def clustered_order(counts: np.ndarray) -> list[int]:
    """Classes ordered so that those confused with each other are neighbours
    (average-linkage clustering of the symmetrised, row-normalised confusions)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if len(counts) < 3:
        return list(range(len(counts)))
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    similarity = (rates + rates.T) / 2
    np.fill_diagonal(similarity, 0)
    distance = similarity.max() - similarity
    np.fill_diagonal(distance, 0)
    return leaves_list(linkage(squareform(distance, checks=False), "average")).tolist()


def plot_confusion(counts: np.ndarray, names: list[str], path: Path, title: str) -> None:
    import seaborn as sns
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched

    order = clustered_order(counts)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    ordered = [names[i] for i in order]
    frame = pd.DataFrame(rates[np.ix_(order, order)], index=ordered, columns=ordered)
    n = len(names)
    side = max(6.0, 0.16 * n + 3)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    bar = {"label": "share of the true class"}
    ticks = {"xticklabels": True, "yticklabels": True}
    sns.heatmap(frame, ax=ax, cmap="Blues", vmin=0, vmax=1, square=True, cbar_kws=bar, **ticks)
    ax.tick_params(labelsize=5 if n > 30 else 8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"))


def shown_path(run_dir: Path, parts: int = 3) -> str:
    """The run folder as a title shows it: the last `parts` components of its absolute
    path (`.` or a sweep's job folder `3` alone says nothing; its sweep's date does)."""
    path = Path(run_dir).resolve()
    kept = path.parts[-parts:]
    return str(Path(*kept)) if len(path.parts) <= parts else ".../" + "/".join(kept)


def run_label(run_dir: Path) -> str:
    """What the run trained, from its own records (result.json, else its .hydra/ files):
    `case=relu model=resnet18 activation=relu seed=0`, the parts it has."""
    record = read_run(run_dir)
    parts = {
        "case": record.case,
        "model": record.model if record.config or record.result else None,
        "activation": record.activation,
        "seed": record.config.get("seed", (record.result or {}).get("seed")),
    }
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


def figure_title(run_dir: Path, split: str, weights: str, top1: float, images: int) -> str:
    """The confusion matrix's title: which run (its folder, its case and model), which
    split and weights, and the top-1 accuracy they gave."""
    label = run_label(run_dir)
    return (
        f"{shown_path(run_dir)}" + (f"\n{label}" if label else "") + f"\n{split} split, "
        f"{weights} weights: top-1 {100 * top1:.1f}% ({images} images)"
    )


def evaluate_run(run_dir: Path, split: str = "test", weights: str = "last") -> dict[str, Any]:
    """Evaluate the run on `split` with its `weights`; write per_class and the confusion
    matrix into its folder. Returns top1, top5, images, files (table, figure), table.
    Raises OutputError (one line naming the path) when they cannot be written there."""
    run = restore(run_dir, weights)
    logits, labels = predictions(run, split)
    n = len(labels)
    top1 = int((logits.argmax(1) == labels).sum()) / n
    k = min(5, logits.shape[1])
    top5 = int((logits.topk(k, 1).indices == labels[:, None]).any(1).sum()) / n
    suffix = "" if (split, weights) == ("test", "last") else f"-{split}-{weights}"
    table_file, figure_file = evaluation_files(run_dir, suffix)
    table = per_class_table(logits, labels, run.class_names)
    title = figure_title(run_dir, split, weights, top1, n)
    counts = confusion(logits, labels, len(run.class_names))
    with writing_to(run_dir, "the evaluation"):
        atomic_write_text(table_file, table.to_csv(index=False))
        plot_confusion(counts, run.class_names, figure_file, title)
    files = (table_file, figure_file)
    return {"top1": top1, "top5": top5, "images": n, "files": files, "table": table}


def add_run_dir_argument(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR, as evaluate and predict take it."""
    parser.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR",
        help="a finished run's folder (its saved config and weights): outputs/runs/DATE, "
        "or one job of a sweep, outputs/multirun/DATE/N",
    )


def arg_parser() -> argparse.ArgumentParser:
    """The command line: RUN_DIR, --split, --weights."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a finished run again from its own saved config and weights, the\n"
        "way training did (its top-1 on the test split with the last weights is the run's\n"
        "test_acc). Prints top-1 and top-5 accuracy and the classes it gets least right;\n"
        "writes per-class accuracy (CSV) and a confusion matrix (PNG, titled with the run,\n"
        "split and weights) into the run folder.",
        epilog=f"example:\n  python -m {PROG} outputs/multirun/2026-11-28_10-00-00/0 "
        "--weights best_val\ndocs: docs/using_models.md",
    )
    add_run_dir_argument(parser)
    parser.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="which split of the run's data to evaluate on (default: test)",
    )
    parser.add_argument(
        "--weights",
        choices=list(WEIGHT_FILES),
        default="last",
        help="the last epoch's weights (default, what the run tested), the best validation "
        "epoch's (kept when the run had trainer.keep_weights=best or both) or the model EMA's "
        "(trainer.ema_decay, kept with trainer.keep_weights=ema or last_ema)",
    )
    return parser


@command(PROG, OutputError)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 on success, 2 with one line on stderr for a run it cannot evaluate
    or a result it cannot write."""
    args = arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    out = evaluate_run(args.run_dir, args.split, args.weights)
    key = TEST_ACC_OF[args.weights]
    recorded = (read_result(args.run_dir) or {}).get(key)
    print(f"top1: {out['top1']:.4f}")
    print(f"top5: {out['top5']:.4f}")
    if args.split == "test" and recorded is not None:
        print(f"{RESULT_FILE} {key}: {recorded:.4f}")
    table = out["table"].dropna(subset=["accuracy"])
    shown = table.sort_values("accuracy", kind="stable").head(SHOWN_CLASSES)
    print(f"per class, lowest first ({len(shown)} of {len(out['table'])}):")
    for row in shown.itertuples():
        print(f"  {row.name}: {row.accuracy:.4f} ({row.support} images)")
    table_file, figure_file = out["files"]
    print(f"wrote {table_file} and {figure_file.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
