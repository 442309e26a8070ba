"""The run record: one reader and one writer of what a run folder holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowers_sweep.record.legacy import upgrade_settings
from flowers_sweep.record.runrecord import (
    COMPLETED_KEYS,
    METRIC_COLUMNS,
    METRICS_FILE,
    RESULT_FILE,
    RUN_KEYS,
    TRACEBACK_FILE,
    RunRecordError,
    completed_record,
    completed_result,
    find_run_dirs,
    read_metrics,
    read_result,
    read_run,
    stopped_record,
    write_metrics,
    write_result,
)
from flowers_sweep.record.settings import EXECUTION_SETTINGS, experiment_settings

from .helpers.runfolders import write_run

OLD_SWEEP = Path(__file__).parent / "data" / "sweep_v1"
# a stopped run's result.json, in this order (a pruned one adds its best epoch)
STOPPED_KEYS = (*RUN_KEYS, "error_type", "error", "epochs_done", "traceback")


def completed(**changes: object) -> dict:
    values = dict.fromkeys(COMPLETED_KEYS[1:], 1) | {"test_acc": 0.5} | changes
    return completed_record(**values)


def test_records_keep_their_key_order():
    assert tuple(completed()) == COMPLETED_KEYS
    stopped = stopped_record("failed", ValueError("bad"), 2, case="relu", seed=0)
    assert tuple(stopped) == STOPPED_KEYS
    assert stopped["error_type"] == "ValueError" and stopped["error"] == "bad"
    assert stopped["traceback"] == TRACEBACK_FILE and stopped["model"] is None


def test_a_pruned_record_says_its_best_epoch_so_far_and_a_failed_one_its_traceback():
    rows = [{"epoch": "1", "val_acc": "0.25"}, {"epoch": "2", "val_acc": "0.5"},
            {"epoch": "3", "val_acc": "0.375"}]  # fmt: skip
    pruned = stopped_record("pruned", ValueError("pruned"), 3, best_of=rows, traceback=False)
    assert (pruned["best_val_acc"], pruned["best_epoch"]) == (0.5, 2)
    assert "traceback" not in pruned
    nothing_yet = stopped_record("pruned", ValueError("pruned"), 0, best_of=[], traceback=False)
    assert (nothing_yet["best_val_acc"], nothing_yet["best_epoch"]) == (None, None)
    assert "best_val_acc" not in stopped_record("failed", ValueError("bad"), 3)


def test_a_completed_result_reads_back_and_clears_an_old_traceback(tmp_path):
    (tmp_path / TRACEBACK_FILE).write_text("an earlier attempt failed here")
    write_result(tmp_path, stopped_record("interrupted", KeyboardInterrupt(), 1))
    assert (tmp_path / TRACEBACK_FILE).is_file()  # it describes the stopped attempt
    assert completed_result(tmp_path) is None
    write_result(tmp_path, completed())
    assert read_result(tmp_path) == completed()
    assert completed_result(tmp_path) == completed()
    assert not (tmp_path / TRACEBACK_FILE).exists()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "JSONDecodeError"),
        ("[1]", "not a JSON object"),
        (json.dumps({"status": "completed", "test_acc": 1.5}), "test_acc=1.5"),
        (json.dumps({"status": "completed", "test_acc": True}), "test_acc=True"),
    ],
)
def test_an_untrustworthy_result_is_an_error_naming_the_file(tmp_path, text, why):
    (tmp_path / RESULT_FILE).write_text(text)
    with pytest.raises(RunRecordError, match=why) as raised:
        read_result(tmp_path)
    assert str(tmp_path / RESULT_FILE) in str(raised.value)
    assert completed_result(tmp_path) is None
    assert read_run(tmp_path).status == "broken"


def test_metrics_round_trip_as_numbers_and_name_bad_lines(tmp_path):
    assert read_metrics(tmp_path) == []
    rows = [dict.fromkeys(METRIC_COLUMNS, 0.5) | {"epoch": e} for e in (1, 2)]
    write_metrics(tmp_path, rows)
    assert read_metrics(tmp_path) == [{k: float(v) for k, v in r.items()} for r in rows]
    (tmp_path / METRICS_FILE).write_text("epoch,lr\n1,x\n")
    with pytest.raises(RunRecordError, match="line 2 is not all numbers"):
        read_metrics(tmp_path, required=())
    with pytest.raises(RunRecordError, match="no column train_loss"):
        read_metrics(tmp_path)


def test_execution_settings_are_not_the_experiment():
    config = {"seed": 1, "trainer": {"device": "cuda", "epochs": 5}, "resume": True}
    # what is left is the experiment's keys, brought up to today's by legacy.py
    assert experiment_settings(config) == upgrade_settings({"seed": 1, "trainer.epochs": 5})
    assert "trainer.device" not in experiment_settings(config)
    assert {"trainer.device", "resume"} <= set(EXECUTION_SETTINGS)


def test_run_folders_are_found_in_natural_order(tmp_path):
    for job in (10, 2, 1):
        write_run(tmp_path / str(job), case="relu", seed=job)
    write_run(tmp_path / "report" / "0", case="relu")  # not a job of the sweep
    assert [p.name for p in find_run_dirs(tmp_path, skip="report")] == ["1", "2", "10"]


def test_folders_written_by_an_earlier_version_still_read():
    records = [read_run(p) for p in find_run_dirs(OLD_SWEEP)]
    assert [r.status for r in records] == ["completed"] * 6 + ["interrupted"]
    assert [r.case for r in records[:2]] == ["relu", "relu"]
    assert all(len(r.metrics) == 2 for r in records[:6]) and records[6].metrics == []
    assert records[0].config["optimizer.lr"] == 0.001
    assert records[6].result["error_type"] == "Terminated"
