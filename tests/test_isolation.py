"""A failure while recording a failure, or while reporting, must not sink the sweep."""

import logging

import pytest
from omegaconf import OmegaConf

import flowers_sweep.aggregate as agg
from flowers_sweep.app import record_failure
from flowers_sweep.callbacks import SweepEnd
from flowers_sweep.job.hydra_job import JobContext

from .helpers.cli import make_cfg
from .helpers.runfolders import write_run


def test_recording_a_failure_that_cannot_be_written_is_logged_not_raised(tmp_path, caplog):
    not_a_folder = tmp_path / "full-disk"
    not_a_folder.write_text("")  # every write below it fails, as on a full disk
    with caplog.at_level(logging.ERROR):
        job = JobContext(OmegaConf.create({"hydra": {"runtime": {
            "output_dir": str(not_a_folder), "choices": {"model": "resnet18"}}}}))  # fmt: skip
        record_failure(job, make_cfg(), "failed", RuntimeError("out of memory"))
    assert "could not record the failure" in caplog.text


def sweep_config(sweep):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})


def test_a_crash_in_the_report_still_gives_the_sweep_its_exit_status(
    tmp_path, monkeypatch, capsys
):
    """Hydra turns an exception in a callback into a warning and exit 0: the callback must
    catch it and say so itself."""
    write_run(tmp_path / "sweep" / "0", case="relu")

    def crash(roots, out=None):
        raise KeyError("lr")

    monkeypatch.setattr(agg, "aggregate", crash)  # the callback imports it from the package
    with pytest.raises(SystemExit) as stop:
        SweepEnd().on_multirun_end(sweep_config(tmp_path / "sweep"))
    assert stop.value.code == 1
    assert "aggregation failed: KeyError: 'lr'" in capsys.readouterr().err


def test_a_broken_run_makes_the_sweep_exit_nonzero_after_its_report(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", case="relu")
    write_run(sweep / "1", case="relu", seed=1)
    (sweep / "1" / "metrics.csv").write_text("epoch\n1\n")
    with pytest.raises(SystemExit) as stop:
        SweepEnd().on_multirun_end(sweep_config(sweep))
    assert stop.value.code == 1
    assert (sweep / "report" / "results.csv").is_file()
    assert f"{sweep / '1'}: broken" in capsys.readouterr().err
