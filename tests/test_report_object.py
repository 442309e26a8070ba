"""The report as an object (`build`, then `write`), its tidy tables, and figures that
say what they draw: built from fake run folders, no training, no subprocess."""

import itertools
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from flowers_sweep.aggregate import (
    FIGURES,
    SEARCH_FIGURES,
    AggregateError,
    aggregate,
    build,
    write,
)
from flowers_sweep.errors import FlowersSweepError

from .helpers.runfolders import write_run

GRID = {"trainer.batch_size": (16, 32), "dataset.image_size": (32, 48)}


def grid_sweep(tmp_path: Path, epochs: int = 2) -> Path:
    """trainer.batch_size=16,32 x dataset.image_size=32,48: four runs, one seed each."""
    sweep = tmp_path / "sweep"
    job = 0
    for batch in GRID["trainer.batch_size"]:
        for size in GRID["dataset.image_size"]:
            settings = {"trainer.batch_size": batch, "dataset.image_size": size}
            write_run(sweep / str(job), settings=settings, epochs=epochs, test_acc=0.5 + job / 10)
            job += 1
    return sweep


def seeded_sweep(tmp_path: Path, seeds: int, epochs: int = 2) -> Path:
    sweep = tmp_path / "sweep"
    for job, (case, seed) in enumerate((c, s) for c in ("relu", "sigmoid") for s in range(seeds)):
        write_run(sweep / str(job), case=case, seed=seed, epochs=epochs, test_acc=0.5 + seed / 50)
    return sweep


WIDE = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]  # four decades
NARROW = [1.5e-4, 2e-4, 2.5e-4, 3e-4, 4e-4, 5e-4, 6e-4, 7e-4, 9e-4]  # within one


def search_sweep(tmp_path: Path, lrs: list[float] = WIDE) -> Path:
    """A search over optimizer.lr on a log scale."""
    sweep = tmp_path / "search"
    for trial, lr in enumerate(lrs):
        write_run(sweep / str(trial), case="relu", lr=lr, test_acc=0.3 + trial / 20)
    sweeper = {
        "_target_": "hydra_plugins.flowers_sweep_search.study_sweeper.StudySweeper",
        "direction": "maximize",
        "params": {"optimizer.lr": "tag(log, interval(1e-5, 1e-1))"},
    }
    (sweep / "multirun.yaml").write_text(OmegaConf.to_yaml({"hydra": {"sweeper": sweeper}}))
    return sweep


def test_build_writes_nothing_and_write_writes_every_file(tmp_path):
    sweep = seeded_sweep(tmp_path, seeds=2)
    report = build([sweep])
    assert not (sweep / "report").exists() and report.out is None
    assert (len(report.runs), len(report.curves), len(report.cases)) == (4, 8, 2)
    assert len(report.comparisons) == 1 and not report.search and not report.problems
    assert report.markdown.startswith("# Results")
    assert report.results is report.cases and report.tests is report.comparisons
    out = tmp_path / "out"
    assert write(report, out) == []
    assert report.out == out
    names = {"runs.csv", "results.csv", "curves.csv", "results.md", "importance.csv"}
    assert {p.name for p in out.iterdir()} == names | {f"{name}.png" for name in FIGURES}
    pd.testing.assert_frame_equal(pd.read_csv(out / "curves.csv"), report.curves)
    assert (out / "results.md").read_text() == report.markdown
    again = aggregate([sweep], out=tmp_path / "again")  # build + write
    pd.testing.assert_frame_equal(again.runs, report.runs)
    assert (tmp_path / "again" / "curves.csv").read_text() == (out / "curves.csv").read_text()


def test_figures_are_objects_made_without_pyplot_or_a_backend_switch(tmp_path):
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    figures = build([seeded_sweep(tmp_path, seeds=2)]).figures()
    assert list(figures) == list(FIGURES)
    assert all(isinstance(fig, Figure) for fig in figures.values())
    search = build([search_sweep(tmp_path)])
    assert search.search and list(search.figures()) == list(SEARCH_FIGURES)
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == []  # no figure was opened through pyplot


def test_a_figure_by_another_name_is_refused_naming_the_allowed_ones(tmp_path):
    report = build([seeded_sweep(tmp_path, seeds=1)])
    with pytest.raises(AggregateError) as caught:
        report.figure("losses")
    message = str(caught.value)
    assert isinstance(caught.value, FlowersSweepError) and "\n" not in message
    assert "'losses'" in message and "loss_curves, accuracy, lr_schedule" in message
    assert isinstance(report.figure("accuracy"), Figure)


