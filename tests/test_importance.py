"""Which settings mattered: a grid's ANOVA shares, a search's PED-ANOVA importance (as
Optuna gives it on the study itself), and the parallel-coordinates figure; built from
fake run folders or runs tables, no training, no subprocess."""

import io
import logging
import math

import numpy as np
import optuna
import pandas as pd
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution
from scipy import stats

from flowers_sweep.aggregate import AggregateError, aggregate, build, write
from flowers_sweep.aggregate.figures import PARALLEL_PAD, end_ticks
from flowers_sweep.aggregate.importance import (
    aliased,
    choice_label,
    grid_importance,
    importance_markdown,
    optuna_importance,
    setting_names,
    shown_setting,
)
from flowers_sweep.aggregate.stats import pairwise_tests

from .helpers.runfolders import write_run

EPS = np.finfo(float).eps
SWEEPER = "hydra_plugins.flowers_sweep_search.study_sweeper.StudySweeper"


def noisy_grid(tmp_path, seeds=3, effect=0.1, skip=()):
    """trainer.batch_size=16,32 x dataset.image_size=32,48 x seeds: the batch size moves
    test accuracy by `effect`, the image size not at all; seeds add fixed noise."""
    noise = np.random.default_rng(7).normal(0, 0.01, size=(2, 2, seeds))
    sweep, job = tmp_path / "grid", 0
    for i, batch in enumerate((16, 32)):
        for j, size in enumerate((32, 48)):
            for seed in range(seeds):
                if (i, j, seed) not in skip:
                    acc = 0.5 + effect * i + noise[i, j, seed]
                    settings = {"trainer.batch_size": batch, "dataset.image_size": size}
                    write_run(sweep / str(job), seed=seed, settings=settings, test_acc=acc)
                job += 1
    return sweep


def test_a_grid_ranks_the_setting_that_moves_accuracy_above_the_one_that_does_not(tmp_path):
    report = aggregate([noisy_grid(tmp_path)])
    table = report.importance.set_index("setting")
    settings = report.importance[report.importance["kind"] == "setting"]["setting"].tolist()
    assert settings == ["trainer.batch_size", "dataset.image_size"]
    assert table.loc["trainer.batch_size", "importance"] > 0.9
    assert table.loc["trainer.batch_size", "p"] < 1e-6
    assert table.loc["dataset.image_size", "importance"] < 0.05
    assert table.loc["dataset.image_size", "p"] > 0.05
    # balanced: the main effects, interactions and seeds share out the whole variance
    assert table["importance"].sum() == pytest.approx(1, rel=64 * EPS)
    assert list(table.loc[["interactions", "seeds"], "df"]) == [1, 8]  # 4 cases x 3 seeds
    assert "F test against the seeds within a case" in table["method"].iloc[0]
    assert not table["note"].iloc[0]
    assert "## Which settings mattered" in report.markdown
    assert "| trainer.batch_size | 2 |" in report.markdown
    written = pd.read_csv(tmp_path / "grid" / "report" / "importance.csv")
    assert written["setting"].tolist() == report.importance["setting"].tolist()


def runs_frame(settings, accs, **more):
    """A runs.csv table of completed runs: `settings` a column each, a case label each."""
    n = len(accs)
    frame = pd.DataFrame(settings)
    labels = ["resnet18-relu-" + "-".join(f"{k}={v}" for k, v in r.items()) for r in
              frame.to_dict("records")]  # fmt: skip
    frame.insert(0, "case", labels)
    for name, values in more.items():
        frame[name] = values
    return frame.assign(status=["completed"] * n, test_acc=accs, seed=range(n))


def test_one_setting_gives_scipys_one_way_anova_and_folds_are_no_setting():
    batch = [16, 16, 16, 32, 32, 32, 64, 64]
    accs = [0.51, 0.55, 0.50, 0.61, 0.58, 0.66, 0.70, 0.64]
    runs = runs_frame({"trainer.batch_size": batch}, accs, fold=[0, 1, 2, 0, 1, 2, 0, 1])
    table = grid_importance(runs).set_index("setting")
    assert table.index.tolist() == ["trainer.batch_size", "seeds and folds"]  # no fold setting
    groups = [[a for a, b in zip(accs, batch, strict=True) if b == v] for v in (16, 32, 64)]
    expected = stats.f_oneway(*groups)
    assert table.loc["trainer.batch_size", "F"] == pytest.approx(expected.statistic, rel=64 * EPS)
    assert table.loc["trainer.batch_size", "p"] == pytest.approx(expected.pvalue, rel=1e-9)
    total = sum((a - np.mean(accs)) ** 2 for a in accs)
    within = sum(sum((a - np.mean(g)) ** 2 for a in g) for g in groups)
    assert table.loc["trainer.batch_size", "importance"] == pytest.approx(1 - within / total)


