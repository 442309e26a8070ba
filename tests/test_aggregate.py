import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from flowers_sweep.aggregate import AggregateError, aggregate, build, console_text, main
from flowers_sweep.aggregate.figures import FIGURE_CASES
from flowers_sweep.aggregate.markdown import results_markdown
from flowers_sweep.aggregate.runs import case_labels
from flowers_sweep.aggregate.stats import ALL_PAIRS_MAX, holm, pairwise_tests
from flowers_sweep.aggregate.tables import results_table
from flowers_sweep.record.runrecord import read_run

from .helpers.runfolders import write_run

FIGURES = ("loss_curves.png", "accuracy.png", "lr_schedule.png")


def sweep_of(tmp_path, cases: dict[str, list[float]], **kwargs):
    sweep = tmp_path / "sweep"
    job = 0
    for case, accs in cases.items():
        for seed, acc in enumerate(accs):
            write_run(sweep / str(job), case=case, seed=seed, test_acc=acc, **kwargs)
            job += 1
    return sweep


def welch(a, b):
    """The two-sided p-value of Welch's t-test, from its formula (Welch 1947)."""

    def mean(x):
        return sum(x) / len(x)

    def var_of_mean(x):  # s^2 / n, s^2 with n - 1 in its denominator
        return sum((v - mean(x)) ** 2 for v in x) / (len(x) - 1) / len(x)

    va, vb = var_of_mean(a), var_of_mean(b)
    t = (mean(a) - mean(b)) / (va + vb) ** 0.5
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), df)


def test_seeds_are_grouped_with_mean_std_and_ci(tmp_path):
    sweep = sweep_of(tmp_path, {"relu": [0.70, 0.74, 0.72], "sigmoid": [0.40, 0.46, 0.43]})
    report = aggregate([sweep])
    assert len(report.runs) == 6
    res = report.results.set_index("case")
    assert res.loc["relu", "n"] == 3
    assert res.loc["relu", "test_acc_mean"] == pytest.approx(0.72)
    assert res.loc["relu", "test_acc_std"] == pytest.approx(0.02)
    low, high = stats.t.interval(0.95, 2, loc=0.72, scale=0.02 / 3**0.5)
    assert (res.loc["relu", "ci95_low"], res.loc["relu", "ci95_high"]) == pytest.approx(
        (low, high)
    )
    for name in ("runs.csv", "results.csv", "results.md", *FIGURES):
        assert (sweep / "report" / name).is_file()
    assert pd.read_csv(sweep / "report" / "results.csv")["n"].tolist() == [3, 3]


def test_interval_stays_within_what_an_accuracy_can_be(tmp_path):
    easy, hard = [0.99, 1.0, 1.0], [0.0, 0.01, 0.02]
    res = aggregate([sweep_of(tmp_path, {"easy": easy, "hard": hard})]).results.set_index("case")

    def uncut(accs):
        return stats.t.interval(0.95, 2, loc=sum(accs) / 3, scale=stats.sem(accs))

    assert uncut(easy)[1] > 1 and uncut(hard)[0] < 0  # what the cut removes
    assert res.loc["easy", "ci95_high"] == 1.0
    assert res.loc["easy", "ci95_low"] == pytest.approx(uncut(easy)[0])
    assert res.loc["hard", "ci95_low"] == 0.0


def test_a_comparison_without_spread_is_not_testable_rather_than_certain(tmp_path):
    # Two seeds each, every run of a case scoring the same: Welch's t is x/0, and
    # scipy's answer (p = 0, or nan) is no evidence of anything.
    sweep = sweep_of(
        tmp_path, {"a": [0.700, 0.700], "b": [0.638, 0.638 + 1e-16], "c": [0.6, 0.62]}
    )  # b: one ulp apart, as float sums give: the same accuracy
    report = aggregate([sweep])
    tests = report.tests.set_index(["case_a", "case_b"])
    assert pd.isna(tests.loc[("a", "b"), "p_value"]) and not tests.loc[("a", "b"), "significant"]
    assert not pd.isna(tests.loc[("a", "c"), "p_value"])  # one case with spread: defined
    assert tests.loc[("a", "b"), "diff"] == pytest.approx(0.062)  # the difference is still shown
    assert pd.isna(tests.loc[("a", "b"), "p_holm"])
    # Holm adjusts over the two testable pairs only: the untestable one is not counted.
    p_ac, p_bc = welch([0.7, 0.7], [0.6, 0.62]), welch([0.638, 0.638], [0.6, 0.62])
    assert 2 * p_ac < p_bc  # so: a-c times 2 (not 3), b-c times 1 (not 2)
    assert tests.loc[("a", "c"), "p_value"] == pytest.approx(p_ac)
    assert tests.loc[("a", "c"), "p_holm"] == pytest.approx(2 * p_ac)
    assert tests.loc[("b", "c"), "p_holm"] == pytest.approx(p_bc)


