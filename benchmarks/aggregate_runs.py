"""Aggregating a large sweep, timed: a grid of many cases, several seeds each.

    python benchmarks/aggregate_runs.py [--cases 2000] [--runs 10000] [--epochs 20]

Writes the run folders (as Hydra and a finished run leave them; cases differ in
learning rate and activation, like a grid search, and each case has runs/cases seeds)
into a temporary directory, then times `aggregate` over them: reading every folder, the
tables, the statistics and the three figures. The goal is under 60 s for 2,000 cases
and 10,000 runs on a 2-core machine; the last line, `ratio: X`, is that 60 s budget
over the measured time (X >= 1 meets it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the run-folder writer the tests use

from flowers_sweep.aggregate import aggregate  # noqa: E402
from tests.helpers.runfolders import write_run  # noqa: E402

BUDGET_S = 60.0
ACTIVATIONS = ("relu", "sigmoid", "leaky_relu")


def write_sweep(sweep: Path, cases: int, runs: int, epochs: int) -> None:
    for job in range(runs):
        case, seed = job % cases, job // cases
        write_run(sweep / str(job), activation=ACTIVATIONS[case % 3], seed=seed,
                  lr=round(1e-4 * (1 + case // 3), 6), epochs=epochs,
                  test_acc=0.3 + 0.4 * ((case * 37) % 101) / 100 + 0.01 * (seed % 3))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="write the sweep here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = args.keep or Path(tmp) / "sweep"
        start = time.perf_counter()
        if not (sweep / "0").is_dir():
            write_sweep(sweep, args.cases, args.runs, args.epochs)
        print(f"wrote {args.runs} run folders in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        report = aggregate([sweep])
        took = time.perf_counter() - start
    print(report.results.head(5).to_string(index=False))
    print(f"aggregated {len(report.runs)} runs, {len(report.results)} cases "
          f"({args.epochs} epochs each) in {took:.2f} s; {len(report.tests)} tests")  # fmt: skip
    print(f"ratio: {BUDGET_S / took:.2f}")


if __name__ == "__main__":
    main()
