"""Runs that share the CPU: one run alone, two launched at once, one beside a busy loop,
with the thread policy of before issue 38 and with today's.

    python benchmarks/shared_cores.py [--epochs 2] [--image-size 32] [--train-size 400]
        [--hogs N] [overrides ...]

Each run is the real command line, `python -m flowers_sweep` in a process of its own
(ResNet-18, as the defaults compose it, at the given scale), so each pays and shows
what a user's run does. A run's time is the mean of its logged `epoch_s` (metrics.csv),
so start-up and data set-up are left out and two runs launched together are timed over
the same epochs.

- before: `trainer.threads=<every CPU>` and OpenMP's default wait (GOMP_SPINCOUNT=300000,
  what libgomp spins when OMP_WAIT_POLICY is unset): each run starts a thread per core,
  whatever else runs, as every run did before.
- today: the defaults (`trainer.threads=auto`: the CPUs shared by this package's runs on
  them, trainer/cpu_share.py; OpenMP threads wait passively, flowers_sweep/__init__.py).

Scenarios, each with both policies: alone; two runs launched at once (two separate
commands, as two terminals do); one run beside a busy loop in `--hogs` processes (a
foreign program, default: one per CPU). Printed: each scenario's epoch time and its
ratio to the same policy's run alone (a fair share of 2 cores between two runs is 2x);
and, for a sweep on this machine, jobs two at a time at one thread each against one
at a time at every thread (throughput). The last line is `ratio: X`: today's two-at-once
slowdown over before's (X < 1: today's is smaller).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEFORE_ENV = {"GOMP_SPINCOUNT": "300000"}  # libgomp's own spin when no policy is set


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def launch(folder: Path, overrides: list[str], env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "flowers_sweep", f"hydra.run.dir={folder}", *overrides]
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return subprocess.Popen(command, cwd=REPO, env=clean | env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def epoch_s(folder: Path) -> float:
    with open(folder / "metrics.csv", newline="") as f:
        times = [float(row["epoch_s"]) for row in csv.DictReader(f)]
    return sum(times) / len(times)


def threads_logged(folder: Path) -> str:
    lines = (folder / "flowers_sweep.log").read_text().splitlines()
    return next((line.split(" - ", 1)[1] for line in lines if "torch threads:" in line), "?")


def run_together(root: Path, name: str, n: int, overrides: list[str], env: dict) -> list[float]:
    folders = [root / f"{name}-{i}" for i in range(n)]
    procs = [launch(folder, overrides, env) for folder in folders]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"a run failed:\n{err[-2000:]}")
    return [epoch_s(folder) for folder in folders], [threads_logged(f) for f in folders]


def hog(stop: mp.Event) -> None:  # a foreign program: one core kept busy
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=400)
    parser.add_argument("--hogs", type=int, default=cpus())
    parser.add_argument("overrides", nargs="*", help="more overrides for every run")
    args = parser.parse_args()
    overrides = [
        f"trainer.epochs={args.epochs}", f"dataset.image_size={args.image_size}",
        f"dataset.train_size={args.train_size}", "dataset.val_size=100",
        "dataset.test_size=100", "logger=none", *args.overrides,
    ]  # fmt: skip
    policies = {
        "before": (BEFORE_ENV, [f"trainer.threads={cpus()}"]),
        "today": ({}, []),
    }
    print(f"{cpus()} CPU(s); ResNet-18, {args.epochs} epochs at {args.image_size} px, "
          f"{args.train_size} training images; epoch time as each run logged it")  # fmt: skip
    table: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for policy, (env, extra) in policies.items():
            runs = [*overrides, *extra]
            (alone,), why = run_together(root, f"{policy}-alone", 1, runs, env)
            table[policy, "alone"] = alone
            print(f"{policy:>6}  alone            {alone:6.2f} s/epoch   ({why[0]})")
            both, why = run_together(root, f"{policy}-two", 2, runs, env)
            table[policy, "two"] = max(both)
            print(f"{policy:>6}  two at once      {max(both):6.2f} s/epoch   "
                  f"{max(both) / alone:4.2f}x alone   ({why[0]})")  # fmt: skip
            stop = mp.Event()
            hogs = [mp.Process(target=hog, args=(stop,), daemon=True) for _ in range(args.hogs)]
            for h in hogs:
                h.start()
            time.sleep(1.0)
            try:
                (busy,), why = run_together(root, f"{policy}-busy", 1, runs, env)
            finally:
                stop.set()
                for h in hogs:
                    h.join()
            table[policy, "busy"] = busy
            print(f"{policy:>6}  beside {args.hogs} hog(s)  {busy:6.2f} s/epoch   "
                  f"{busy / alone:4.2f}x alone   ({why[0]})")  # fmt: skip
        # A sweep of many jobs on this machine: one at a time with every core (the basic
        # launcher, before), or two at a time (joblib n_jobs=2) sharing them (today).
        one_by_one = table["before", "alone"]
        two_by_two = table["today", "two"] / 2
        print(f"sweep throughput, two jobs at a time over one at a time: "
              f"{one_by_one / two_by_two:4.2f}x (epoch time per job {two_by_two:.2f} s "
              f"against {one_by_one:.2f} s)")  # fmt: skip
    before = table["before", "two"] / table["before", "alone"]
    today = table["today", "two"] / table["today", "alone"]
    print(f"two at once, slowdown over alone: before {before:.2f}x, today {today:.2f}x")
    print(f"ratio: {today / before:.3f}")


if __name__ == "__main__":
    main()
