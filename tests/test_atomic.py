import csv
import os
import stat

import pytest

from flowers_sweep.atomic import atomic_write, atomic_write_text, read_json, write_json
from flowers_sweep.record.runrecord import METRIC_COLUMNS, write_metrics


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "file.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]


def test_failed_write_keeps_old_content(tmp_path):
    """A write that dies half way (a kill, a full disk) leaves the old file whole and no
    temporary file behind."""
    path = tmp_path / "result.json"
    write_json(path, {"status": "completed"})

    def dies_half_way(f):
        f.write(b'{"status": "fail')
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, dies_half_way)
    assert read_json(path) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_files_get_the_umask_mode_like_open_and_the_umask_is_left_alone(tmp_path):
    old = os.umask(0o027)
    try:
        write_json(tmp_path / "result.json", {"a": 1})
        assert os.umask(0o027) == 0o027  # not changed behind the caller's back
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == 0o640


def test_metrics_columns_in_order(tmp_path):
    row = dict.fromkeys(METRIC_COLUMNS, 1) | {"extra": 5}
    write_metrics(tmp_path, [row, {**row, "epoch": 2}])
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text().splitlines()))
    assert list(rows[0]) == list(METRIC_COLUMNS)
    assert [r["epoch"] for r in rows] == ["1", "2"]  # the extra key is not written
