"""A command that cannot write its output where asked (a file in the way of a folder, a
folder in the way of a file) says so in one line naming the path, exit status 2, no
traceback: aggregate, evaluate, data.preview (summary and predict write nothing)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from flowers_sweep import evaluate
from flowers_sweep.aggregate.cli import main as aggregate_main
from flowers_sweep.atomic import OutputError, writing_to
from flowers_sweep.record.runrecord import evaluation_files

from .helpers.cli import TINY
from .helpers.runfolders import write_run


def one_error_line(capsys, prog: str, path) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog}: error: cannot write ") and str(path) in lines[0], err
    return lines[0]


def a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    for job, seed in enumerate((0, 1)):
        write_run(sweep / str(job), case="relu", seed=seed)
    return sweep


def test_aggregate_with_a_file_where_the_report_folder_goes_is_one_line(tmp_path, capsys):
    sweep = a_sweep(tmp_path)
    (sweep / "report").write_text("not a folder")
    assert aggregate_main([str(sweep)]) == 2
    line = one_error_line(capsys, "flowers_sweep.aggregate", sweep / "report")
    assert "a file is in the way" in line
    assert (sweep / "report").read_text() == "not a folder"


def test_aggregate_into_a_folder_under_a_file_is_one_line(tmp_path, capsys):
    sweep = a_sweep(tmp_path)
    (tmp_path / "blocked").write_text("")
    assert aggregate_main([str(sweep), "--out", str(tmp_path / "blocked" / "report")]) == 2
    one_error_line(capsys, "flowers_sweep.aggregate", tmp_path / "blocked")


def test_evaluate_with_a_folder_where_its_table_goes_is_one_line(tmp_path, capsys, monkeypatch):
    run_dir = write_run(tmp_path / "run")
    names = ["a", "b", "c"]
    monkeypatch.setattr(evaluate, "restore", lambda *a: SimpleNamespace(class_names=names))
    logits, labels = torch.eye(3).repeat(2, 1), torch.arange(3).repeat(2)
    monkeypatch.setattr(evaluate, "predictions", lambda *a: (logits, labels))
    table_file, _ = evaluation_files(run_dir)
    table_file.mkdir()  # a folder where the CSV goes
    assert evaluate.main([str(run_dir)]) == 2
    line = one_error_line(capsys, "flowers_sweep.evaluate", table_file)
    assert "a folder is in the way" in line


def test_data_preview_into_a_folder_under_a_file_is_one_line(tmp_path, capsys, cache_dir):
    from flowers_sweep.data import preview

    (tmp_path / "blocked").write_text("")
    out = tmp_path / "blocked" / "preview.png"
    tiny = [o for o in TINY if o.startswith("dataset.")]
    argv = ["--out", str(out), "--images", "2", "--views", "1", *tiny]
    assert preview.main([*argv, f"dataset.cache_dir={cache_dir}"]) == 2
    one_error_line(capsys, "flowers_sweep.data.preview", tmp_path / "blocked")


def test_writing_to_names_the_path_and_keeps_one_line(tmp_path):
    denied = pytest.raises(OutputError, match=r"^cannot write x to /nowhere/y: permission denied$")
    with denied, writing_to(tmp_path, "x"):
        raise PermissionError(13, "Permission denied", "/nowhere/y")
    full = pytest.raises(OutputError, match=f"^cannot write x to {tmp_path}: the disk is full$")
    with full, writing_to(tmp_path, "x"):  # a temporary file's folder is the place named
        raise OSError(28, "No space left on device", str(tmp_path / ".r.csv.ab12.tmp"))
