"""K-fold cross-validation (issue 40): the fold rule, the data path through any source,
the checks before any data is read, the aggregator treating folds like seeds, and the
paired t-test where two cases ran the same seeds and folds."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats

from flowers_sweep.aggregate import aggregate
from flowers_sweep.aggregate.markdown import results_markdown
from flowers_sweep.aggregate.stats import holm, pairwise_tests
from flowers_sweep.aggregate.tables import results_table, shared_seeds
from flowers_sweep.config.validate import validate_data, validate_folds
from flowers_sweep.data import load_splits
from flowers_sweep.data.folds import fold_indices, fold_numbers, with_folds
from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.errors import ConfigError
from flowers_sweep.loggers.base import run_name
from flowers_sweep.record.labels import fold_of, with_fold
from flowers_sweep.record.legacy import upgrade_settings
from flowers_sweep.record.runfolder import changed_settings
from flowers_sweep.record.settings import flatten

from .helpers.cli import TINY, make_cfg, result, run_cli
from .helpers.datasets import make_image_folder
from .helpers.runfolders import write_run

# --- the rule (pure) ----------------------------------------------------------------------


def uneven_labels() -> np.ndarray:
    """Four classes of 13, 7, 5 and 2 members, interleaved as a source might list them."""
    labels = np.repeat([0, 1, 2, 3], [13, 7, 5, 2])
    return np.random.default_rng(7).permutation(labels)


def test_the_folds_partition_the_pool_stratified_within_one_image_a_class():
    labels, k = uneven_labels(), 5
    vals = []
    for i in range(k):
        train, val = fold_indices(labels, k, i, seed=3)
        assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # ascending
        assert sorted([*train, *val]) == list(range(len(labels)))  # complement
        vals.append(val)
    every = np.concatenate(vals)
    assert sorted(every) == list(range(len(labels)))  # each image validates exactly once
    for label in range(4):
        n = int((labels == label).sum())
        counts = [int((labels[v] == label).sum()) for v in vals]
        assert all(n // k <= c <= -(-n // k) for c in counts), (label, counts)


def test_the_folds_depend_on_the_seed_and_each_class_on_its_own_members_only():
    labels = uneven_labels()
    same = fold_numbers(labels, 5, seed=3)
    assert np.array_equal(same, fold_numbers(labels, 5, seed=3))
    assert not np.array_equal(same, fold_numbers(labels, 5, seed=4))
    # one more image of class 3 (at the end): the other classes' folds stay as they were
    grown = fold_numbers(np.append(labels, 3), 5, seed=3)
    kept = labels != 3
    assert np.array_equal(grown[:-1][kept], same[kept])


def test_equal_classes_give_folds_of_equal_size():
    """10 classes of 43 at K = 5: each class's 3 odd images start at its own fold, so
    every fold holds 86 (with every class starting at fold 0 it would be 90 or 80)."""
    labels = np.repeat(np.arange(10), 43)
    sizes = np.bincount(fold_numbers(labels, 5, seed=0), minlength=5)
    assert sizes.tolist() == [86] * 5


@pytest.mark.parametrize(("folds", "fold"), [(1, 0), (5, 5), (5, -1)])
def test_the_rule_refuses_what_it_cannot_cut(folds, fold):
    with pytest.raises(ValueError, match=r"^folds?="):
        fold_indices(np.zeros(10, dtype=np.int64), folds, fold, seed=0)


# --- the data path: an image folder through sources.py ------------------------------------


def rows(split: Split) -> Counter:
    """A split's images as a multiset of (label, pixel bytes)."""
    return Counter(
        (int(label), image.numpy().tobytes())
        for image, label in zip(split.images, split.labels, strict=True)
    )