def test_the_case_is_a_setting_and_what_follows_it_is_not():
    """Two activations (the case's base) x two learning rates: the activation's own key
    (its _target_) only repeats the case and is left out."""
    frame = pd.DataFrame(
        {
            "case": ["relu-lr=0.01", "relu-lr=0.1", "tanh-lr=0.01", "tanh-lr=0.1"] * 2,
            "model.activation._target_": ["ReLU", "ReLU", "Tanh", "Tanh"] * 2,
            "config.lr": [0.01, 0.1, 0.01, 0.1] * 2,
            "status": "completed",
            "test_acc": [0.8, 0.8, 0.5, 0.5, 0.82, 0.79, 0.52, 0.49],
        }
    )
    table = grid_importance(frame).set_index("setting")
    assert table.index.tolist() == ["case", "config.lr", "interactions", "seeds"]
    assert table.loc["case", "importance"] > 0.95
    assert table.loc["case", "levels"] == 2


def test_an_unbalanced_grid_or_one_run_per_case_says_what_it_cannot_tell(tmp_path):
    table = build([noisy_grid(tmp_path, skip={(0, 0, 0)})]).importance.set_index("setting")
    assert "unbalanced grid (unequal runs per case)" in table["note"].iloc[0]
    assert math.isnan(table.loc["interactions", "importance"])
    assert table.loc["trainer.batch_size", "p"] < 1e-6  # against the seeds still
    single = build([noisy_grid(tmp_path / "one", seeds=1)]).importance.set_index("setting")
    assert "F test against the interactions (one run per case)" in single["method"].iloc[0]
    assert "seeds" not in single.index and single.loc["interactions", "df"] == 1
    assert single["importance"].sum() == pytest.approx(1, rel=64 * EPS)
    assert single.loc["trainer.batch_size", "p"] < 0.05
    exact = grid_importance(
        runs_frame(
            {"trainer.batch_size": [16, 16, 32, 32], "dataset.image_size": [32, 48, 32, 48]},
            [0.5, 0.6, 0.7, 0.8],
        )
    ).set_index("setting")
    assert exact["p"].isna().all()  # an F of rounding errors would be ~1e15
    assert exact.loc["interactions", "importance"] == 0  # not 1e-16
    assert "effects add up exactly" in exact["note"].iloc[0]
    assert exact.loc["trainer.batch_size", "importance"] == pytest.approx(0.8, rel=64 * EPS)


# ---------------------------------------------------------------- a search
SPACE = {
    "optimizer.lr": FloatDistribution(1e-5, 1e-1, log=True),
    "trainer.batch_size": CategoricalDistribution([16, 32, 64]),
    "scheduler.gamma": FloatDistribution(0.1, 0.9),
}
PRESET = {  # multirun.yaml's sweeper params; the command widens the lr's, fixes milestones
    "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
    "trainer.batch_size": "choice(16, 32, 64)",
    "scheduler.gamma": "interval(0.1, 0.9)",
    "scheduler.milestones": "choice([0.4,0.7], [0.6])",
}
COMMAND = [
    "hparams_search=optuna",
    "optimizer.lr=tag(log, interval(1e-5, 1e-1))",
    "scheduler.milestones=[40,70]",
]


def real_study(n_trials: int, direction: str = "maximize") -> optuna.Study:
    """A study run by Optuna itself: the lr matters, the batch size a little, gamma not;
    every tenth trial pruned, one failed."""
    sampler = optuna.samplers.RandomSampler(3)
    study = optuna.create_study(direction=direction, sampler=sampler)
    for i in range(n_trials):
        trial = study.ask(SPACE)
        lr, batch = trial.params["optimizer.lr"], trial.params["trainer.batch_size"]
        value = 0.9 - 0.1 * abs(math.log10(lr) + 3) - batch / 2000
        if i % 10 == 4:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif i == 7:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)
    return study


