"""docs/data.md as a user follows it: a folder of photos (generated: odd modes and
sizes, one broken file), the page's files written out, its marked commands run through
the real CLI in that folder with tiny settings appended."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from flowers_sweep.record.runrecord import read_data

from .helpers.cli import ROOT, result, run_cli
from .helpers.datasets import CORRUPT_NAME, make_image_folder
from .test_extending import Command, read_page, run_step

PAGE = ROOT / "docs" / "data.md"
FILES, RUNS, ALL_COMMANDS = read_page(PAGE.read_text(encoding="utf-8"))
STEPS = {"preview", "photos", "evaluate", "own"}
SMALL = ["trainer.epochs=1", "trainer.batch_size=16", "dataset.image_size=32"]
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


def test_your_photos_train_and_evaluate_by_their_folder_names(project: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    proc = run_step(project, only("photos"), *SMALL, cache=cache)
    ok(proc)
    run_dir = project / "outputs" / "photos"
    assert result(run_dir)["status"] == "completed"
    assert read_data(run_dir)["class_names"] == list(CLASSES)
    log = (run_dir / "flowers_sweep.log").read_text()
    assert re.search(rf"left out unreadable image \S*{CORRUPT_NAME}", log)
    shown = run_step(project, only("evaluate"), cache=cache)
    ok(shown)
    printed = re.findall(r"^  (\w+): [\d.]+ \((\d+) images\)$", shown.stdout, re.M)
    assert sorted(name for name, _ in printed) == list(CLASSES)
    photo = next((project / "photos" / "rose").glob("*.jpg"))
    (project / "photos").rename(project / "elsewhere")  # the data gone: the run still works
    try:
        answer = run_cli(str(run_dir), str(project / "elsewhere" / "rose" / photo.name),
                         "--json", module="flowers_sweep.predict", cache=cache)  # fmt: skip
        ok(answer)
        assert json.loads(answer.stdout)[0]["top5"][0]["name"] in CLASSES
    finally:
        (project / "elsewhere").rename(project / "photos")
    extra = project / "photos" / "aster"  # a class more than the run knew
    make_image_folder(extra.parent, classes=("aster",), per_class=3, odd=False)
    try:
        changed = run_step(project, only("evaluate"), cache=cache)
    finally:
        shutil.rmtree(extra)
    assert changed.returncode == 2
    assert (
        changed.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "flowers_sweep.evaluate: error: the data's classes are not the ones the run trained on"
        )
    )


def test_your_own_dataset_function_trains_from_your_config_folder(project, tmp_path):
    proc = run_step(project, only("own"), *SMALL, "hydra.run.dir=outputs/own",
                    cache=tmp_path / "cache")  # fmt: skip
    ok(proc)
    run_dir = project / "outputs" / "own"
    record = result(run_dir)
    assert (record["train_size"], record["val_size"], record["test_size"]) == (14, 5, 5)
    data = read_data(run_dir)
    assert data["class_names"] == list(CLASSES)
    assert all(0 < m < 1 for m in data["mean"])  # auto: the photos' own statistics


def test_the_error_the_page_shows_is_the_one_the_cli_gives(project, tmp_path):
    (command,) = [c for c in ALL_COMMANDS if c.error and "dataset=labelled_photos" in c.args]
    proc = run_step(project, command, cache=tmp_path / "cache")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"flowers_sweep: error: {command.error}"