def test_five_fold_cross_validation_of_an_image_folder(tmp_path, cache_dir):
    root = tmp_path / "photos"
    make_image_folder(root, per_class={"daisy": 16, "rose": 12, "tulip": 9}, odd=False)
    base = ("dataset=image_folder", f"dataset.root={root}", "dataset.image_size=16")
    plain = load_splits(make_cfg(*base).dataset)
    pool = rows(plain.train) + rows(plain.val)
    assert len(set(pool)) == sum(pool.values())  # no two images alike: rows identify them
    folds = [load_splits(make_cfg(*base, "dataset.folds=5", f"dataset.fold={i}").dataset)
             for i in range(5)]  # fmt: skip
    validated = Counter()
    for splits in folds:
        assert splits.class_names == plain.class_names
        assert rows(splits.train) + rows(splits.val) == pool  # the pool, split in two
        validated += rows(splits.val)
        # the test split is fixed: the same images in the same order, every fold
        assert splits.test.images.equal(plain.test.images)
        assert splits.test.labels.equal(plain.test.labels)
        assert splits.train.image_sizes is not None  # the original sizes travel along
    assert validated == pool  # each pooled image validates once
    for label in range(3):
        n = sum(1 for lab, _ in pool if lab == label)
        counts = [int((s.val.labels == label).sum()) for s in folds]
        assert max(counts) - min(counts) <= 1 and sum(counts) == n, (label, counts)


def test_a_node_without_the_keys_is_left_as_it_is_and_too_few_images_are_refused():
    images = np.zeros((3, 3, 4, 4), dtype=np.uint8)
    import torch

    part = Split(torch.from_numpy(images), torch.tensor([0, 1, 0]))
    splits = Splits(part, part, part, class_names=["a", "b"])
    assert with_folds(splits, {"_target_": "my_data.fn"}) is splits
    assert len(with_folds(splits, {"folds": 7, "fold": 0}).val) == 1
    with pytest.raises(ConfigError, match=r"^dataset\.folds=7 is invalid: fold 6 leaves the "
                       r"validation split empty \(6 pooled .*\); use fewer folds$"):  # fmt: skip
        with_folds(splits, {"folds": 7, "fold": 6})


# --- checks before any data is read --------------------------------------------------------


@pytest.mark.parametrize("dataset", ["synthetic", "image_folder", "cifar10", "cifar100",
                                     "flowers102"])  # fmt: skip
def test_every_preset_takes_the_keys_without_a_plus(dataset):
    cfg = make_cfg(f"dataset={dataset}", "dataset.folds=5", "dataset.fold=4")
    assert (cfg.dataset.folds, cfg.dataset.fold) == (5, 4)
    validate_folds(cfg.dataset)
    assert make_cfg(f"dataset={dataset}").dataset.folds is None  # off by default


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.folds=1"], "dataset.folds=1 is invalid: must be null (no cross-validation) "
         "or an integer >= 2 (the number of folds)"),
        (["dataset.folds=2.5"], "dataset.folds=2.5 is invalid: must be null"),
        (["dataset.folds=true"], "dataset.folds=True is invalid: must be null"),
        (["dataset.folds=5", "dataset.fold=5"],
         "dataset.fold=5 is invalid: must be an integer from 0 to 4 (dataset.folds=5)"),
        (["dataset.folds=5", "dataset.fold=-1"], "dataset.fold=-1 is invalid: must be an "
         "integer from 0 to 4"),
        (["dataset.folds=5", "dataset.fold=null"], "dataset.fold=None is invalid"),
        (["dataset.fold=2"], "dataset.fold=2 is invalid: must be 0 while dataset.folds is "
         "null (cross-validation off); set dataset.folds=K"),
        (["dataset=flowers102", "dataset.folds=5", "dataset.pipeline=reference"],
         "dataset.folds=5 is invalid: the report's per-image pipeline"),
    ],
)  # fmt: skip
def test_bad_fold_settings_are_one_line_naming_the_value(overrides, message):
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        validate_data(cfg.dataset, cfg.augment)  # before the source is even built
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_a_users_node_without_the_keys_validates_and_compares_as_one_with_them_off():
    node = OmegaConf.create({"_target_": "my_data.fn", "image_size": 32, "num_classes": 2})
    validate_folds(node)
    assert fold_of(node, prefix="") is None
    # a run folder recorded before the keys existed, or with a node without them, is
    # the same experiment as today's composition with them off
    today = flatten(OmegaConf.to_container(make_cfg(), resolve=False))
    old = {k: v for k, v in today.items() if k not in ("dataset.folds", "dataset.fold")}
    assert upgrade_settings(old)["dataset.folds"] is None
    # only into a dataset node (it has an image_size): legacy's other upgrades stay as they were
    assert "dataset.folds" not in upgrade_settings({"dataset.name": "synthetic", "dataset.x": 1})
    assert changed_settings(old, today) == ""
    assert "dataset.folds" in changed_settings(old, {**today, "dataset.folds": 5})


