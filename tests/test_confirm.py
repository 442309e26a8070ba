"""Confirmed searches (hydra.sweeper.confirm): the best trials run again on fresh seeds,
chosen once and resumably, and tested apart in the report."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf
from scipy import stats

from flowers_sweep.aggregate import aggregate, build
from flowers_sweep.aggregate.stats import t_interval
from flowers_sweep.record.runrecord import RESULT_FILE
from flowers_sweep.search.confirm import (
    Chosen,
    ChosenRecordError,
    choose,
    chosen_path,
    confirmation_of,
    read_chosen,
    write_chosen,
)
from flowers_sweep.search.pruning import SWEEPER, trial_report

from .helpers.runfolders import write_run
from .helpers.searches import completed_confirmations, mtimes
from .test_study import FakeLauncher, study, sweeper

# --- the sweeper: which trials, which seeds, which folders -------------------------------


@pytest.mark.parametrize(
    ("confirm", "says"),
    [
        ({"top_k": -1}, "hydra.sweeper.confirm.top_k=-1: must be an integer >= 0"),
        ({"top_k": "two"}, "hydra.sweeper.confirm.top_k=two: must be an integer >= 0"),
        ({"top_k": True}, "hydra.sweeper.confirm.top_k=True: must be an integer >= 0"),
        ({"top_k": 2, "seeds": 1}, "hydra.sweeper.confirm.seeds=1: must be an integer >= 2"),
        ({"top_k": 2, "seeds": 2.5}, "hydra.sweeper.confirm.seeds=2.5: must be an integer"),
        ({"topk": 2}, "hydra.sweeper.confirm.topk: unknown key; allowed keys are top_k, seeds"),
        (
            3,
            "hydra.sweeper.confirm=3: must be a mapping of top_k and seeds; give "
            "hydra.sweeper.confirm.top_k=K (and hydra.sweeper.confirm.seeds=S)",
        ),
    ],
)
def test_bad_confirm_settings_end_in_one_line_before_anything_runs(tmp_path, capsys, confirm,
                                                                   says):  # fmt: skip
    s = sweeper(tmp_path, 2, launcher := FakeLauncher())
    s.confirm = OmegaConf.create(confirm) if isinstance(confirm, dict) else confirm
    with pytest.raises(SystemExit) as exit_:
        s.sweep([])
    assert exit_.value.code == 2 and launcher.launched == []
    err = capsys.readouterr().err
    assert err.startswith(f"flowers_sweep: error: {says}") and err.count("\n") == 1, err


def confirming(tmp_path, n_trials, launcher, top_k=2, seeds=3, seed=5):
    s = sweeper(tmp_path, n_trials, launcher)
    s.confirm = OmegaConf.create({"top_k": top_k, "seeds": seeds})
    s.config.seed = seed
    return s


def confirmations(launcher):
    """The confirmation jobs launched: (job number, trial, seed, overrides)."""
    found = []
    for num, overrides in launcher.launched:
        subdir = [o for o in overrides if o.startswith("hydra.sweep.subdir=")]
        if subdir:
            folder = subdir[0].partition("=")[2]
            trial, seed = confirmation_of(Path(folder)) or (None, None)
            found.append((num, trial, seed, overrides))
    return found


def test_the_best_trials_run_again_on_fresh_seeds_in_folders_of_their_own(tmp_path):
    """Trials 1 and 3 tie for the best value (ties go to the lower number): each runs
    on seeds 6, 7, 8 (the search's seed is 5) as jobs numbered after every trial, with
    the trial's values, in confirm/<trial>-seed<s>; the study gets no trial from them."""
    launcher = FakeLauncher({0: 0.3, 1: 0.7, 2: 0.5, 3: 0.7})
    confirming(tmp_path, 4, launcher).sweep(["trainer.epochs=2"])
    trials = dict(launcher.launched[:4])
    found = confirmations(launcher)
    assert [(num, trial, seed) for num, trial, seed, _ in found] == [
        (4, 1, 6), (5, 1, 7), (6, 1, 8), (7, 3, 6), (8, 3, 7), (9, 3, 8),
    ]  # fmt: skip
    for _, trial, seed, overrides in found:
        assert overrides == (*trials[trial], f"seed={seed}",
                             f"hydra.sweep.subdir=confirm/{trial}-seed{seed}")  # fmt: skip
        assert overrides[0] == "trainer.epochs=2"  # the search's fixed settings too
    assert len(study(tmp_path).trials) == 4
    record = json.loads(chosen_path(tmp_path).read_text())
    assert [t["trial"] for t in record["trials"]] == [1, 3]
    assert record["metric"] == "best_val_acc" and record["direction"] == "maximize"
    assert [t["seed"] for t in record["trials"]] == [5, 5]


def test_a_relaunch_confirms_the_recorded_trials_launching_only_the_missing_runs(tmp_path, caplog):
    """After a kill: the study has a better trial since (4), yet the recorded trials are
    confirmed; runs whose folder holds a completed result are not launched again, an
    unfinished or diverged one is. A larger top_k then adds the best trial not chosen yet."""
    confirming(tmp_path, 4, FakeLauncher({0: 0.3, 1: 0.7, 2: 0.5, 3: 0.6})).sweep([])
    write_run(tmp_path / "confirm" / "1-seed6", seed=6)
    write_run(tmp_path / "confirm" / "3-seed8", seed=8)
    write_run(tmp_path / "confirm" / "1-seed7", seed=7, status=None)  # killed mid-run
    write_run(tmp_path / "confirm" / "3-seed6", seed=6, status="diverged")
    relaunch = FakeLauncher({4: 0.9})
    with caplog.at_level(logging.INFO):
        confirming(tmp_path, 5, relaunch).sweep([])
    assert relaunch.launched[0][0] == 4  # the new trial, then the confirmations
    assert [(n, t, s) for n, t, s, _ in confirmations(relaunch)] == [
        (5, 1, 7), (6, 1, 8), (7, 3, 6), (8, 3, 7),
    ]  # fmt: skip
    # 3-seed6 diverged: it runs again, as a relaunch of any sweep reruns a diverged job
    assert "4 run(s) to go, 2 done" in caplog.text
    assert ("of those to go, 1 diverged, 1 unfinished ran before without completing: each "
            "runs again from its last checkpoint, as in any sweep's relaunch (from the same "
            "checkpoint a diverged run may diverge again)") in caplog.text  # fmt: skip
    assert [c.trial for c in read_chosen(tmp_path)] == [1, 3]
    wider = FakeLauncher()
    confirming(tmp_path, 5, wider, top_k=3).sweep([])
    assert [c.trial for c in read_chosen(tmp_path)] == [1, 3, 4]
    assert [(t, s) for _, t, s, _ in confirmations(wider)][-3:] == [(4, 6), (4, 7), (4, 8)]
    narrower = FakeLauncher()
    confirming(tmp_path, 5, narrower, top_k=1, seeds=2).sweep([])
    assert [(t, s) for _, t, s, _ in confirmations(narrower)] == [(1, 7)]  # 1-seed6 is done
    assert [c.trial for c in read_chosen(tmp_path)] == [1, 3, 4]  # the record stays


def test_a_top_k_beyond_the_completed_trials_says_so_and_confirms_those(tmp_path, caplog):
    """Of 3 trials one diverged (NaN: a failed trial): top_k=3 confirms the 2 others."""
    launcher = FakeLauncher({0: 0.3, 1: math.nan, 2: 0.5})
    with caplog.at_level(logging.INFO):
        confirming(tmp_path, 3, launcher, top_k=3, seeds=2).sweep([])
    assert ("hydra.sweeper.confirm.top_k=3, but only 2 trial(s) completed (pruned and failed "
            "trials are never confirmed): confirming those 2") in caplog.text  # fmt: skip
    assert [(t, s) for _, t, s, _ in confirmations(launcher)] == [(2, 6), (2, 7), (0, 6), (0, 7)]


def test_choosing_ranks_completed_trials_in_the_studys_direction():
    done = [(0, 0.5, {}), (1, 0.2, {"seed": 9}), (2, 0.2, {}), (3, 0.9, {})]
    lowest, changed = choose(None, done, 2, maximize=False, seed_of=lambda p: p.get("seed", 0))
    assert [(c.trial, c.seed) for c in lowest] == [(1, 9), (2, 0)] and changed  # a searched seed
    kept, changed = choose(lowest, done, 2, maximize=True, seed_of=lambda p: 0)
    assert [c.trial for c in kept] == [1, 2] and not changed  # recorded, whatever the study
    few, _ = choose(None, done[:1], 3, maximize=True, seed_of=lambda p: 0)
    assert [c.trial for c in few] == [0]


def test_the_record_reads_back_and_a_damaged_one_stops_in_one_line(tmp_path, capsys):
    chosen = [Chosen(3, 0.7, 0, {"optimizer.lr": 0.001, "scheduler.milestones": "[0.6]"})]
    write_chosen(tmp_path, chosen, "best_val_acc", maximize=True)
    assert read_chosen(tmp_path) == chosen
    assert [p.name for p in chosen_path(tmp_path).parent.iterdir()] == ["chosen.json"]
    chosen_path(tmp_path).write_text('{"trials": [{"trial": 3')  # cut short by hand
    with pytest.raises(ChosenRecordError, match=r"^[^\n]*chosen\.json: cannot be read"):
        read_chosen(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        confirming(tmp_path, 1, launcher := FakeLauncher()).sweep([])
    last = capsys.readouterr().err.splitlines()[-1]
    assert exit_.value.code == 2 and last.startswith("flowers_sweep: error: ")
    assert last.endswith("delete it to choose the trials to confirm again")
    assert [n for n, _ in launcher.launched] == [0]  # the trial ran, no confirmation


def test_a_confirmation_run_reports_to_no_trial(tmp_path):
    """Its job number is no trial's: it must not open the study to report epochs."""
    hc = OmegaConf.create({
        "mode": "MULTIRUN", "job": {"num": 0},
        "sweep": {"dir": str(tmp_path), "subdir": "confirm/0-seed1"},
        "sweeper": {"_target_": SWEEPER, "storage": "sqlite", "study_name": "s",
                    "pruner": "none"},
        "runtime": {"cwd": str(tmp_path)},
    })  # fmt: skip
    hc.mode = RunMode.MULTIRUN  # as Hydra's node holds it
    assert trial_report(hc, "best_val_acc") is None
    assert list(tmp_path.iterdir()) == []  # no study was opened
    hc.sweep.subdir = "0"
    assert trial_report(hc, "best_val_acc") is None  # no such study: still none
    assert (tmp_path / "optuna.db").exists()  # but this one looked


# --- the report ------------------------------------------------------------------------

PARAMS = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))"}
LRS = [1e-3, 1e-2, 1e-4, 3e-3]  # trials 0-3


