"""A refusal's way out never discards finished work without saying so: `resume=false`
starts over every run of a launch (a sweep's finished runs too), so a hint offers it
only with that warning, and the safe way first (a new folder, deleting the one run)."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from flowers_sweep.errors import CheckpointError, RunFolderError, RunFolderMismatchError
from flowers_sweep.record.runfolder import claim
from flowers_sweep.record.runrecord import RUN_CONFIG_FILE
from flowers_sweep.trainer.checkpoint import load_checkpoint
from flowers_sweep.trainer.runstate import same_classes

from .helpers.runfolders import write_run


def safe(message: str) -> None:
    """One line; resume=false only as what it would do, never as a plain instruction."""
    assert "\n" not in message
    assert "add resume=false" not in message, message
    for at in [m.start() for m in re.finditer("resume=false", message)]:
        assert message[at:].startswith("resume=false would "), message


def claimed(run_dir, **settings):
    """The folder's run recorded as started with its .hydra/config.yaml; the config a
    relaunch with `settings` (dotted keys) would claim it with."""
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    claim(run_dir, cfg)
    other = copy.deepcopy(cfg)
    for key, value in settings.items():
        *parents, last = key.split(".")
        node = other
        for part in parents:
            node = node[part]
        node[last] = value
    return other


def test_a_grown_grid_in_a_sweep_of_finished_runs_keeps_them(tmp_path):
    """The issue's case: `-m seed=0 model.activation=relu,sigmoid` finished, relaunched
    in its folder with seed=0,1: job 1 (seed=0 sigmoid) is asked to hold seed=1 relu."""
    sweep = tmp_path / "sweep"
    for job, activation in enumerate(("relu", "sigmoid")):
        write_run(sweep / str(job), activation=activation, seed=0)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    run_dir = sweep / "1"
    other = claimed(run_dir, **{"seed": 1, "model.activation": "relu"})
    with pytest.raises(RunFolderMismatchError) as refused:
        claim(run_dir, other)
    message = str(refused.value)
    safe(message)
    assert "holds a run with other settings: " in message
    assert "finished and is kept" in message and "new hydra.sweep.dir" in message
    assert "place in the grid" in message  # why the numbers moved
    assert f"delete {run_dir}" in message  # the one way to redo only this run
    assert "resume=false would start every run of the sweep over, finished ones too" in message
    assert (run_dir / "result.json").is_file() and (run_dir / RUN_CONFIG_FILE).is_file()


def test_a_finished_single_run_with_other_settings_is_not_offered_to_resume_false(tmp_path):
    run_dir = write_run(tmp_path / "run")
    other = claimed(run_dir, **{"trainer.epochs": 9})
    with pytest.raises(RunFolderMismatchError) as refused:
        claim(run_dir, other)
    message = str(refused.value)
    safe(message)
    assert "new hydra.run.dir" in message
    assert "resume=false would delete its finished run and train it again" in message


def test_an_unfinished_single_run_may_be_started_over_with_resume_false(tmp_path):
    run_dir = write_run(tmp_path / "run", status=None)
    other = claimed(run_dir, **{"trainer.epochs": 9})
    with pytest.raises(RunFolderMismatchError, match="add resume=false to start it over"):
        claim(run_dir, other)


def test_an_unreadable_record_in_a_sweep_says_to_delete_only_that_run(tmp_path):
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    run_dir = write_run(tmp_path / "0")
    (run_dir / RUN_CONFIG_FILE).write_text('{"config": {"seed"')
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    with pytest.raises(RunFolderError) as refused:
        claim(run_dir, cfg)
    safe(str(refused.value))
    assert f"delete {run_dir}" in str(refused.value)


def test_other_classes_in_a_sweep_are_not_offered_to_resume_false(tmp_path):
    from flowers_sweep.record.runrecord import write_data

    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    run_dir = tmp_path / "0"
    write_data(run_dir, ["daisy", "rose"], [0.5] * 3, [0.2] * 3)
    with pytest.raises(RunFolderMismatchError) as refused:
        same_classes(run_dir, ["daisy", "rose", "aster"])
    safe(str(refused.value))


def test_a_damaged_checkpoint_in_a_sweep_is_not_offered_to_resume_false(tmp_path):
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    path = tmp_path / "0" / "checkpoint.pt"
    path.parent.mkdir()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path, None)
    safe(str(refused.value))
    assert str(path) in str(refused.value)
