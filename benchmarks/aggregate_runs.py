"""Aggregating a large sweep: 1,000 run folders of 100 epochs each, timed.

    python benchmarks/aggregate_runs.py [--runs 1000] [--epochs 100]

Writes the folders (4 cases x 250 seeds, as Hydra and a finished run leave them) into a
temporary directory, then times `aggregate` over them: reading every folder, the
tables, the statistics and the three figures. The goal is under 10 s on a 2-core
machine; the last line, `ratio: X`, is that 10 s budget over the measured time (X >= 1
meets it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for tests.runfolders, the same writer the tests use

from flowers_sweep.aggregate import aggregate  # noqa: E402
from tests.runfolders import write_run  # noqa: E402

BUDGET_S = 10.0
CASES = ("relu", "sigmoid", "leaky_relu", "baseline_cnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        start = time.perf_counter()
        for job in range(args.runs):
            case = CASES[job % len(CASES)]
            model = "baseline_cnn" if case == "baseline_cnn" else "resnet18"
            act = "relu" if case == "baseline_cnn" else case
            write_run(sweep / str(job), case=case, model=model, activation=act,
                      seed=job // len(CASES), test_acc=0.5 + 0.001 * (job % 97),
                      epochs=args.epochs)  # fmt: skip
        print(f"wrote {args.runs} run folders in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        report = aggregate([sweep])
        took = time.perf_counter() - start
    print(report.results.to_string(index=False))
    print(f"aggregated {len(report.runs)} runs ({args.epochs} epochs each) in {took:.2f} s")
    print(f"ratio: {BUDGET_S / took:.2f}")


if __name__ == "__main__":
    main()