def search_folder(tmp_path, confirmed, values=None, statuses=None, metric="best_val_acc",
                  direction="maximize", confirm=None):  # fmt: skip
    """Trials 0-3 (own test accuracies 0.5, 0.95, 0.6, 0.9), and confirmation runs:
    trial -> test accuracies on seeds 1, 2, ...; `values`: trial -> the searched
    metric's values of those runs (else the metric is the test accuracy, as write_run
    writes best_val_acc); `statuses`: trial -> their statuses (None: no result yet);
    `confirm`: multirun.yaml's hydra.sweeper.confirm."""
    sweep = tmp_path / "search"
    for trial, (lr, acc) in enumerate(zip(LRS, [0.5, 0.95, 0.6, 0.9], strict=True)):
        write_run(sweep / str(trial), case="relu", lr=lr, test_acc=acc)
    for trial, accs in confirmed.items():
        for i, acc in enumerate(accs):
            status = (statuses or {}).get(trial, ["completed"] * len(accs))[i]
            run = write_run(sweep / "confirm" / f"{trial}-seed{i + 1}", case="relu",
                            lr=LRS[trial], test_acc=acc, seed=i + 1, status=status)  # fmt: skip
            if values and status is not None:
                result = json.loads((run / "result.json").read_text())
                result[metric] = values[trial][i]
                (run / "result.json").write_text(json.dumps(result))
    sweeper = {"_target_": SWEEPER, "direction": direction, "params": PARAMS}
    if confirm:
        sweeper["confirm"] = confirm
    tree = {"hydra": {"sweeper": sweeper}, "optimized_metric": metric}
    (sweep / "multirun.yaml").write_text(OmegaConf.to_yaml(tree))
    return sweep


