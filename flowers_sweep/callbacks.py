"""Hydra callbacks: the aggregator runs by itself when a multirun ends.

It reads the sweep folder from disk, like the command-line aggregator, so it works the
same whether the launcher ran the jobs in this process, in a joblib pool or on SLURM.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class AggregateOnMultirunEnd(Callback):
    """Write SWEEP_DIR/report/ after every multirun (`aggregate=false` turns it off)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from flowers_sweep.aggregate import aggregate
        from flowers_sweep.errors import FlowersSweepError

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = aggregate([sweep_dir])
        except FlowersSweepError as exc:  # a report is a bonus: never fail the sweep for it
            log.warning("aggregation skipped: %s", exc)
            return
        log.info("results table and figures written to %s\n%s", report.out, report.markdown)
