"""Hydra callbacks: what happens when a multirun ends.

They read the sweep folder from disk, like the command-line aggregator, so they work
the same whether the launcher ran the jobs in this process, in a joblib pool or on
SLURM.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from flowers_sweep.runfolder import is_held

log = logging.getLogger(__name__)


def unfinished_runs(sweep_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Job folders whose result says failed, diverged or interrupted, or has no result.

    A folder still locked now belongs to a process of another launch (this launch's jobs
    have all returned): it is reported as running elsewhere, skipped by this launch.
    """
    bad = []
    for job in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()):
        if is_held(job):
            bad.append((job, {"status": "skipped", "error": "still training in another process"}))
            continue
        try:
            result = json.loads((job / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {"status": "unfinished", "error": "no readable result.json"}
        if not isinstance(result, dict):
            result = {"status": "unfinished", "error": "result.json is not an object"}
        if result.get("status") != "completed":
            bad.append((job, result))
    return bad


class SweepEnd(Callback):
    """Write SWEEP_DIR/report/ (unless `aggregate=false`), then fail if any run did.

    The exit status is non-zero when a run failed, so scripts and CI notice; the
    message lists each such run and why, after the report has been written.
    """

    def __init__(self, aggregate: bool = True) -> None:
        self.aggregate = aggregate

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        problems = self._aggregate(sweep_dir) if self.aggregate else []
        bad = unfinished_runs(sweep_dir) if sweep_dir.is_dir() else []
        lines = []
        if bad:
            lines.append(f"flowers_sweep: {len(bad)} run(s) of the sweep did not complete:")
            for job, result in bad:
                why = result.get("error", "")
                kind = result.get("error_type")
                lines.append(
                    f"  {job}: {result.get('status')}: {f'{kind}: ' if kind else ''}{why}"
                )
        if problems:
            lines.append("flowers_sweep: the report is incomplete:")
            lines += [f"  {p}" for p in problems]
        if lines:
            print("\n".join(lines), file=sys.stderr)
            sys.exit(1)

    @staticmethod
    def _aggregate(sweep_dir: Path) -> list[str]:
        """Write the report; what kept it from being whole (broken runs, a figure)."""
        from flowers_sweep.aggregate import aggregate, console_text
        from flowers_sweep.errors import FlowersSweepError

        try:
            report = aggregate([sweep_dir])
        except FlowersSweepError as exc:  # nothing to aggregate: the run list says why
            log.warning("aggregation skipped: %s", exc)
            return []
        except Exception as exc:  # a bug or a disk error must not hide the sweep's status
            log.exception("aggregation failed")
            return [f"aggregation failed: {type(exc).__name__}: {exc}"]
        log.info("results table and figures written to %s\n%s", report.out, console_text(report))
        return report.problems