def test_a_grid_gives_a_column_per_varying_setting_and_absolute_run_dirs(tmp_path, monkeypatch):
    grid_sweep(tmp_path)
    monkeypatch.chdir(tmp_path)
    report = build([Path("sweep")])  # a relative root: the tables still say where
    runs = report.runs
    assert len(runs) == 4
    assert runs.columns[:3].tolist() == ["case", "dataset.image_size", "trainer.batch_size"]
    assert runs["trainer.batch_size"].tolist() == [16, 16, 32, 32]
    assert runs["dataset.image_size"].tolist() == [32, 48, 32, 48]
    for table in (runs, report.curves):
        assert all(Path(d).is_absolute() for d in table["run_dir"])
    assert runs["run_dir"].tolist() == [
        str((tmp_path / "sweep" / str(i)).resolve()) for i in range(4)
    ]
    assert set(GRID) <= set(report.curves.columns)


def test_curves_have_a_row_per_run_and_epoch_of_every_run_with_metrics(tmp_path):
    import seaborn as sns

    sweep = seeded_sweep(tmp_path, seeds=1, epochs=3)
    write_run(sweep / "2", case="tanh", status="failed", epochs=3)
    curves = build([sweep]).curves
    assert len(curves) == 3 * 3
    assert curves.columns[:4].tolist() == ["case", "seed", "status", "run_dir"]
    for column in ("epoch", "train_loss", "val_loss", "val_acc", "lr"):
        assert column in curves.columns
    assert curves["epoch"].tolist() == [1, 2, 3] * 3
    assert curves.groupby("case")["status"].first().to_dict() == {
        "relu": "completed",
        "sigmoid": "completed",
        "tanh": "failed",
    }
    assert curves["val_loss"].tolist()[:3] == pytest.approx([2.2, 1.1, 2.2 / 3])
    ax = Figure().subplots()
    sns.lineplot(data=curves, x="epoch", y="val_loss", hue="case", ax=ax)  # as written
    assert len(ax.get_lines()) >= 3


@pytest.mark.parametrize("seeds", [1, 3])
def test_titles_say_what_is_drawn_for_the_runs_per_case(tmp_path, seeds):
    report = build([seeded_sweep(tmp_path, seeds=seeds)])
    loss = report.figure("loss_curves").get_suptitle()
    accuracy = " ".join(report.figure("accuracy").axes[0].get_title().split())  # wrapped
    if seeds == 1:
        for title in (loss, accuracy):
            assert "one run per case" in title and "std" not in title, title
    else:
        assert "band: std over runs" in loss
        assert "whisker: std" in accuracy and "dots: runs" in accuracy


def test_a_single_epoch_shows_its_point_on_a_whole_epoch_axis(tmp_path):
    report = build([seeded_sweep(tmp_path, seeds=1, epochs=1)])
    for name in ("loss_curves", "lr_schedule"):
        ax = report.figure(name).axes[0]
        assert ax.get_xlim() == (0.5, 1.5) and ax.get_xticks().tolist() == [1], name
        drawn = [line for line in ax.get_lines() if len(line.get_xdata()) == 1]
        assert drawn and all(line.get_marker() not in (None, "", "None") for line in drawn)


def test_legends_sit_off_the_data_and_loss_panels_two_to_a_row(tmp_path):
    report = build([grid_sweep(tmp_path)])
    for name in ("loss_curves", "lr_schedule"):
        fig = report.figure(name)
        assert fig.legends and all(ax.get_legend() is None for ax in fig.axes), name
    fig = report.figure("loss_curves")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 4
    assert len({ax.get_position().x0 for ax in shown}) == 2  # a 2x2 grid, not a 1x4 strip
    assert len({round(ax.get_position().y0, 3) for ax in shown}) == 2
    assert fig.get_figwidth() <= 10


@pytest.mark.parametrize("lrs", [WIDE, NARROW], ids=["four_decades", "one_decade"])
def test_a_search_figures_log_axis_has_few_ticks_that_do_not_overlap(tmp_path, lrs):
    fig = build([search_sweep(tmp_path, lrs)]).figure("search")
    fig.draw_without_rendering()  # lays the ticks out
    ax = fig.axes[1]
    assert ax.get_xscale() == "log"
    lo, hi = ax.get_xlim()
    ticks = [*ax.xaxis.get_major_ticks(), *ax.xaxis.get_minor_ticks()]
    labels = [t.label1 for t in ticks if t.label1.get_text() and lo <= t.get_loc() <= hi]
    assert 2 <= len(labels) <= 5, [t.get_text() for t in labels]
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes))


