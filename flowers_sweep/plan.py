"""`python -m flowers_sweep.plan [-m] OVERRIDES`: a launch shown before it runs.

It takes the main command's arguments and, launching and writing nothing, lists every
job (Hydra's number, its overrides, its case label as the report's tables will call
it, its folder and whether that folder is done, partial, holds other settings, or is
new), checks every job's config as its run would (all errors at once, one line each,
exit status 2), and estimates the sweep's time and disk from a training step measured
on this machine (trainer/cost.py; `--no-estimate` skips it). The jobs are Hydra's own
expansion of the sweep (job/sweep_plan.py).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flowers_sweep.aggregate.runs import case_labels
from flowers_sweep.job import outcome
from flowers_sweep.job.sweep_plan import DONE, PARTIAL, LaunchPlan, PlannedJob, plan_launch
from flowers_sweep.record.labels import activation_label, model_label
from flowers_sweep.record.legacy import upgrade_settings
from flowers_sweep.record.runrecord import RunRecord
from flowers_sweep.record.settings import flatten

PROG = "flowers_sweep.plan"


def arg_parser() -> argparse.ArgumentParser:
    """The main command's flags (-m, -cd, -cn) and this command's --no-estimate; every
    other argument is one of the launch's Hydra overrides."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        usage=f"python -m {PROG} [-h] [-m] [-cd DIR] [-cn NAME] [--no-estimate] [OVERRIDE ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        description="Show what `python -m flowers_sweep` with the same arguments would run,\n"
        "without running or writing anything: each job's number, overrides, case label,\n"
        "folder and its state (done, partial, other settings, new); every job's config\n"
        "checked (exit status 2 on any error, one line each); the time and disk it takes,\n"
        "from a few training steps of each model measured on this machine.",
        epilog=f"example:\n  python -m {PROG} -m model.activation=relu,sigmoid seed=0,1\n"
        "docs: docs/long_sweeps.md",
    )
    parser.add_argument("-m", "--multirun", action="store_true", help="a sweep, as for a run")
    parser.add_argument(
        "-cd", "--config-dir", metavar="DIR", help="your config folder, searched first"
    )
    parser.add_argument(
        "-cn", "--config-name", metavar="NAME", default="config", help="the primary config"
    )
    parser.add_argument(  # refused: Hydra reads a relative -cp from the package's folder
        "-cp", "--config-path", metavar="DIR", help="not taken here: give your folder as -cd DIR"
    )
    parser.add_argument(
        "--no-estimate", action="store_true", help="skip the measured time and disk estimate"
    )
    return parser