def holm_by_hand(p):
    """Holm (1979) for m = 2: the smaller p doubled; the larger kept, never below it."""
    low, high = sorted(p)
    first = min(1.0, 2 * low)
    return [first if x == low else max(first, high) for x in p]


def test_the_report_tests_the_confirmed_settings_against_the_best(tmp_path):
    """Trial 1's confirmations are best (its own lucky 0.95 is not counted); trial 3 is
    close to it, trial 2 far below: no winner, the not-distinguishable verdict. The
    confirmation runs are no trials: trials.csv and the figures hold trials 0-3."""
    accs = {1: [0.80, 0.82, 0.81], 3: [0.79, 0.83, 0.80], 2: [0.60, 0.62, 0.61]}
    sweep = search_folder(tmp_path, accs)
    report = aggregate([sweep])
    assert report.cases["trial"].tolist() == [0, 1, 2, 3]
    table = pd.read_csv(sweep / "report" / "confirmations.csv")
    assert table["trial"].tolist() == [1, 3, 2]
    assert table["n"].tolist() == [3, 3, 3] and table["seeds"].tolist() == ["1 2 3"] * 3
    assert table["not_completed"].tolist() == [0, 0, 0]
    assert table["optimizer.lr"].tolist() == pytest.approx([1e-2, 3e-3, 1e-4])
    for row in table.to_dict("records"):
        mine = accs[row["trial"]]
        assert row["test_acc_mean"] == pytest.approx(sum(mine) / 3)  # 0.95 left out
        interval = (row["test_acc_ci95_low"], row["test_acc_ci95_high"])
        assert interval == pytest.approx(t_interval(mine))
        assert row["value_mean"] == pytest.approx(sum(mine) / 3)  # best_val_acc here
        assert (row["value_ci95_low"], row["value_ci95_high"]) == pytest.approx(interval)
    assert table["trial_test_acc"].tolist() == pytest.approx([0.95, 0.9, 0.6])
    p = [stats.ttest_ind(accs[t], accs[1], equal_var=False).pvalue for t in (3, 2)]
    assert math.isnan(table["p_value"][0])
    assert table["p_value"][1:].tolist() == pytest.approx(p)
    assert table["p_holm"][1:].tolist() == pytest.approx(holm_by_hand(p))
    assert table["significant"].tolist() == [False, False, True]
    md = (sweep / "report" / "results.md").read_text()
    assert "## Confirmed on fresh seeds" in md
    assert "each run again on 3 seeds it was not searched with" in md
    assert "the top settings are not distinguishable with these seeds" in md
    assert "Confirmed winner" not in md and "not completed" not in md
    runs = report.runs
    assert (runs["case"] == "trial 1 confirm seed 2").sum() == 1 and len(runs) == 13
    assert set(report.curves["case"]) >= {"trial 0", "trial 3 confirm seed 1"}
    assert report.confirmations["trial"].tolist() == [1, 3, 2]
    assert {"search", "loss_curves"} <= set(report.figures())