def test_significance_is_reported_both_ways(tmp_path):
    accs = {
        "relu": [0.75, 0.74, 0.76],
        "leaky_relu": [0.74, 0.76, 0.745],
        "sigmoid": [0.46, 0.45, 0.47],
    }
    report = aggregate([sweep_of(tmp_path, accs)])
    tests = report.tests.set_index(["case_a", "case_b"])
    pairs = [("relu", "leaky_relu"), ("relu", "sigmoid"), ("leaky_relu", "sigmoid")]
    assert tests.index.tolist() == pairs
    p = [welch(accs[a], accs[b]) for a, b in pairs]
    assert tests["p_value"].tolist() == pytest.approx(p)
    # Holm: the smallest, p[1], times 3; p[2] times 2 is below that and takes it; p[0]
    # times 1 is above both and stays.
    assert p[1] < p[2] < p[0] and 2 * p[2] < 3 * p[1] < p[0]
    assert tests["p_holm"].tolist() == pytest.approx([p[0], 3 * p[1], 3 * p[1]])
    assert 3 * p[1] < 0.05 < p[0]
    assert tests["significant"].tolist() == [False, True, True]
    assert tests.loc[("relu", "sigmoid"), "diff"] == pytest.approx(0.29)
    relu = report.results.set_index("case").loc["relu"]
    assert (relu["n"], relu["test_acc_mean"], relu["test_acc_std"]) == pytest.approx(
        (3, 0.75, 0.01)
    )


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


RESULTS_MD = """\
# Results

Test accuracy per case, of the weights of each run's best validation epoch.

| case | model | activation | epochs | accuracy | n | 95% CI |
|---|---|---|---|---|---|---|
| relu | resnet18 | relu | 3 | 71.0% ± 1.4 | 2 | 58.3% to 83.7% |
| sigmoid | resnet18 | relu | 3 | 40.0% ± 0.0 | 2 | 40.0% to 40.0% |
| tanh | resnet18 | relu | 3 | 66.0% ± 0.0 | 2 | 66.0% to 66.0% |
| cnn | baseline_cnn | relu | 3 | 50.0% | 1 | |

Accuracy is mean ± std over seeds; the interval is Student's t for the mean.

## Pairwise comparisons

Welch's t-test on test accuracy, all pairs, p-values Holm-adjusted over 2 testable \
comparisons (significant: adjusted p < 0.05).

| case A | case B | A - B | p | p (Holm) | verdict |
|---|---|---|---|---|---|
| relu | sigmoid | +31.0 pts | 0.0205 | 0.0411 | significant |
| relu | tanh | +5.0 pts | 0.126 | 0.126 | not significant |
| sigmoid | tanh | -26.0 pts | - | - | not testable (no spread in either case) |

Not significant: relu vs tanh.
Not testable (every run of both cases scored the same): sigmoid vs tanh.

1 run not completed is listed in runs.csv but left out here.
"""


def test_results_markdown_shape():
    """The one test of results.md's layout: the other tests check the report's numbers
    on its tables, and tests/test_golden.py pins a whole report of an old sweep."""
    rows = [("relu", 0.70), ("relu", 0.72), ("sigmoid", 0.40), ("sigmoid", 0.40)]
    rows += [("tanh", 0.66), ("tanh", 0.66), ("cnn", 0.5)]
    runs = pd.DataFrame(rows, columns=["case", "test_acc"])
    runs = runs.assign(model="resnet18", activation="relu", epochs=3, status="completed")
    runs.loc[runs["case"] == "cnn", "model"] = "baseline_cnn"
    markdown = results_markdown(results_table(runs), pairwise_tests(runs), 1, "best_val")
    assert markdown == RESULTS_MD
    nothing = results_markdown(pd.DataFrame(), pairwise_tests(runs.iloc[:0]), 2)
    assert nothing.splitlines()[2:] == [
        "No run has completed: runs.csv lists every run and its status.",
        "",
        "2 runs not completed.",
    ]