def search_folders(tmp_path, study: optuna.Study):
    """The study's trials as the search's folders would hold them."""
    sweep = tmp_path / "search"
    for t in study.trials:
        status = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}[t.state.name]
        write_run(
            sweep / str(t.number),
            case="relu",
            lr=t.params["optimizer.lr"],
            gamma=t.params["scheduler.gamma"],
            settings={"trainer.batch_size": t.params["trainer.batch_size"]},
            test_acc=t.value if t.value is not None else 0.1,
            status=status,
        )
    direction = study.direction.name.lower()
    sweeper = {"_target_": SWEEPER, "direction": direction, "params": PRESET}
    tree = {"hydra": {"sweeper": sweeper, "overrides": {"task": COMMAND}}}
    (sweep / "multirun.yaml").write_text(OmegaConf.to_yaml(tree))
    return sweep


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_searchs_importance_is_optunas_on_the_study_itself(tmp_path, direction):
    study = real_study(60, direction)
    report = build([search_folders(tmp_path, study)])
    importance = optuna_importance()  # optuna.importance, os.environ left as it was
    evaluator = importance.PedAnovaImportanceEvaluator()
    expected = importance.get_param_importances(study, evaluator=evaluator)
    table = report.importance
    found = dict(zip(table["setting"], table["importance"], strict=True))
    assert list(found) == list(expected)  # largest first, as Optuna orders them
    assert found == pytest.approx(expected, rel=64 * EPS, abs=64 * EPS)
    if direction == "maximize":  # the best trials: what the objective depends on
        assert max(found, key=found.get) == "optimizer.lr"
    completed = sum(t.state.name == "COMPLETE" for t in study.trials)
    assert f"of {completed} completed trials" in table["method"].iloc[0]
    assert "PED-ANOVA" in table["method"].iloc[0] and not table["note"].iloc[0]
    assert "## Which settings mattered" in report.markdown


def test_too_few_trials_give_no_importance_and_say_why(tmp_path):
    study = real_study(3)  # trials 0, 1, 2: completed
    sweep = search_folders(tmp_path, study)
    for n in (1, 2):
        (sweep / str(n) / "result.json").unlink()  # still running
    report = aggregate([sweep])
    assert report.importance["importance"].isna().all()
    assert "needs 2 completed trials with a value; 1 here" in report.importance["note"].iloc[0]
    assert "| optimizer.lr | 1 | - |" in report.markdown
    few = build([search_folders(tmp_path / "few", real_study(12))]).importance
    assert few["importance"].notna().all()
    assert "rough: 1 trial in the top 10%, where Optuna advises at least 5" in few["note"][0]


# ---------------------------------------------------------------- the figure
def axes_named(fig):
    """The parallel axes by name, left to right (the colour bar has no name)."""
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label()}


def test_the_parallel_figure_has_an_axis_per_setting_and_one_for_the_result(tmp_path):
    report = build([noisy_grid(tmp_path)])
    grid = report.figure("parallel")
    metric = "mean test accuracy (%)"
    assert list(axes_named(grid)) == ["dataset.image_size", "trainer.batch_size",
                                      metric]  # runs.csv's order  # fmt: skip
    assert len(grid.axes) == 3 + 1  # and the colour bar
    assert len(grid.axes[0].collections[0].get_segments()) == 4  # a line per case
    grid.savefig(io.BytesIO(), format="png")

    study = real_study(20)
    report = build([search_folders(tmp_path, study)])
    fig = report.figure("parallel")
    named = axes_named(fig)
    assert list(named) == [*SPACE, "best_val_acc"]  # milestones: fixed, not searched
    assert named["optimizer.lr"].get_yscale() == "log"
    pad = PARALLEL_PAD / (1 - 2 * PARALLEL_PAD) * 4  # decades: the space spans 4
    ends = (10 ** (-5 - pad), 10 ** (-1 + pad))  # the whole search space shown
    assert named["optimizer.lr"].get_ylim() == pytest.approx(ends, rel=1e-12)
    assert named["scheduler.gamma"].get_yscale() == "linear"
    ticks = [t.get_text() for t in named["trainer.batch_size"].get_yticklabels()]
    assert set(ticks) <= {"16", "32", "64"} and len(ticks) >= 2
    completed = sum(t.state.name == "COMPLETE" for t in study.trials)
    assert len(fig.axes[0].collections[0].get_segments()) == completed
    fig.savefig(io.BytesIO(), format="png")