@pytest.mark.parametrize(
    ("metric", "direction", "values"),
    [
        ("best_val_acc", "maximize", {1: [0.80, 0.82, 0.81], 3: [0.60, 0.62, 0.61]}),
        ("test_loss", "minimize", {1: [0.50, 0.52, 0.51], 3: [0.90, 0.92, 0.91]}),
    ],
)
def test_the_searched_metric_chooses_and_test_accuracy_only_estimates(
    tmp_path, metric, direction, values
):
    """Trial 3 has the higher test accuracy, trial 1 the better searched metric: trial
    1 is the best and the confirmed winner, tested on the metric; the test accuracies
    are reported beside, each with its interval, and choose nothing."""
    accs = {1: [0.70, 0.71, 0.72], 3: [0.90, 0.91, 0.92]}
    sweep = search_folder(tmp_path, accs, values, metric=metric, direction=direction)
    report = build([sweep])  # the report in memory: no files, no figures drawn
    table = report.confirmations
    assert table["trial"].tolist() == [1, 3] and table.attrs["winner"] == 1
    assert table["value_mean"].tolist() == pytest.approx([sum(values[t]) / 3 for t in (1, 3)])
    assert table["test_acc_mean"].tolist() == pytest.approx([0.71, 0.91])
    p = stats.ttest_ind(values[3], values[1], equal_var=False).pvalue
    assert table["p_value"][1] == pytest.approx(p) and table["significant"].tolist() == [
        False,
        True,
    ]
    diff = table["diff_best"][1]  # worse than the best: lower, or higher when minimized
    assert diff == pytest.approx((sum(values[3]) - sum(values[1])) / 3)
    assert (diff < 0) == (direction == "maximize")
    assert "**Confirmed winner: trial 1**" in report.markdown
    assert f"They are ranked and tested on {metric}, the searched metric" in report.markdown
    lo, hi = t_interval(accs[1])
    assert f"Its test accuracy on the fresh seeds, 71.0% [{100 * lo:.1f}%, {100 * hi:.1f}%]" in (
        report.markdown
    )
    caveat = "a test-split number: the test split did choose here"
    assert (caveat in report.markdown) == metric.startswith("test")


