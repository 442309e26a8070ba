import csv
import json

import pytest

from flowers_sweep.runfolder import (
    METRIC_COLUMNS,
    atomic_write_text,
    read_json,
    write_json,
    write_metrics,
)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "file.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]


def test_failed_write_keeps_old_content(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"status": "completed"})

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_json(path, {"bad": Boom()})
    assert read_json(path) == {"status": "completed"}
    assert len(list(tmp_path.iterdir())) == 1


def test_metrics_columns_in_order(tmp_path):
    row = dict.fromkeys(METRIC_COLUMNS, 1) | {"extra": 5}
    write_metrics(tmp_path / "metrics.csv", [row, {**row, "epoch": 2}])
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text().splitlines()))
    assert list(rows[0]) == list(METRIC_COLUMNS)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    json.dumps(rows)
