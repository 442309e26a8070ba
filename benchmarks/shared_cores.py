"""Runs that share the CPU: one run alone, two launched at once, one beside a busy loop,
with the thread policy of before issue 38 and with today's.

    python benchmarks/shared_cores.py [--epochs 2] [--image-size 32] [--train-size 400]
        [--hogs N] [overrides ...]

Each run is the real command line, `python -m flowers_sweep` in a process of its own
(ResNet-18, as the defaults compose it, at the given scale), so each pays and shows
what a user's run does. Two times per run: its training time (result.json's `wall_s`:
set-up, epochs and test, as the run logs it) and the mean of its logged `epoch_s`.

- before: `trainer.threads=<every CPU>`: each run starts a torch thread per core,
  whatever else runs, as every run did before.
- today: the default `trainer.threads=auto`: the run's share of the CPUs among this
  package's runs on them, and no more than other processes leave idle
  (trainer/cpu_share.py).

Scenarios, each with both policies: alone; two runs launched at once (two separate
commands, as two terminals do); one run beside a busy loop in `--hogs` processes (a
foreign program, default: one per CPU). Printed: each scenario's times and their ratio
to the same policy's run alone (two runs sharing the cores fairly take up to 2x, as
long as one alone uses them all); and, for a sweep here, jobs two at a time against one
at a time at every thread (throughput). The last line is `ratio: X`: today's two-at-once
slowdown over before's (X < 1: today's is smaller).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def launch(folder: Path, overrides: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "flowers_sweep", f"hydra.run.dir={folder}", *overrides]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def times(folder: Path) -> tuple[float, float]:
    """The run's training time (result.json's wall_s) and mean epoch time, in s."""
    with open(folder / "metrics.csv", newline="") as f:
        epochs = [float(row["epoch_s"]) for row in csv.DictReader(f)]
    wall = json.loads((folder / "result.json").read_text())["wall_s"]
    return wall, sum(epochs) / len(epochs)


def threads_logged(folder: Path) -> str:
    lines = (folder / "flowers_sweep.log").read_text().splitlines()
    return next((line.split(" - ", 1)[1] for line in lines if "torch threads:" in line), "?")


def run_together(root: Path, name: str, n: int, overrides: list[str]) -> tuple[float, float, str]:
    """Launch n runs at once; the slowest one's times, and its threads as logged."""
    folders = [root / f"{name}-{i}" for i in range(n)]
    procs = [launch(folder, overrides) for folder in folders]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"a run failed:\n{err[-2000:]}")
    slowest = max(folders, key=lambda f: times(f)[0])
    return (*times(slowest), threads_logged(slowest))


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
        f"dataset.train_size={args.train_size}", "logger=none", *args.overrides,
    ]  # fmt: skip
    policies = {"before": [f"trainer.threads={cpus()}"], "today": []}
    print(f"{cpus()} CPU(s); ResNet-18, {args.epochs} epochs at {args.image_size} px, "
          f"{args.train_size} training images; the slowest run's times, as logged")  # fmt: skip
    table: dict[tuple[str, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for policy, extra in policies.items():
            runs = [*overrides, *extra]
            for scenario, label in (("alone", "alone"), ("two", "two at once"),
                                    ("busy", f"beside {args.hogs} hog(s)")):  # fmt: skip
                stop = mp.Event()
                hogs = [mp.Process(target=hog, args=(stop,), daemon=True)
                        for _ in range(args.hogs if scenario == "busy" else 0)]  # fmt: skip
                for h in hogs:
                    h.start()
                time.sleep(1.0 if hogs else 0)
                try:
                    wall, epoch, why = run_together(
                        root, f"{policy}-{scenario}", 2 if scenario == "two" else 1, runs
                    )
                finally:
                    stop.set()
                    for h in hogs:
                        h.join()
                table[policy, scenario] = wall, epoch
                alone_wall, alone_epoch = table[policy, "alone"]
                print(
                    f"{policy:>6}  {label:<16} run {wall:6.1f} s ({wall / alone_wall:4.2f}x "
                    f"alone)  epoch {epoch:6.2f} s ({epoch / alone_epoch:4.2f}x)  [{why}]"
                )
    # A sweep of many jobs here: one at a time at every thread (the basic launcher, as
    # before), or two at a time (joblib n_jobs=2) sharing the cores (today's policy).
    one_by_one = table["before", "alone"][0]
    two_by_two = table["today", "two"][0] / 2
    gain = one_by_one / two_by_two
    print(
        f"sweep throughput, two jobs at a time over one at a time: {gain:4.2f}x "
        f"({two_by_two:.1f} s of training a job against {one_by_one:.1f} s)"
    )
    slow = {p: table[p, "two"][0] / table[p, "alone"][0] for p in policies}
    busy = {p: table[p, "busy"][0] / table[p, "alone"][0] for p in policies}
    print(
        f"two at once, run time over alone: before {slow['before']:.2f}x, "
        f"today {slow['today']:.2f}x"
    )
    print(f"beside the hogs, run time over alone: before {busy['before']:.2f}x, "
          f"today {busy['today']:.2f}x")  # fmt: skip
    print(f"ratio: {slow['today'] / slow['before']:.3f}")


if __name__ == "__main__":
    main()
