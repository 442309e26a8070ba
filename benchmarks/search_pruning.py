"""What pruning saves: the same small search with and without `hydra.sweeper.pruner`.

    python benchmarks/search_pruning.py [--trials 12] [--epochs 8] [--pruner median]
                                        [overrides ...]

Runs `python -m flowers_sweep -m hparams_search=optuna` twice, side by side in one
invocation, on the embedded synthetic data (no download), with the same seed, space
and trial count: once with `pruner=none`, once with `--pruner`. For each it counts the
epochs trained (the rows of every trial's metrics.csv), the launch's wall time, and the
best value found (optimization_results.yaml: best_val_acc, completed trials only). The
last lines are the ratios: epochs and wall time without pruning over with it (above 1:
pruning saved that much), and the best values side by side (pruning may also cut a
trial that would have ended best; the two searches also draw different trials once a
pruned trial has changed what TPE has seen).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SMALL = [
    "case=relu", "dataset.image_size=32", "dataset.train_size=200", "dataset.val_size=60",
    "dataset.test_size=60", "model.layers=[1,1,1,1]", "trainer.batch_size=32",
]  # fmt: skip


def search(sweep: Path, pruner: str, trials: int, epochs: int, extra: list[str]) -> dict:
    """One search in `sweep`: its epochs trained, wall time and best value."""
    args = ["-m", "hparams_search=optuna", *SMALL, f"trainer.epochs={epochs}",
            f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.pruner={pruner}",
            f"hydra.sweep.dir={sweep}", "aggregate=false", *extra]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flowers_sweep", *args], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"search with pruner={pruner} failed:\n{proc.stderr[-3000:]}")
    epochs_trained, pruned = 0, 0
    for trial in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        with open(trial / "metrics.csv", newline="") as f:
            epochs_trained += sum(1 for _ in csv.DictReader(f))
        pruned += '"status": "pruned"' in (trial / "result.json").read_text()
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    return {"epochs": epochs_trained, "wall_s": wall, "pruned": pruned,
            "best": best["best_value"], "best_trial": best["best_trial"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both searches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            name: search(Path(tmp) / name, name, args.trials, args.epochs, args.overrides)
            for name in ("none", args.pruner)
        }
    planned = args.trials * args.epochs
    for name, r in runs.items():
        print(f"pruner={name:<18} {r['epochs']:4d} of {planned} epochs, {r['pruned']:2d} "
              f"trials pruned, {r['wall_s']:6.1f} s, best best_val_acc {r['best']:.3f} "
              f"(trial {r['best_trial']})")  # fmt: skip
    off, on = runs["none"], runs[args.pruner]
    print(f"ratio epochs (none / {args.pruner}): {off['epochs'] / on['epochs']:.2f}")
    print(f"ratio wall time (none / {args.pruner}): {off['wall_s'] / on['wall_s']:.2f}")
    print(f"best value: none {off['best']:.3f}, {args.pruner} {on['best']:.3f}")


if __name__ == "__main__":
    main()
