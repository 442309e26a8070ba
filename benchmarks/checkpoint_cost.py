"""What checkpoints cost per epoch: every epoch (before) against the interval (now).

    python benchmarks/checkpoint_cost.py [--device cpu] [--quick] [--json FILE]

For each report case's model at the report's size (ResNet-18 and the baseline CNN,
102 classes, 224 px, Adam as `experiment=report` builds them: the run state a run's
set-up builds), after one real training step so that Adam's moments exist, this times
side by side:

- before: what every epoch wrote until now: the whole checkpoint
  (`save_checkpoint(path, state)`) and, when validation improved, `model_best_val.pt`
  (counted here every epoch, as in the early epochs where it does);
- now: what an epoch costs under the default `trainer.checkpoint_every_s=300`, as
  `Checkpointer` does it: every epoch written when epochs take 300 s or more; else one
  write every 300 s of training spread over the epochs in between, plus copies in
  memory of the best weights and of the epoch's state (`checkpoint_state(state,
  copy_tensors=True)`, kept for a stop).

An epoch's own time is measured with a few training steps on this device (6,149 images
at the preset's batch size, extrapolated), or given with --epoch-s. Prints each part,
the share of an epoch each policy takes, and last `ratio: X` (before over now, the
per-epoch overhead saved). Sizes on disk are printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from benchlib import REPORT_SPLIT, bench_state, compose_case, sync, timed, write_json

from flowers_sweep.trainer.checkpoint import (
    Progress,
    checkpoint_state,
    save_checkpoint,
    save_torch,
)
from flowers_sweep.trainer.hardware import resolve_device

CASES = {"resnet18": "relu", "baseline_cnn": "baseline_cnn"}


def best_of(fn, rounds: int, device: torch.device) -> float:
    return min(timed(fn, device) for _ in range(rounds))


def measure(
    case: str,
    size: int,
    steps: int,
    device: torch.device,
    epoch_s: float | None,
    folder: Path,
    rounds: int,
) -> dict:
    cfg = compose_case(case, [f"dataset.image_size={size}"])
    state = bench_state(cfg, device)  # as a run's set-up builds it, less the data
    model, optimizer = state.model, state.optimizer
    bs, classes = cfg.trainer.batch_size, cfg.dataset.num_classes
    x = torch.randn(bs, 3, size, size, device=device)
    x = x.contiguous(memory_format=state.placement.layout)
    y = torch.randint(0, classes, (bs,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # Adam's moments now exist, as in every checkpoint after the first epoch
    if epoch_s is None:
        per_step = statistics.median(timed(step, device) for _ in range(steps))
        epoch_s = per_step * REPORT_SPLIT["train"] / bs
    state.progress = Progress(epoch=1, rows=[{"epoch": 1}])
    ckpt, best = folder / f"{case}-checkpoint.pt", folder / f"{case}-best.pt"
    write_ckpt = best_of(lambda: save_checkpoint(ckpt, state), rounds, device)
    write_best = best_of(lambda: save_torch(best, model.state_dict()), rounds, device)
    copy_state = best_of(lambda: checkpoint_state(state, copy_tensors=True), rounds, device)
    copy_best = best_of(
        lambda: {k: v.clone() for k, v in model.state_dict().items()}, rounds, device
    )
    # Now, as Checkpointer does: a write when due (every epoch once epochs outlast
    # every_s), else a copy of the best weights (when they improve) and of the epoch's
    # state (for a stop); the best weights go to disk with the next checkpoint.
    every_s = cfg.trainer.get("checkpoint_every_s") or 300
    writes_per_epoch = min(1.0, epoch_s / every_s)
    before = write_ckpt + write_best
    copies = 0.0 if writes_per_epoch == 1.0 else copy_best + copy_state
    now = copies + writes_per_epoch * (write_ckpt + write_best)
    sync(device)
    return {
        "epoch_s": epoch_s,
        "checkpoint_mb": ckpt.stat().st_size / 1e6,
        "best_weights_mb": best.stat().st_size / 1e6,
        "write_checkpoint_s": write_ckpt,
        "write_best_s": write_best,
        "copy_state_s": copy_state,
        "copy_best_s": copy_best,
        "every_s": every_s,
        "before_s_per_epoch": before,
        "now_s_per_epoch": now,
        "before_share": before / (epoch_s + before),
        "now_share": now / (epoch_s + now),
        "ratio": before / now,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="64 px, fewer rounds")
    parser.add_argument(
        "--epoch-s", type=float, default=None, help="an epoch's seconds, instead of measuring them"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    size, steps, rounds = (64, 1, 2) if args.quick else (224, 3, 3)  # 2: a warm copy
    figures = {"device": str(device), "image_size": size}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            m = measure(case, size, steps, device, args.epoch_s, Path(tmp), rounds)
            figures[name] = m
            print(
                f"{name} at {size} px: checkpoint {m['checkpoint_mb']:.0f} MB written in "
                f"{m['write_checkpoint_s']:.3f} s, best weights {m['best_weights_mb']:.0f} MB "
                f"in {m['write_best_s']:.3f} s; in-memory copies {m['copy_state_s']:.3f} s + "
                f"{m['copy_best_s']:.3f} s; epoch {m['epoch_s']:.1f} s"
            )
            print(
                f"{name}: before {m['before_s_per_epoch']:.3f} s per epoch "
                f"({100 * m['before_share']:.2f}% of an epoch), now "
                f"{m['now_s_per_epoch']:.3f} s ({100 * m['now_share']:.2f}%): "
                f"{m['ratio']:.1f}x less"
            )
    ratio = min(figures[n]["ratio"] for n in CASES)
    figures["ratio"] = ratio
    write_json(args.json, figures)
    print(f"ratio: {ratio:.1f}")


if __name__ == "__main__":
    main()