@outcome.command(PROG, HydraException, OmegaConfBaseException)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 when every job is valid, 2 on any error (each on its own line)."""
    args, overrides = arg_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.config_path is not None:
        outcome.error_line(PROG, "-cp is not taken here: give your config folder as -cd DIR")
        return 2
    plan = plan_launch(overrides, args.multirun, args.config_dir, args.config_name)
    labels = job_labels(plan.jobs)
    bad = [job for job in plan.jobs if job.errors]
    costs = None if bad or args.no_estimate else estimate(plan.jobs, labels)
    print("\n".join(render(plan, labels, costs)))
    for job in bad:
        for error in job.errors:
            outcome.error_line(PROG, f"job {job_name(plan, job)}: {error}")
    if bad:
        print(
            f"{PROG}: {len(bad)} of {len(plan.jobs)} jobs invalid; nothing launched",
            file=sys.stderr,
        )
        return 2
    return 0


def job_name(plan: LaunchPlan, job: PlannedJob) -> str:
    """`7 (optimizer.lr=-1 seed=1)`; the base config of a search is `base`."""
    num = "base" if plan.chosen_as_it_runs else str(job.num)
    return f"{num} ({' '.join(job.overrides) or 'the defaults'})"


def job_labels(jobs: Sequence[PlannedJob]) -> list[str]:
    """Each job's case label as the report's tables will give it (aggregate's
    case_labels over the jobs as if all had completed); `?` for a job not composed."""
    composed = [job for job in jobs if job.cfg is not None]
    records = []
    for job in composed:
        cfg, choices = job.cfg, job.choices
        result = {
            "status": "completed",
            "case": choices.get("case"),
            "model": model_label(cfg.model, choices.get("model")),
            "activation": activation_label(OmegaConf.select(cfg, "model.activation")),
        }
        flat = upgrade_settings(flatten(OmegaConf.to_container(cfg, resolve=False)))
        records.append(RunRecord(Path(str(job.num)), flat, result, _choices=choices))
    found = dict(zip([id(j) for j in composed], case_labels(records), strict=True))
    return [found.get(id(job), "?") for job in jobs]


def estimate(jobs: Sequence[PlannedJob], labels: Sequence[str]) -> dict[int, dict[str, Any]]:
    """Per job number: its measured cost, seconds (None: split sizes unknown) and bytes;
    one measurement per distinct model, image size, batch and device, named by the
    label of the first job it measured (`labels`, the jobs' own)."""
    from flowers_sweep.trainer import cost

    measured: dict[str, tuple[cost.StepCost, str]] = {}
    found = {}
    for job, label in zip(jobs, labels, strict=True):
        cfg = job.cfg
        key = cost.measure_key(cfg)
        if key not in measured:
            measured[key] = cost.measure_step(cfg), label
        step, first = measured[key]
        sizes = cost.split_sizes(cfg.dataset)
        seconds = None if sizes is None else cost.run_seconds(step, sizes, cfg.trainer.epochs)
        trainer, ema = cfg.trainer, cfg.trainer.get("ema_decay") is not None
        peak, kept = cost.run_bytes(step, trainer.keep_weights, trainer.keep_checkpoint, ema)
        found[job.num] = {
            "cost": step,
            "basis": f"{first}: {step.basis()}",
            "s": seconds,
            "peak": peak,
            "kept": kept,
            "sizes": sizes,
        }
    return found


def render(
    plan: LaunchPlan, labels: Sequence[str], costs: dict[int, dict[str, Any]] | None
) -> list[str]:
    """The table (one line per job), then what the estimate rests on and the total."""
    head = ["job", "state", "case", "time", "disk", "folder", "overrides"]
    rows = []
    for job, label in zip(plan.jobs, labels, strict=True):
        est = (costs or {}).get(job.num, {})
        state = "INVALID" if job.errors else job.state + (f" ({job.detail})" if job.detail else "")
        rows.append(
            [
                "base" if plan.chosen_as_it_runs else str(job.num),
                state,
                label,
                duration(est["s"]) if est else "-",
                size(est["peak"]) if est else "-",
                str(job.folder) if job.folder else "-",
                " ".join(shlex.quote(o) for o in job.overrides),
            ]
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
        for r in [head, *rows]
    ]
    if plan.chosen_as_it_runs:
        lines.append(plan.chosen_as_it_runs)
    lines.append(total(plan, costs))
    if costs:
        lines += list(dict.fromkeys(c["basis"] for c in costs.values()))
        lines.append(
            "time: training images x epochs, plus validation images every epoch and test "
            "images twice, each evaluation image at about 1/3 of a training image's cost; "
            "one job after another (done jobs are skipped); disk: the checkpoint (weights "
            "and optimizer state) and the weight files a run writes, at most while it runs"
        )
    return [line.rstrip() for line in lines]


def total(plan: LaunchPlan, costs: dict[int, dict[str, Any]] | None) -> str:
    jobs = plan.jobs
    counts = {}
    for job in jobs:
        state = "invalid" if job.errors else job.state
        counts[state] = counts.get(state, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in counts.items())
    line = f"total: {len(jobs)} job{'s' * (len(jobs) != 1)} ({states})"
    if costs is None:
        return line + ("" if any(j.errors for j in jobs) else "; no estimate (--no-estimate)")
    if plan.chosen_as_it_runs:  # one job: the base config, for what a trial costs
        est = costs[jobs[0].num]
        return (
            f"total: a search; a trial with the base config's settings takes "
            f"{duration(est['s'])}, disk up to {size(est['peak'])}"
        )
    todo = [j for j in jobs if j.state != DONE or (j.cfg is not None and j.cfg.resume is False)]
    seconds = [costs[j.num]["s"] for j in todo]
    known = [s for s in seconds if s is not None]
    if len(known) < len(seconds):
        when = f"unknown for {len(seconds) - len(known)} (the dataset does not tell its size)"
        when += f"; {duration(sum(known))} for the others" if known else ""
    else:
        when = f"about {duration(sum(known))} to train"
    resumed = sum(j.state == PARTIAL for j in todo)
    resumed_note = f" (the {resumed} partial counted whole)" if resumed else ""
    peak = sum(costs[j.num]["peak"] for j in todo)
    kept = sum(costs[j.num]["kept"] for j in todo)
    return f"{line}; time: {when}{resumed_note}; disk: {size(kept)} kept, up to {size(peak)}"


def duration(seconds: float | None) -> str:
    """45 s, 3 min 20 s, 2 h 05 min; `unknown` for None."""
    if seconds is None:
        return "unknown"
    s = round(seconds)
    if s < 60:
        return f"{max(seconds, 0):.2g} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def size(n: int) -> str:
    """Bytes in decimal units: 45 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


if __name__ == "__main__":
    sys.exit(main())