def test_nothing_varies_no_importance_and_no_parallel_figure(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_run(sweep / str(seed), case="relu", seed=seed, test_acc=0.5 + seed / 10)
    (sweep / "report").mkdir()
    for stale in ("importance.csv", "parallel.png"):  # an earlier report's
        (sweep / "report" / stale).write_text("old")
    report = aggregate([sweep])
    assert report.importance is None
    assert "Which settings mattered" not in report.markdown
    assert not (sweep / "report" / "importance.csv").exists()
    assert not (sweep / "report" / "parallel.png").exists()
    assert "parallel" not in report.figures()
    with pytest.raises(AggregateError, match="no setting varies between the completed runs"):
        report.figure("parallel")
    assert write(report, tmp_path / "out") == []
    assert importance_markdown(None) == ""


def test_a_grids_figure_draws_each_case_once_at_its_mean_and_labels_the_metrics_range(tmp_path):
    """12 runs, 4 cases x 3 seeds: 4 lines, each at and coloured by its case's mean (the
    seeds' runs would draw on top of each other, in the best one's colour)."""
    report = build([noisy_grid(tmp_path)])
    fig = report.figure("parallel")
    lines = fig.axes[0].collections[0]
    means = report.results["test_acc_mean"].to_numpy(float) * 100
    assert sorted(lines.get_array()) == pytest.approx(sorted(means), rel=64 * EPS)
    title = " ".join(fig.get_suptitle().split())  # wrapped
    assert "one line per case: mean over its 3 runs (4 cases)" in title, title
    metric = axes_named(fig)["mean test accuracy (%)"]
    ticks = metric.get_yticks()
    assert ticks[0] == pytest.approx(means.min()) and ticks[-1] == pytest.approx(means.max())
    low, high = metric.get_ylim()
    assert low < means.min() and means.max() < high
    labels = [t.get_text() for t in metric.get_yticklabels()]
    assert labels[0] == f"{means.min():.4g}" and labels[-1] == f"{means.max():.4g}"
    assert end_ticks(5, 20) == [5, 7.5, 10, 12.5, 15, 17.5, 20]  # the ends, not 6..18 alone
    assert end_ticks(5, 18.2) == [5, 7.5, 10, 12.5, 15, 18.2]  # 17.5: too near 18.2
    assert end_ticks(5, 5) == [5]
    one = build([noisy_grid(tmp_path / "one", seeds=1)]).figure("parallel")
    assert "test accuracy (%)" in axes_named(one)  # a run per case: no mean
    assert "mean over" not in one.get_suptitle()


def test_a_searchs_figure_shows_every_choice_of_its_space_in_the_spaces_order(tmp_path):
    """The trials took 64 and 32 of choice(16, 32, 64) and one of three milestone
    lists: the axes still show all the space's choices, in its order."""
    sweep = tmp_path / "search"
    for n, (batch, milestones) in enumerate(
        [(64, (0.4, 0.7)), (32, (0.4, 0.7)), (64, (0.4, 0.7))]
    ):
        write_run(sweep / str(n), case="relu", milestones=milestones, test_acc=0.5 + n / 10,
                  settings={"trainer.batch_size": batch})  # fmt: skip
    params = {"trainer.batch_size": "choice(16, 32, 64)",
              "scheduler.milestones": "choice([0.4,0.7], [0.6], [0.5,0.75])"}  # fmt: skip
    tree = {"hydra": {"sweeper": {"_target_": SWEEPER, "params": params}}}
    (sweep / "multirun.yaml").write_text(OmegaConf.to_yaml(tree))
    fig = build([sweep]).figure("parallel")
    named = axes_named(fig)
    labels = {k: [t.get_text() for t in named[k].get_yticklabels()] for k in params}
    assert labels["trainer.batch_size"] == ["16", "32", "64"]
    assert labels["scheduler.milestones"] == ["[0.4,0.7]", "[0.6]", "[0.5,0.75]"]
    heights = [seg[0][1] for seg in fig.axes[0].collections[0].get_segments()]
    assert sorted(heights) == pytest.approx([0.5, 0.95, 0.95])  # 32 in the middle, 64 on top
    assert choice_label(16.0, [16, 32]) == "16"  # trials.csv's float column
    assert choice_label("[0.6]", ["[0.4,0.7]", "[0.6]"]) == "[0.6]"
    assert choice_label(True, [1, True]) == "True"  # a bool is no number here


def test_settings_that_change_together_are_one_row_and_the_note_says_why(tmp_path):
    """lr and batch size moved together (0.1 with 64, 0.01 with 16): one effect, which
    no analysis of these runs can share out between them."""
    settings = {"optimizer.lr": [0.1, 0.1, 0.01, 0.01] * 2,
                "trainer.batch_size": [64, 64, 16, 16] * 2,
                "dataset.image_size": [32, 48, 32, 48] * 2}  # fmt: skip
    accs = [0.7, 0.71, 0.5, 0.52, 0.69, 0.7, 0.51, 0.5]
    table = grid_importance(runs_frame(settings, accs)).set_index("setting")
    assert table.index.tolist() == ["optimizer.lr + trainer.batch_size", "dataset.image_size",
                                    "interactions", "seeds"]  # fmt: skip
    note = table["note"].iloc[0]
    assert "optimizer.lr and trainer.batch_size change together: their shares cannot" in note
    assert "unbalanced" not in note  # merged, the grid is a balanced 2 x 2 x 2
    assert table["importance"].sum() == pytest.approx(1, rel=64 * EPS)
    assert table.loc["optimizer.lr + trainer.batch_size", "levels"] == 2
    levels = pd.DataFrame({"a": [1, 1, 2, 2], "b": ["x", "x", "y", "y"], "c": [1, 2, 1, 1],
                           "d": [5, 5, 6, 6], "e": [1, 2, 3, 3]})  # fmt: skip
    assert aliased(levels) == [["a", "b", "d"], ["c"], ["e"]]  # e determines a, not back


def test_the_note_says_why_a_paired_test_and_the_f_test_can_disagree():
    """Two cases on the same folds: results.md's tests are paired, the F test is not."""
    accs = [0.60, 0.70, 0.80, 0.62, 0.73, 0.81]
    runs = runs_frame({"trainer.batch_size": [16] * 3 + [32] * 3}, accs, fold=[0, 1, 2] * 2)
    runs["seed"] = 0  # the same (seed, fold) pairs in both cases
    assert pairwise_tests(runs)["test"].tolist() == ["paired"]
    note = grid_importance(runs)["note"].iloc[0]
    assert "the paired t-tests above" in note and "can disagree" in note
    apart = runs.assign(fold=[0, 1, 2, 3, 4, 5])  # no fold shared: Welch's tests
    assert "paired" not in grid_importance(apart)["note"].iloc[0]


def test_searches_aggregated_together_are_a_grid_without_confirmation_runs(tmp_path, caplog):
    one = search_folders(tmp_path / "one", real_study(3))
    two = search_folders(tmp_path / "two", real_study(3))
    write_run(one / "confirm" / "0-seed5", case="relu", seed=5, test_acc=0.99)
    with caplog.at_level(logging.WARNING, logger="flowers_sweep.aggregate.report"):
        report = build([one, two])
    assert not report.search and report.problems == []
    assert len(report.runs) == 6 and not report.runs["run_dir"].str.contains("confirm").any()
    line = (f"{one}, {two} are searches: a search's report needs its folder alone "
            "(python -m flowers_sweep.aggregate SEARCH_DIR); here the trials are a grid's "
            "runs, and the 1 confirmation run of confirm/ left out")  # fmt: skip
    assert line in caplog.messages
    assert report.markdown.startswith(f"# Results\n\n{line}.\n\n")
    plain = build([one / "0", one / "confirm"])  # no search among them: as they are
    assert len(plain.runs) == 2 and "search" not in plain.markdown


def test_result_columns_are_never_settings_and_long_aliases_are_counted():
    runs = pd.DataFrame(
        columns=["case", "optimizer.lr", "seed", "test_acc", "tags", "test_acc_ema", "fold"]
    )
    assert setting_names(runs) == ["optimizer.lr"]
    six = " + ".join(f"k{i}" for i in range(6))
    assert shown_setting(six) == "k0 + k1 + k2 + k3 + 2 more"
    assert shown_setting("a + b") == "a + b"
