"""docs/data.md as a user follows it: a folder of photos (generated: odd modes and
sizes, one broken file), the page's files written out, its marked commands run in
that folder with tiny settings appended: preview and the photos' training through the
real CLI; the others (evaluate, the own dataset's run, the error) with their main()s in
this process, as `python -m` runs them from that folder."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from flowers_sweep import evaluate, predict
from flowers_sweep.record.runrecord import read_data

from .helpers.cli import ROOT, result, run_app_in_process
from .helpers.datasets import CORRUPT_NAME, make_image_folder
from .test_extending import Command, read_page, run_in_process, run_step

PAGE = ROOT / "docs" / "data.md"
FILES, RUNS, ALL_COMMANDS = read_page(PAGE.read_text(encoding="utf-8"))
STEPS = {"preview", "photos", "evaluate", "own"}
# the model too: what the page shows (classes by folder name, your own dataset) is any model's
SMALL = ["trainer.epochs=1", "trainer.batch_size=16", "dataset.image_size=32", "trainer.threads=1",
         "model=baseline_cnn"]  # fmt: skip
CLASSES = ("daisy", "rose", "tulip")  # the page's


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The page's folder: photos/ of class folders, photos.csv listing them, its files."""
    root = tmp_path_factory.mktemp("data_page")
    photos = make_image_folder(root / "photos", classes=CLASSES, per_class=8, corrupt=True)
    with open(root / "photos.csv", "w", newline="") as f:
        csv.writer(f).writerows((str(p.relative_to(root)), p.parent.name) for p in photos)
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    return root


def only(name: str) -> Command:
    (command,) = RUNS[name]
    return command


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def test_the_page_marks_the_steps_these_tests_run():
    assert set(RUNS) == STEPS, "a new <!-- run: --> step needs its test here"
    assert {"my_data.py", "myconf/dataset/labelled_photos.yaml"} <= set(FILES)


def test_preview_draws_the_training_views_of_your_photos(project: Path, tmp_path: Path):
    proc = run_step(project, only("preview"), "--images", "3", "--views", "2",
                    "dataset.image_size=32", cache=tmp_path / "cache")  # fmt: skip
    ok(proc)
    with Image.open(project / "preview.png") as img:
        assert img.format == "PNG" and img.width > 300 and img.height > 300
    assert CORRUPT_NAME in proc.stderr  # named as it is left out


def test_your_photos_train_and_evaluate_by_their_folder_names(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """The page's training step through the real CLI; then, with the commands' main()s
    in this process (their exit codes and lines as the CLI gives them; their `python -m`
    runs: test_inference), its evaluate step, a prediction once the data is gone, and
    the evaluate step refused once a class is added."""
    cache = tmp_path / "cache"
    proc = run_step(project, only("photos"), *SMALL, cache=cache)
    ok(proc)
    run_dir = project / "outputs" / "photos"
    assert result(run_dir)["status"] == "completed"
    assert read_data(run_dir)["class_names"] == list(CLASSES)
    log = (run_dir / "flowers_sweep.log").read_text()
    assert re.search(rf"left out unreadable image \S*{CORRUPT_NAME}", log)
    monkeypatch.setenv("FLOWERS_SWEEP_CACHE", str(cache))
    monkeypatch.chdir(project)  # where the page runs its commands
    assert only("evaluate").module == "flowers_sweep.evaluate"
    capsys.readouterr()
    code = evaluate.main(only("evaluate").args)
    shown = capsys.readouterr()
    assert code == 0, shown.err[-3000:]
    printed = re.findall(r"^  (\w+): [\d.]+ \((\d+) images\)$", shown.out, re.M)
    assert sorted(name for name, _ in printed) == list(CLASSES)
    photo = next((project / "photos" / "rose").glob("*.jpg"))
    (project / "photos").rename(project / "elsewhere")  # the data gone: the run still works
    try:
        capsys.readouterr()
        code = predict.main([str(run_dir), str(project / "elsewhere" / "rose" / photo.name),
                             "--json"])  # fmt: skip
        answer = capsys.readouterr()
        assert code == 0, answer.err[-3000:]
        assert json.loads(answer.out)[0]["top5"][0]["name"] in CLASSES
    finally:
        (project / "elsewhere").rename(project / "photos")
    extra = project / "photos" / "aster"  # a class more than the run knew
    make_image_folder(extra.parent, classes=("aster",), per_class=3, odd=False)
    try:
        code = evaluate.main(only("evaluate").args)
    finally:
        shutil.rmtree(extra)
    assert code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith(
            "flowers_sweep.evaluate: error: the data's classes are not the ones the run trained on"
        )
    )


def test_your_own_dataset_function_trains_from_your_config_folder(
    project, tmp_path, monkeypatch, capsys
):
    """app.main in this process, as `python -m` runs it from the folder (a user's -cd
    folder and module through the real CLI: test_extending)."""
    monkeypatch.setenv("FLOWERS_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))  # `python -m` runs from the page's folder
    code = run_app_in_process([*only("own").args, *SMALL, "hydra.run.dir=outputs/own"],
                              monkeypatch)  # fmt: skip
    assert code == 0, capsys.readouterr().err[-3000:]
    run_dir = project / "outputs" / "own"
    record = result(run_dir)
    assert (record["train_size"], record["val_size"], record["test_size"]) == (14, 5, 5)
    data = read_data(run_dir)
    assert data["class_names"] == list(CLASSES)
    assert all(0 < m < 1 for m in data["mean"])  # auto: the photos' own statistics


def test_the_error_the_page_shows_is_the_one_the_cli_gives(project, tmp_path, monkeypatch, capsys):
    """app.main in this process: its exit status and last line are the CLI's."""
    (command,) = [c for c in ALL_COMMANDS if c.error and "dataset=labelled_photos" in c.args]
    monkeypatch.setenv("FLOWERS_SWEEP_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    assert run_in_process(project, command, monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"flowers_sweep: error: {command.error}"
