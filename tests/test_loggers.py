"""TensorBoard event files: readable while the run trains, no epoch twice after a resume."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from flowers_sweep.errors import ConfigError
from flowers_sweep.loggers import NoLogger, TensorBoardLogger, build_logger
from flowers_sweep.trainer.training import logged_settings

from .helpers.cli import make_cfg


def row(epoch, val_acc):
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5, "val_loss": 2.0,
            "val_acc": val_acc, "lr": 0.001, "epoch_s": 0.1}  # fmt: skip


def read(run_dir, tag="val_acc"):
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)]


def test_each_epoch_is_on_disk_before_the_next_starts(tmp_path):
    """A run killed mid-training keeps every finished epoch's points: no close needed."""
    logger = TensorBoardLogger(tmp_path, resumed_after=0)
    logger.log_epoch(row(1, 0.25))
    logger.log_epoch(row(2, 0.5))
    assert read(tmp_path) == [(1, 0.25), (2, 0.5)]
    logger.close()


def test_a_resumed_run_shows_each_epoch_once(tmp_path):
    """The killed process logged epoch 3 but checkpointed only epoch 2: the resumed run
    trains epoch 3 again, and its value replaces the first one."""
    first = TensorBoardLogger(tmp_path, resumed_after=0)
    for epoch in (1, 2, 3):
        first.log_epoch(row(epoch, epoch / 10))
    first.close()
    again = TensorBoardLogger(tmp_path, resumed_after=2)
    again.log_epoch(row(3, 0.33))
    again.log_epoch(row(4, 0.44))
    again.close()
    assert read(tmp_path) == [(1, 0.1), (2, 0.2), (3, 0.33), (4, 0.44)]


def test_final_metrics_and_settings_go_to_the_run_folder_itself(tmp_path):
    logger = TensorBoardLogger(tmp_path, resumed_after=0)
    logger.log_epoch(row(1, 0.5))
    settings = logged_settings(make_cfg("trainer.epochs=1"))
    logger.log_final(settings, {"test_acc": 0.75, "best_val_acc": 0.5})
    logger.close()
    assert [p.parent for p in tmp_path.rglob("events.out.tfevents.*")] == [tmp_path]
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.value for e in acc.Scalars("final/test_acc")] == [0.75]
    content = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in content
    start = content["_hparams_/session_start_info"].decode("latin-1")
    assert "optimizer.lr" in start and "scheduler.milestones" in start
    assert "trainer.threads" not in start  # a relaunch may change it: not a setting
    assert "seed" in settings and "resume" not in settings


def test_logger_none_writes_nothing_and_a_bad_name_is_named(tmp_path):
    assert isinstance(build_logger(make_cfg("logger=none").logger, tmp_path, 0), NoLogger)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match=r"_target_='flowers_sweep\.loggers\.Wandb'.*import"):
        build_logger({"_target_": "flowers_sweep.loggers.Wandb"}, tmp_path, 0)