def test_single_runs_have_no_interval_or_tests(tmp_path):
    sweep = sweep_of(tmp_path, {"relu": [0.75], "sigmoid": [0.46]})
    report = aggregate([sweep])
    assert report.results["n"].tolist() == [1, 1]
    assert report.results["ci95_low"].isna().all()
    assert report.results["test_acc_std"].isna().all()
    assert report.results["test_acc_mean"].tolist() == pytest.approx([0.75, 0.46])
    relu = report.results.set_index("case").loc["relu"]
    assert relu[["model", "activation", "epochs"]].tolist() == ["resnet18", "relu", 3]
    assert report.tests.empty


def test_labels_from_varying_overrides_when_no_case(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", activation="relu", lr=0.001)
    write_run(sweep / "1", activation="sigmoid", lr=0.001)
    write_run(sweep / "2", activation="relu", lr=0.01)
    write_run(sweep / "3", model="resnet34", activation="relu", lr=0.01)
    labels = aggregate([sweep]).runs["case"].tolist()
    assert labels == [
        "resnet18-relu-lr=0.001",
        "resnet18-sigmoid-lr=0.001",
        "resnet18-relu-lr=0.01",
        "resnet34-relu-lr=0.01",
    ]


def test_a_groups_keys_that_follow_its_preset_are_labelled_by_the_presets_name(tmp_path):
    """dataset=cifar10,cifar100 differs in a target and numbers: the label names the
    preset; a key that varies within one preset still shows."""
    sweep = tmp_path / "sweep"
    cifar = {"dataset._target_": "flowers_sweep.data.cifar.CIFAR10", "dataset.num_classes": 10}
    write_run(sweep / "0")
    write_run(sweep / "1", settings=cifar, choices={"dataset": "cifar10"})
    write_run(sweep / "2", settings={**cifar, "dataset.image_size": 64},
              choices={"dataset": "cifar10"})  # fmt: skip
    labels = aggregate([sweep]).runs["case"].tolist()
    assert labels == [
        "resnet18-relu-dataset=synthetic-image_size=32",
        "resnet18-relu-dataset=cifar10-image_size=32",
        "resnet18-relu-dataset=cifar10-image_size=64",
    ]


def test_an_experiment_presets_keys_in_any_group_are_labelled_by_its_name(tmp_path):
    """-m experiment=report,modern: the presets move keys of several groups (dataset,
    augment, optimizer): the label names the experiment, not each key, and a key that
    varies within one experiment still shows."""
    sweep = tmp_path / "sweep"
    modern = {"optimizer.lr": 0.03, "augment.mixup_alpha": 0.2, "trainer.label_smoothing": 0.1}
    write_run(sweep / "0", choices={"experiment": "report"})
    write_run(sweep / "1", settings=modern, choices={"experiment": "modern"})
    write_run(sweep / "2", settings={**modern, "dataset.image_size": 64},
              choices={"experiment": "modern"})  # fmt: skip
    labels = aggregate([sweep]).runs["case"].tolist()
    assert labels == [
        "resnet18-relu-experiment=report-image_size=32",
        "resnet18-relu-experiment=modern-image_size=32",
        "resnet18-relu-experiment=modern-image_size=64",
    ]


def test_failed_and_unfinished_runs_are_listed_not_counted(tmp_path, caplog):
    sweep = sweep_of(tmp_path, {"relu": [0.7, 0.72]})
    write_run(sweep / "2", case="relu", seed=2, status="failed", test_acc=0.0)
    write_run(sweep / "3", case="relu", seed=3, status=None)
    with caplog.at_level(logging.WARNING):
        report = aggregate([sweep])
    assert report.runs["status"].tolist() == ["completed", "completed", "failed", "unfinished"]
    assert report.results["n"].tolist() == [2]
    assert report.results["test_acc_mean"].tolist() == pytest.approx([0.71])
    assert "status failed" in caplog.text and "status unfinished" in caplog.text


def test_sweeps_from_several_machines_merge_into_one_row_per_case(tmp_path):
    """A relaunch may change where and how a run computes, never what it is."""
    laptop = {"trainer.device": "cpu", "trainer.num_workers": "auto", "trainer.threads": 2}
    cluster = {
        "trainer.device": "cuda", "trainer.num_workers": 8, "trainer.threads": "auto",
        "aggregate": False, "resume": False, "trainer.keep_checkpoint": True,
    }  # fmt: skip
    for name, settings, seeds in (("laptop", laptop, (0, 1)), ("cluster", cluster, (2, 3))):
        for job, (case, seed) in enumerate((c, s) for c in ("relu", "sigmoid") for s in seeds):
            write_run(tmp_path / name / str(job), case=case, seed=seed, settings=settings)
    report = aggregate([tmp_path / "laptop", tmp_path / "cluster"], out=tmp_path / "out")
    assert report.results["case"].tolist() == ["relu", "sigmoid"]
    assert report.results["n"].tolist() == [4, 4]


def test_a_setting_that_changes_the_experiment_still_splits_cases(tmp_path):
    write_run(tmp_path / "s" / "0", case="relu", settings={"trainer.batch_size": 32})
    write_run(tmp_path / "s" / "1", case="relu", settings={"trainer.batch_size": 64})
    labels = aggregate([tmp_path / "s"]).runs["case"].tolist()
    assert labels == ["relu-batch_size=32", "relu-batch_size=64"]


@pytest.mark.parametrize(
    "damage",
    [
        ("metrics.csv", b"epoch,train_loss,val_loss\n1,2.0,2.1\n"),  # no lr column
        ("metrics.csv", b"epoch,train_loss,train_acc,val_loss,val_acc,lr,epoch_s\n1,x,,,,,\n"),
        ("result.json", b"\xff\xfe not utf-8"),
        ("result.json", b'{"status": "completed", "test_acc": "high"}'),
        (".hydra/config.yaml", b"model: [unclosed"),
    ],
)
def test_one_unreadable_run_file_still_gives_the_report(tmp_path, caplog, capsys, damage):
    sweep = sweep_of(tmp_path, {"relu": [0.7, 0.72], "sigmoid": [0.4, 0.45]})
    name, data = damage
    (sweep / "1" / name).write_bytes(data)
    with caplog.at_level(logging.WARNING):
        report = aggregate([sweep])
    assert report.runs["status"].tolist()[1] == "broken"
    assert report.results["n"].tolist() == [1, 2]
    assert str(sweep / "1" / name) in caplog.text
    assert [p.split(": broken")[0] for p in report.problems] == [str(sweep / "1")]
    for figure in FIGURES:
        assert (sweep / "report" / figure).is_file()
    assert main([str(sweep)]) == 1  # the report is written, and the status says a run broke
    assert str(sweep / "1" / name) in capsys.readouterr().err


def test_a_figure_that_cannot_be_drawn_leaves_the_rest(tmp_path, monkeypatch):
    from flowers_sweep.aggregate import report as agg  # where `aggregate` finds its plots

    sweep = sweep_of(tmp_path, {"relu": [0.7]})
    aggregate([sweep])  # an earlier report, whose loss figure would be stale

    def too_big(curves, note=""):
        raise ValueError("Image size of 900x70000 pixels is too large")

    monkeypatch.setattr(agg, "loss_curves_figure", too_big)
    report = aggregate([sweep])
    assert len(report.problems) == 1 and "loss_curves.png" in report.problems[0]
    assert not (sweep / "report" / "loss_curves.png").exists()
    assert (sweep / "report" / "accuracy.png").is_file()
    assert (sweep / "report" / "results.csv").is_file()


def grid_sweep(tmp_path, n_cases):
    """n_cases cases of two seeds each; case i has mean accuracy 0.3 + 0.01 i."""
    cases = {f"c{i:02d}": [0.3 + 0.01 * i, 0.305 + 0.01 * i] for i in range(n_cases)}
    return sweep_of(tmp_path, cases)


def test_a_large_sweep_tests_each_case_against_the_best(tmp_path):
    n = ALL_PAIRS_MAX + 8
    report = aggregate([grid_sweep(tmp_path, n)])
    best = f"c{n - 1:02d}"
    assert len(report.tests) == n - 1  # not n (n - 1) / 2
    assert set(report.tests["case_a"]) == {best}
    assert report.tests["p_holm"].notna().all()
    assert report.tests.attrs["scope"] == f"each case against {best}"


def test_a_small_sweep_tests_every_pair(tmp_path):
    report = aggregate([grid_sweep(tmp_path, ALL_PAIRS_MAX)])
    assert len(report.tests) == ALL_PAIRS_MAX * (ALL_PAIRS_MAX - 1) // 2
    assert report.tests.attrs["scope"] == "all pairs"


def test_figures_of_a_large_sweep_show_the_best_cases_at_a_bounded_size(tmp_path):
    n = 3 * FIGURE_CASES
    sweep = grid_sweep(tmp_path, n)
    report = aggregate([sweep])
    small = grid_sweep(tmp_path / "small", FIGURE_CASES)
    aggregate([small])
    for name in ("loss_curves.png", "accuracy.png"):
        big_w, big_h = Image.open(sweep / "report" / name).size
        small_w, small_h = Image.open(small / "report" / name).size
        assert big_h <= small_h * 1.1 and big_w <= small_w * 1.6, name  # not 3x the cases
    assert len(report.results) == n  # every case is in the tables
    text = console_text(report)
    assert text.splitlines()[1].startswith(f"  c{n - 1:02d}:") and len(text.splitlines()) == 11


def test_select_best_val_weights(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed, (last, best) in enumerate([(0.70, 0.74), (0.72, 0.76)]):
        write_run(sweep / str(seed), case="relu", seed=seed, test_acc=last, test_acc_best_val=best)
    write_run(sweep / "2", case="relu", seed=2, test_acc=0.9)  # an older run: no best_val
    assert aggregate([sweep]).results["test_acc_mean"].tolist() == pytest.approx([0.7733333])
    report = aggregate([sweep], select="best_val")
    assert report.results["test_acc_mean"].tolist() == pytest.approx([0.75])
    assert report.results["n"].tolist() == [2]
    assert report.results["test_acc_std"].tolist() == pytest.approx([0.02**0.5 / 10])
    assert report.scored["status"].tolist() == ["completed", "completed", "no test_acc_best_val"]
    assert report.runs["status"].tolist() == ["completed"] * 3  # runs.csv: as the runs say
    assert main([str(sweep), "--select", "best_val", "--out", str(tmp_path / "cli")]) == 0
    written = pd.read_csv(tmp_path / "cli" / "results.csv")
    assert written["test_acc_mean"].tolist() == pytest.approx([0.75])
    assert written["test_acc_std"].tolist() == pytest.approx([0.02**0.5 / 10])


def test_accuracy_figure_widens_with_the_cases_so_labels_do_not_collide(tmp_path):
    one = sweep_of(tmp_path / "one", {"relu": [0.7]})
    aggregate([one], out=tmp_path / "out1")
    eight = sweep_of(tmp_path / "eight", {f"case_{i}": [0.5 + i / 100] for i in range(8)})
    aggregate([eight], out=tmp_path / "out8")
    width_1 = Image.open(tmp_path / "out1" / "accuracy.png").size[0]
    width_8 = Image.open(tmp_path / "out8" / "accuracy.png").size[0]
    assert width_1 >= 800 and width_8 > 1.5 * width_1


def test_lr_schedules_one_line_each(tmp_path):
    """Two runs with different schedules: one line each, at the rates each epoch used."""
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", case="relu", epochs=100, milestones=(40, 70), gamma=0.2)
    write_run(sweep / "1", case="sigmoid", epochs=100, milestones=(60,), gamma=0.5)
    write_run(sweep / "2", case="leaky_relu", seed=1, epochs=100, milestones=(60,), gamma=0.5)
    fig = build([sweep]).figure("lr_schedule")
    drawn = [line.get_ydata() for line in fig.axes[0].get_lines() if len(line.get_xdata()) > 1]
    lines = sorted(drawn, key=lambda y: y[-1])
    assert len(lines) == 2  # three runs, two distinct schedules
    assert sorted(set(lines[0].round(8))) == pytest.approx([0.001 * 0.04, 0.001 * 0.2, 0.001])
    assert sorted(set(lines[1].round(8))) == pytest.approx([0.0005, 0.001])


@pytest.mark.parametrize("make", ["empty", "missing", "no_runs"])
def test_empty_or_wrong_folder_fails_naming_it(tmp_path, capsys, make):
    target = tmp_path / "target"
    if make != "missing":
        target.mkdir()
    if make == "no_runs":
        (target / "notes.txt").write_text("hello")
    with pytest.raises(AggregateError, match=str(target)):
        aggregate([target])
    assert main([str(target)]) == 2
    assert str(target) in capsys.readouterr().err
    assert not (target / "report").exists()


def test_real_sweep_end_to_end(tmp_path, report_cases_sweep):
    """The issue's acceptance sweep, tiny: the callback writes the report on its own."""
    sweep = report_cases_sweep
    report = sweep / "report"
    runs = pd.read_csv(report / "runs.csv")
    results = pd.read_csv(report / "results.csv")
    assert len(runs) == 8 and (runs["status"] == "completed").all()
    assert results["case"].tolist() == ["relu", "sigmoid", "leaky_relu", "baseline_cnn"]
    assert results["n"].tolist() == [2, 2, 2, 2]
    for name in FIGURES:
        assert (report / name).is_file()
    # The standalone CLI reads the same folders into another place.
    assert main([str(sweep), "--out", str(tmp_path / "again")]) == 0
    again = pd.read_csv(tmp_path / "again" / "results.csv")
    assert again["test_acc_mean"].tolist() == pytest.approx(results["test_acc_mean"].tolist())
    acc = json.loads((sweep / "0" / "result.json").read_text())["test_acc"]
    assert runs.loc[0, "test_acc"] == pytest.approx(acc)


def test_job_folders_sort_by_number_beside_named_folders(tmp_path):
    """Folders 2 and 10 in number order; a folder named "extra" beside them (a rerun, a
    copy) must not break the sort (comparing a number with a name raised TypeError)."""
    sweep = tmp_path / "sweep"
    for name in ("10", "extra", "2"):
        write_run(sweep / name, case="relu")
    assert [Path(d).name for d in aggregate([sweep]).runs["run_dir"]] == ["2", "10", "extra"]


def test_an_activation_nodes_own_keys_show_only_where_one_label_has_several_values(tmp_path):
    node = {"_target_": "my_layers.ScaledTanh", "alpha": 1.5}
    kinds = ["relu", "gelu", node, {**node, "alpha": 2.0}]
    runs = [
        read_run(write_run(tmp_path / str(i), activation=a, status=None))
        for i, a in enumerate(kinds)
    ]
    labels = ["resnet18-relu", "resnet18-gelu", "resnet18-scaled_tanh"]
    assert case_labels(runs[:3]) == labels  # alpha follows the label: not shown
    assert case_labels(runs) == [
        *labels[:2],  # relu has no alpha: its label says nothing of one
        "resnet18-scaled_tanh-alpha=1.5",
        "resnet18-scaled_tanh-alpha=2",
    ]


def test_a_pruned_run_is_left_out_but_not_called_a_failure(tmp_path, caplog):
    from flowers_sweep.record.runrecord import write_result

    sweep = sweep_of(tmp_path, {"relu": [0.7, 0.72]})
    write_run(sweep / "2", case="relu", seed=2, status="failed", test_acc=0.0)
    write_run(sweep / "3", case="relu", seed=3, status=None, epochs=6)
    pruned = {"status": "pruned", "case": "relu", "model": "resnet18", "activation": "relu",
              "epochs": 6, "seed": 3, "error_type": "TrialPrunedError", "error": "pruned",
              "epochs_done": 3, "best_val_acc": 0.95, "best_epoch": 2}  # fmt: skip
    write_result(sweep / "3", pruned)
    with caplog.at_level(logging.INFO):
        report = aggregate([sweep])
    assert report.runs["status"].tolist() == ["completed", "completed", "failed", "pruned"]
    assert report.results["n"].tolist() == [2]
    assert report.results["test_acc_mean"].tolist() == pytest.approx([0.71])
    assert "status pruned (stopped by the search's pruner)" in caplog.text
    lines = report.markdown.splitlines()
    assert "1 run not completed is listed in runs.csv but left out here." in lines
    assert [line for line in lines if "pruner" in line] == [
        "1 run stopped early by the search's pruner (not a failure): listed in runs.csv, "
        "left out here."
    ]
    assert not report.problems