def test_a_winner_is_named_only_when_better_than_every_other(tmp_path):
    sweep = search_folder(tmp_path, {1: [0.80, 0.82, 0.81], 2: [0.60, 0.62, 0.61, 0.6]})
    report = build([sweep])  # the report in memory: no files, no figures drawn
    assert report.confirmations["trial"].tolist() == [1, 2]
    assert report.confirmations.attrs["winner"] == 1
    assert "**Confirmed winner: trial 1**" in report.markdown
    assert "not distinguishable" not in report.markdown


def test_a_partly_done_confirmation_says_how_many_seeds_were_asked_and_what_is_left(tmp_path):
    """confirm.seeds=2 on 3 chosen trials: one of each of trials 1 and 3's runs
    diverged, trial 2 has no folder yet. The header names the 2 seeds asked for (not
    the 1 counted) and the 2 of 6 runs completed; the footer what is left, by status,
    and that the search command runs them all, the diverged ones again too."""
    accs = {1: [0.80, 0.1], 3: [0.1, 0.72]}
    statuses = {1: ["completed", "diverged"], 3: ["diverged", "completed"]}
    sweep = search_folder(tmp_path, accs, statuses=statuses, confirm={"top_k": 3, "seeds": 2})
    write_chosen(sweep, [Chosen(t, 0.9, 0, {"optimizer.lr": LRS[t]}) for t in (1, 3, 2)],
                 "best_val_acc", maximize=True)  # fmt: skip
    report = build([sweep])  # the report in memory: no files, no figures drawn
    table = report.confirmations
    assert table["trial"].tolist() == [1, 3, 2]
    assert table["n"].tolist() == [1, 1, 0] and table["not_completed"].tolist() == [1, 1, 2]
    assert table["seeds"].tolist()[:2] == ["1", "2"]
    assert table.attrs["missing"] == {"diverged": 2, "not started": 2}
    md = report.markdown
    assert ("each run again on 2 seeds it was not searched with (hydra.sweeper.confirm.seeds=2; "
            "SWEEP_DIR/confirm/); 2 of 6 confirmation runs completed, and only those are "
            "counted") in md  # fmt: skip
    assert ("4 confirmation runs not completed (2 diverged, 2 not started): left out of the "
            "means; runs.csv lists those with a folder. The same search command runs them, "
            "the failed and diverged ones again too") in md  # fmt: skip
    assert "| 2 | 0.0001 | 0 | none completed | not testable | none completed |" in md
    assert table.attrs["winner"] is None