# --- labels: a run's fold beside its seed ---------------------------------------------------


def test_the_fold_follows_the_seed_in_result_json_and_in_a_trackers_run_name(tmp_path):
    record = {"status": "completed", "case": "relu", "seed": 1, "test_acc": 0.5}
    assert list(with_fold(record, 2)) == ["status", "case", "seed", "fold", "test_acc"]
    assert with_fold(record, None) == record
    assert fold_of({"dataset.folds": 5, "dataset.fold": 2}) == 2
    assert fold_of({"dataset.folds": None, "dataset.fold": 0}) is None
    assert run_name(tmp_path / "run", "relu", 1, 2) == "relu seed=1 fold=2"
    assert run_name(tmp_path / "run", "relu", 1) == "relu seed=1"


def cv_sweep(tmp_path: Path, cases: dict[str, list[float]], seeds=(0,)) -> Path:
    """Cases x seeds x folds (K = len(accs) // len(seeds)), accuracies in that order."""
    sweep, job = tmp_path / "sweep", 0
    for case, accs in cases.items():
        k = len(accs) // len(seeds)
        for n, acc in enumerate(accs):
            seed, fold = seeds[n // k], n % k
            settings = {"dataset.folds": k, "dataset.fold": fold}
            write_run(sweep / str(job), case=case, seed=seed, test_acc=acc, settings=settings)
            job += 1
    return sweep


def test_the_aggregator_treats_folds_like_seeds(tmp_path):
    accs = {"relu": [0.70, 0.74, 0.72, 0.71, 0.73], "sigmoid": [0.40, 0.46, 0.43, 0.41, 0.45]}
    report = aggregate([cv_sweep(tmp_path, accs)])
    runs = report.runs
    assert runs["case"].tolist() == ["relu"] * 5 + ["sigmoid"] * 5  # no fold=i in a label
    assert "dataset.fold" not in runs.columns  # the fold is no setting of the case
    columns = runs.columns.tolist()
    assert columns[columns.index("seed") + 1] == "fold"
    assert runs["fold"].tolist() == [0, 1, 2, 3, 4] * 2
    res = report.results.set_index("case")
    assert res.loc["relu", "n"] == 5
    assert res.loc["relu", "test_acc_mean"] == pytest.approx(0.72)
    assert "mean ± std over folds;" in report.markdown
    with open(tmp_path / "sweep" / "report" / "runs.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["fold"] for r in written] == ["0", "1", "2", "3", "4"] * 2  # not 0.0
    assert report.comparisons["test"].tolist() == ["paired"]
    assert "share a case and seed" not in report.markdown  # folds of one seed: no twins
    assert shared_seeds(runs.assign(status="completed")) == []
    copied = pd.concat([runs, runs.iloc[[1]].assign(run_dir="elsewhere")])
    assert shared_seeds(copied) == [("relu", "0 fold 1", [runs["run_dir"][1], "elsewhere"])]
    # two seeds crossed with folds: n counts both, the words say so
    both = cv_sweep(tmp_path / "two", {"relu": [0.7, 0.72, 0.71, 0.73]}, seeds=(0, 1))
    two = aggregate([both])
    assert two.results["n"].tolist() == [4] and "over seeds and folds;" in two.markdown
    assert two.runs["case"].tolist() == ["relu"] * 4


def test_runs_without_folds_have_no_fold_column_or_an_empty_fold(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(sweep / str(seed), case="relu", seed=seed, test_acc=0.5 + seed / 10)
    report = aggregate([sweep])
    assert "fold" not in report.runs.columns
    assert "mean ± std over seeds;" in report.markdown
    for fold in (0, 1):  # a cross-validated case beside them: their fold is empty
        settings = {"dataset.folds": 2, "dataset.fold": fold}
        write_run(sweep / f"cv{fold}", case="cv", test_acc=0.6 + fold / 10, settings=settings)
    mixed = aggregate([sweep])
    assert mixed.runs["fold"].tolist()[:2] == [pd.NA, pd.NA]
    assert mixed.runs["fold"].tolist()[2:] == [0, 1]
    assert mixed.comparisons["test"].tolist() == ["welch"]


# --- paired or Welch ------------------------------------------------------------------------


def runs_frame(cases: dict[str, list[tuple[int, int | None, float]]]) -> pd.DataFrame:
    """runs.csv's columns the tests read, from (seed, fold, test_acc) per run."""
    rows = [
        {"case": case, "seed": seed, "fold": fold, "status": "completed", "test_acc": acc}
        for case, runs in cases.items()
        for seed, fold, acc in runs
    ]
    frame = pd.DataFrame(rows)
    frame["fold"] = frame["fold"].astype("Int64")
    return frame


def test_cases_that_share_their_seeds_and_folds_are_compared_paired():
    a = [(0, 0, 0.70), (0, 1, 0.75), (0, 2, 0.71), (0, 3, 0.78)]
    b = [(0, 3, 0.74), (0, 1, 0.72), (0, 0, 0.69), (0, 2, 0.69)]  # another order
    c = [(0, 0, 0.60), (0, 1, 0.64), (0, 2, 0.61)]  # fold 3 missing: Welch's
    tests = pairwise_tests(runs_frame({"a": a, "b": b, "c": c})).set_index(["case_a", "case_b"])
    ab = tests.loc[("a", "b")]
    assert ab["test"] == "paired"
    expected = stats.ttest_rel([0.70, 0.75, 0.71, 0.78], [0.69, 0.72, 0.69, 0.74]).pvalue
    assert ab["p_value"] == pytest.approx(expected, rel=1e-12)
    unpaired = stats.ttest_ind([0.70, 0.75, 0.71, 0.78], [0.74, 0.72, 0.69, 0.69],
                               equal_var=False).pvalue  # fmt: skip
    assert abs(ab["p_value"] - unpaired) > 0.1  # matching by key, not by row, matters
    ac = tests.loc[("a", "c")]
    assert ac["test"] == "welch"
    welch = stats.ttest_ind([0.70, 0.75, 0.71, 0.78], [0.60, 0.64, 0.61], equal_var=False)
    assert ac["p_value"] == pytest.approx(welch.pvalue, rel=1e-12)
    assert tests["p_holm"].tolist() == pytest.approx(holm(tests["p_value"].tolist()))  # all


def test_without_folds_or_with_a_run_twice_it_stays_welch():
    a = [(0, 0, 0.70), (1, 0, 0.75), (2, 0, 0.71)]
    b = [(0, 0, 0.60), (1, 0, 0.66), (2, 0, 0.61)]
    no_folds = runs_frame({"a": a, "b": b}).drop(columns="fold")
    assert pairwise_tests(no_folds)["test"].tolist() == ["welch"]
    twice = [(0, 0, 0.70), (0, 0, 0.75), (1, 0, 0.71)]
    assert pairwise_tests(runs_frame({"a": twice, "b": b}))["test"].tolist() == ["welch"]
    one_pair = runs_frame({"a": [a[0], (0, None, 0.7)], "b": [b[0], (0, None, 0.6)]})
    assert pairwise_tests(one_pair)["test"].tolist() == ["welch"]  # a run without a fold


def test_results_md_says_which_test_each_comparison_used():
    a = [(0, 0, 0.70), (0, 1, 0.75), (0, 2, 0.71)]
    b = [(0, 0, 0.60), (0, 1, 0.66), (0, 2, 0.61)]
    same_step = [(0, 0, 0.50), (0, 1, 0.55), (0, 2, 0.51)]  # a - 0.2 in every pair
    c = [(1, 0, 0.40), (1, 1, 0.44), (1, 2, 0.42)]  # another seed: Welch's against a, b
    frame = runs_frame({"a": a, "b": b, "s": same_step, "c": c})
    tests = pairwise_tests(frame)
    assert set(tests["test"]) == {"paired", "welch"}
    text = results_markdown(results_table(frame.assign(model="m", activation="x", epochs=1)),
                            tests, 0)  # fmt: skip
    assert (
        "Welch's t-test, or the paired t-test where two cases ran the same seeds and folds "
        "(column test), on test accuracy, all pairs" in text
    )
    assert "| case A | case B | A - B | test | p | p (Holm) | verdict |" in text
    assert "| a | b | +9.7 pts | paired |" in text and "| a | c | +30.0 pts | welch |" in text
    assert "| a | s | +20.0 pts | paired | - | - | not testable (the same difference" in text
    assert "Not testable (every pair of runs differed by the same): a vs s." in text
    paired_only = pairwise_tests(runs_frame({"a": a, "b": b}))
    text = results_markdown(results_table(frame.assign(model="m", activation="x", epochs=1)),
                            paired_only, 0)  # fmt: skip
    assert "Paired t-test (runs matched by seed and fold) on test accuracy, all pairs" in text
    assert "| test |" not in text


# --- the real command line --------------------------------------------------------------------


@pytest.mark.e2e
def test_five_fold_cross_validation_from_the_command_line(tmp_path, cache_dir):
    """`-m dataset.folds=5 dataset.fold=0,1,2,3,4` on the embedded data: five runs, one
    case in the report with n = 5, the mean over the folds, runs.csv's fold column."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "dataset.folds=5", "dataset.fold=0,1,2,3,4", *TINY, "dataset.image_size=16",
        "model=baseline_cnn", "logger=none", f"hydra.sweep.dir={sweep}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [result(sweep / str(i)) for i in range(5)]
    assert [r["fold"] for r in results] == [0, 1, 2, 3, 4]
    assert [list(r)[list(r).index("seed") + 1] for r in results] == ["fold"] * 5
    pool = 48 + 20  # TINY's training and validation images, pooled
    assert all(r["train_size"] + r["val_size"] == pool and r["test_size"] == 20 for r in results)
    assert sum(r["val_size"] for r in results) == pool
    log = (sweep / "2" / "flowers_sweep.log").read_text()
    assert "cross-validation: fold 2 of 5 (seed 102) validates" in log
    report = sweep / "report"
    cases = list(csv.DictReader((report / "results.csv").read_text().splitlines()))
    assert len(cases) == 1 and cases[0]["n"] == "5"
    mean = sum(r["test_acc"] for r in results) / 5
    assert float(cases[0]["test_acc_mean"]) == pytest.approx(mean, rel=1e-12)
    runs = list(csv.DictReader((report / "runs.csv").read_text().splitlines()))
    assert [r["fold"] for r in runs] == ["0", "1", "2", "3", "4"]
    assert len({r["case"] for r in runs}) == 1
    assert "over folds" in (report / "results.md").read_text()
    recorded = json.loads((sweep / "0" / "run_config.json").read_text())["config"]
    assert (recorded["dataset.folds"], recorded["dataset.fold"]) == (5, 0)
