"""A report-scale run killed after its first epoch and resumed, against an uninterrupted twin.

    python benchmarks/resume_check.py [--device cuda] [--per-split 1024] [--epochs 2]
        [--compile] [--json FILE] [overrides ...]

Writes a Flowers102 tree in torchvision's layout from generated images (no download; a
few drawn, the rest copies), then runs the real CLI twice with `experiment=report` at
224 px: once straight through, once killed with SIGKILL as soon as its first epoch is
in metrics.csv and relaunched. Both write a checkpoint every epoch
(`trainer.checkpoint_every_epochs=1`, where the config has the key), so the kill lands
after one. `--compile` runs both with `trainer.compile=true`. Prints the time per epoch,
whether the resumed run's per-epoch metrics and test accuracy equal the twin's (and the
largest difference if not), and last a one-line summary. Exit status 0 when they match
within --tolerance (0: bit for bit). Extra Hydra overrides (e.g. case=baseline_cnn)
apply to both runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import compose_case, sized_for, write_flowers_tree, write_json

ROOT = Path(__file__).resolve().parent.parent
COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


def cli(args: list[str], cache: Path) -> subprocess.Popen:
    env = {**os.environ, "FLOWERS_SWEEP_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "flowers_sweep", *args], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"resume_check: {what} failed (exit {proc.returncode}):\n{err[-3000:]}")


def rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def kill_after_first_epoch(args: list[str], run_dir: Path, cache: Path) -> bool:
    """True when the kill landed mid-run (the run had not finished)."""
    proc = cli(args, cache)
    while len(rows(run_dir)) < 1:
        if proc.poll() is not None:
            finish(proc, "the run to be killed")
            return False
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return not (run_dir / "result.json").is_file()


def resumed_after(run_dir: Path) -> int | None:
    """The epoch the relaunch resumed after, from the run's log; None if it started over."""
    found = None
    for log in run_dir.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "resumed from" in line and "after epoch" in line:
                found = int(line.rsplit("after epoch", 1)[1].split()[0])
    return found


def largest_difference(a: Path, b: Path) -> float:
    ra, rb = rows(a), rows(b)
    if len(ra) != len(rb):
        return float("inf")
    diffs = [abs(float(x[k]) - float(y[k])) for x, y in zip(ra, rb, strict=True) for k in COMPARED]
    acc = [json.loads((d / "result.json").read_text())["test_acc"] for d in (a, b)]
    return max([*diffs, abs(acc[0] - acc[1])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image-size", type=int, help="default: 224 on a GPU, 64 on a CPU")
    parser.add_argument(
        "--per-split", type=int, help="images per split; default: 1024 on a GPU, 128 on a CPU"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.0)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder")
    parser.add_argument("--compile", action="store_true", help="trainer.compile=true")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    args = parser.parse_args()
    print(sized_for(args, {"image_size": 224, "per_split": 1024},
                    {"image_size": 64, "per_split": 128}))  # fmt: skip
    work = args.workdir or Path(tempfile.mkdtemp(prefix="resume_check-"))
    started = time.perf_counter()
    write_flowers_tree(work / "data", per_split=args.per_split, size=64, upscale_to=(320, 240))
    print(f"tree: {3 * args.per_split} generated JPEGs in {time.perf_counter() - started:.1f} s")
    common = [
        "experiment=report", f"dataset.root={work / 'data'}", "dataset.verify_checksums=false",
        f"dataset.image_size={args.image_size}", f"trainer.epochs={args.epochs}",
        f"trainer.device={args.device}", f"trainer.compile={str(args.compile).lower()}",
        *args.overrides,
    ]  # fmt: skip
    if "checkpoint_every_epochs" in compose_case("relu").trainer:
        common.append("trainer.checkpoint_every_epochs=1")  # the kill must find a checkpoint
    twin, resumed, cache = work / "twin", work / "resumed", work / "cache"
    t0 = time.perf_counter()
    finish(cli([*common, f"hydra.run.dir={twin}"], cache), "the uninterrupted twin")
    twin_s = time.perf_counter() - t0
    epoch_s = [float(r["epoch_s"]) for r in rows(twin)]
    print(f"twin: {twin_s:.1f} s wall, epochs {', '.join(f'{s:.2f}' for s in epoch_s)} s")
    args_resumed = [*common, f"hydra.run.dir={resumed}"]
    if not kill_after_first_epoch(args_resumed, resumed, cache):
        print("resume: the run finished before the kill landed; use more --per-split")
        return 1
    print(f"killed after epoch {len(rows(resumed))}; relaunching")
    finish(cli(args_resumed, cache), "the resumed run")
    after = resumed_after(resumed)
    print(f"the relaunch {'started over' if after is None else f'resumed after epoch {after}'}")
    diff = largest_difference(twin, resumed)
    same = diff <= args.tolerance
    verdict = "equal to the twin" if diff == 0 else f"largest difference {diff:.3g}"
    how = "compiled" if args.compile else "eager"
    print(f"summary: resume_check {how} {args.device} {args.image_size}px {args.epochs} epochs, "
          f"{mean_s(epoch_s)} s/epoch: killed and resumed run {verdict}"
          f"{'' if same else ' (over tolerance)'}")  # fmt: skip
    write_json(args.json, {
        "device": args.device, "compile": args.compile, "image_size": args.image_size,
        "images_per_split": args.per_split, "epochs": args.epochs, "twin_wall_s": round(twin_s, 2),
        "epoch_s": epoch_s, "largest_difference": diff if diff != float("inf") else None,
        "tolerance": args.tolerance, "equal": same, "resumed_after_epoch": after,
        "overrides": args.overrides,
    })  # fmt: skip
    if after is None:
        print("resume: the relaunch found no checkpoint, so nothing was resumed")
        return 1
    return 0 if same else 1


def mean_s(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "?"


if __name__ == "__main__":
    sys.exit(main())