def test_a_failed_run_with_other_settings_keeps_the_cases_labels_short(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", activation="relu", seed=0)
    write_run(sweep / "1", activation="sigmoid", seed=0)
    write_run(sweep / "2", activation="relu", seed=1, status=None)  # relu's second seed
    other = {"trainer.batch_size": 8, "dataset.image_size": 64, "optimizer.weight_decay": 0.1}
    write_run(sweep / "3", activation="relu", status="failed", settings=other)
    report = build([sweep])
    labels = report.runs["case"].tolist()
    assert labels[:3] == ["resnet18-relu", "resnet18-sigmoid", "resnet18-relu"]
    assert report.cases["case"].tolist() == ["resnet18-relu", "resnet18-sigmoid"]
    assert labels[3].startswith("resnet18-relu-") and labels[3].count("=") == 3
    lines = report.markdown.splitlines()
    assert "2 runs not completed are listed in runs.csv but left out here." in lines
    assert "1 run left out has settings no case has:" in lines
    assert f"- {labels[3]} (failed): {(sweep / '3').resolve()}" in lines
    assert sum(labels[3] in line for line in lines) == 1  # listed apart, not in the table


def test_words_count_in_the_singular_and_plural(tmp_path):
    sweep = seeded_sweep(tmp_path, seeds=2)
    write_run(sweep / "9", case="relu", seed=9, status="failed")
    lines = build([sweep]).markdown.splitlines()
    assert "1 run not completed is listed in runs.csv but left out here." in lines
    assert any("Holm-adjusted over 1 testable comparison " in line for line in lines)
    one = tmp_path / "one" / "search"
    write_run(one / "0", case="relu")
    sweeper = {"_target_": "x.StudySweeper", "params": {"optimizer.lr": "interval(0.1, 1)"}}
    (one / "multirun.yaml").write_text(OmegaConf.to_yaml({"hydra": {"sweeper": sweeper}}))
    report = build([one])
    assert "1 trial (1 completed), maximising best_val_acc." in report.markdown
    title = report.figure("loss_curves").get_suptitle()
    assert "the best trial by best_val_acc" in title and "one run per trial" in title


LONG = "resnet18-relu-batch_size=16-image_size=48-weight_decay=0.0001"


def test_accuracy_wraps_a_long_title_and_long_labels_and_keeps_its_axes_tall(tmp_path):
    sweep = tmp_path / "sweep"
    for job, (case, seed) in enumerate([(LONG, 0), (LONG, 1), (LONG + "-x", 0)]):
        write_run(sweep / str(job), case=case, seed=seed)
    fig = build([sweep]).figure("accuracy")
    fig.draw_without_rendering()
    ax = fig.axes[0]
    title = ax.title
    assert "where a case has several runs" in " ".join(title.get_text().split())
    box, page = title.get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1, (box, page)  # not cut off at a side
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0].split("\n")[:2] == ["resnet18-relu-", "batch_size=16-"]  # at hyphens
    assert all(len(line) <= 18 for text in labels for line in text.split("\n")), labels
    assert ax.get_position().height > 0.45  # not squeezed into the top half


def test_loss_panels_hide_the_unused_cell_and_word_the_band_by_what_is_true(tmp_path):
    sweep = tmp_path / "sweep"
    for job, (case, seed, epochs) in enumerate(
        [("relu", 0, 3), ("relu", 1, 3), ("sigmoid", 0, 3), ("tanh", 0, 1)]
    ):
        write_run(sweep / str(job), case=case, seed=seed, epochs=epochs)
    fig = build([sweep]).figure("loss_curves")
    assert [ax.get_title()[:4] for ax in fig.axes] == ["relu", "sigm", "tanh"]  # no 4th panel
    title = fig.get_suptitle()
    assert "band: std over runs where a case has several" in title, title
    one = fig.axes[2]  # tanh's one epoch, beside three-epoch panels
    assert one.get_xlim() == (0.5, 1.5) and one.get_xticks().tolist() == [1]
    fig.draw_without_rendering()
    for ax in fig.axes[:2]:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_lr_schedules_of_other_lengths_are_counted_apart(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", case="relu", epochs=1)
    write_run(sweep / "1", case="relu", epochs=2, seed=1)
    fig = build([sweep]).figure("lr_schedule")
    assert "2 distinct schedules" in fig.axes[0].get_title()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(set(labels)) == 2 and any("1 epoch" in label for label in labels), labels


def test_a_run_in_two_folders_is_named_as_counted_twice(tmp_path, caplog):
    a = write_run(tmp_path / "a" / "0", case="relu", seed=0)
    b = write_run(tmp_path / "b" / "0", case="relu", seed=0)
    with caplog.at_level("WARNING"):
        report = build([tmp_path / "a", tmp_path / "b"])
    assert report.cases["n"].tolist() == [2]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        "same case and seed: counted twice" in m
        and str(a.resolve()) in m
        and str(b.resolve()) in m
        for m in warned
    ), warned
    line = f"2 runs share a case and seed: relu seed 0, {a.resolve()}, {b.resolve()}"
    assert f"{line} (a run copied into two folders?)" in report.markdown.splitlines()
    assert "share a case" not in build([seeded_sweep(tmp_path, seeds=2)]).markdown


def test_no_folder_given_says_so(tmp_path):
    with pytest.raises(AggregateError, match=r"^no folder given: pass one or more sweep or run"):
        build([])
