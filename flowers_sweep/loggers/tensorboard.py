"""TensorBoard: event files in each run folder.

`tensorboard --logdir SWEEP_DIR` lists a sweep's runs side by side (named by their job
folder) while they train, and its HParams tab compares their settings and final metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowers_sweep.loggers.base import FINAL_PREFIX


def hparam_value(value: Any) -> bool | int | float | str:
    """TensorBoard's HParams take numbers, booleans and strings; lists are shown as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else str(value)


class TensorBoardLogger:
    """Event files in the run folder, one point per epoch for every metrics.csv column.

    A resumed run must not show an epoch twice: the writer starts with a purge at the
    first epoch it will train, which tells TensorBoard to drop every point from that
    step on written by the process that stopped (its last epoch may have been logged
    but not checkpointed). Each epoch is flushed as it ends, so a killed run loses no
    more than the epoch in progress; a half-written last record is skipped on reading.
    """

    def __init__(self, run_dir: Path, resumed_after: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=resumed_after + 1)
        self.last_epoch = resumed_after

    def log_epoch(self, row: dict[str, float]) -> None:
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()
        self.last_epoch = epoch

    def log_final(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        """What `SummaryWriter.add_hparams` writes, into this writer's own folder: the
        library's method would open a second run in a subfolder, and the sweep view
        would list every run twice."""
        from torch.utils.tensorboard.summary import hparams

        tagged = {FINAL_PREFIX + k: v for k, v in metrics.items()}
        clean = {k: hparam_value(v) for k, v in settings.items()}
        for summary in hparams(clean, tagged):
            self.writer.file_writer.add_summary(summary)
        for tag, value in tagged.items():
            self.writer.add_scalar(tag, value, self.last_epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