def test_a_search_without_confirmation_has_no_such_table(tmp_path):
    sweep = search_folder(tmp_path, {})
    report = aggregate([sweep])
    assert report.confirmations is None and "Confirmed" not in report.markdown
    assert not (sweep / "report" / "confirmations.csv").exists()


# --- end to end ------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_confirmed_search_killed_while_confirming_finishes_only_what_is_missing(
    confirmed_search,
):
    """confirmed_search (conftest.py): 4 trials (2 of an earlier launch), then the 2
    best on 2 fresh seeds each: 4 confirmation runs. The launch is killed (SIGKILL) once
    two confirmations have completed; the relaunch trains only the missing
    confirmations (no trial, no finished confirmation again), and the report tests the
    two confirmed settings apart. (The launch's own jobs; joblib and submitit compose
    each job from the same overrides, per-job hydra.sweep.subdir included.)"""
    sweep = confirmed_search / "search"
    record = json.loads((confirmed_search / "launches.json").read_text())
    out, done, chosen = record["killed_stdout"], record["done"], record["chosen"]
    assert "Launching 4 jobs locally" in out  # the confirmations, after the new trials
    assert 2 <= len(done) < 4, done

    again = record["again"]
    assert again["returncode"] == 0, again["stderr"][-3000:]
    missing = 4 - len(done)
    log = again["stdout"] + again["stderr"]
    assert f"{missing} run(s) to go, {len(done)} done" in log
    assert log.count("Launching") == 1 and f"Launching {missing} jobs locally" in log
    assert mtimes({n: sweep / "confirm" / n / RESULT_FILE for n in done}) == record["stamps"]
    trials_now = mtimes({str(n): sweep / str(n) / RESULT_FILE for n in range(4)})
    assert trials_now == record["trial_stamps"]  # no trial ran again
    assert len(completed_confirmations(sweep)) == 4
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == list("0123")
    table = pd.read_csv(sweep / "report" / "confirmations.csv")
    assert sorted(table["trial"]) == sorted(chosen) and table["n"].tolist() == [2, 2]
    for prefix in ("value", "test_acc"):
        assert table[[f"{prefix}_ci95_low", f"{prefix}_ci95_high"]].notna().all().all()
    second = table.iloc[1]  # tested against the best, or not testable: no spread at all
    assert not math.isnan(second["p_holm"]) or (table["value_std"] == 0).all()
    ranked = table.sort_values(["value_mean", "trial"], ascending=[False, True])
    assert table["trial"].tolist() == ranked["trial"].tolist()  # by best_val_acc
    assert "vs best: Holm p" in (sweep / "report" / "results.md").read_text()
    trials = pd.read_csv(sweep / "report" / "trials.csv")
    assert trials["trial"].tolist() == list(range(4))  # the confirmations are no trials
    best = trials.sort_values(["value", "trial"], ascending=[False, True])["trial"]
    assert chosen == best.head(2).tolist()
