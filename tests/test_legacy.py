"""Configs and run folders written before `_target_` nodes (issue 24), under today's code.

`model.arch`, `optimizer.name`, `scheduler.name` and `logger.name` became `_target_`
nodes; legacy.py reads the old keys in today's form. The fixtures were written by the old
code: the report's configs as `--cfg job` printed them, a run stopped by SIGTERM after
epoch 1 of 3 (tests/data/run_v1_interrupted, its text files: checkpoints stay out of
git, see with_epoch_1_checkpoint) and a tiny sweep (tests/data/sweep_v1, see
test_golden.py). An old run must resume, skip, evaluate and aggregate as it did.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

import flowers_sweep as fs
from flowers_sweep import evaluate
from flowers_sweep.record.legacy import RENAMED, upgrade_settings, upgrade_tree
from flowers_sweep.record.runrecord import (
    BEST_WEIGHTS_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HYDRA_DIR,
    METRICS_FILE,
    OVERRIDES_FILE,
    RUN_CONFIG_FILE,
    WEIGHTS_FILE,
    RunRecord,
    evaluation_files,
    read_run,
)
from flowers_sweep.record.settings import experiment_settings, flatten

from .helpers.cli import CONF, make_cfg, metrics, result, run_cli

DATA = Path(__file__).parent / "data"
RUN_V1 = DATA / "run_v1_interrupted"
SWEEP_V1 = DATA / "sweep_v1"
REPORT_V1 = DATA / "sweep_v1_report"
RESUMED_LOG = "resumed from {checkpoint} after epoch 1"  # what train.begin logs
SKIPPED_LOG = "{run_dir} already holds a completed run of these settings: skipped"
MISMATCH = "holds a run with other settings"  # runfolder.claim's refusal

# `python -m flowers_sweep experiment=report case=... --cfg job` by the old code, and the
# same overrides today.
REPORT_CONFIGS = {
    "report_relu_v1_config.yaml": ("experiment=report", "case=relu"),
    "report_baseline_cnn_v1_config.yaml": ("experiment=report", "case=baseline_cnn"),
    "report_sgd_none_v1_config.yaml": (
        "experiment=report",
        "case=relu",
        "optimizer=sgd",
        "scheduler=none",
    ),
}
# Each old name, and today's preset (conf/GROUP/NAME.yaml) that holds its numbers.
OLD_NAMES = [
    ("model.arch", "resnet", "resnet18"),
    ("model.arch", "baseline_cnn", "baseline_cnn"),
    ("optimizer.name", "adam", "adam"),
    ("optimizer.name", "sgd", "sgd"),
    ("scheduler.name", "multistep", "multistep"),
    ("scheduler.name", "none", "none"),
    ("logger.name", "tensorboard", "tensorboard"),
    ("logger.name", "none", "none"),
    ("dataset.name", "synthetic", "synthetic"),
    ("dataset.name", "flowers102", "flowers102"),
]


# Root keys added since these folders were written, which say how a launch is carried
# out, not what a run is (EXECUTION_SETTINGS): an old config has none, and every reader
# takes their absence as the default (no tags, no fail_fast).
NEW_ROOT_KEYS = ("tags", "fail_fast")


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def today(*overrides: str) -> dict:
    """Today's composition, interpolations left as text (as `--cfg job` prints them)."""
    return OmegaConf.to_container(make_cfg(*overrides), resolve=False)


# --- unit: the configs ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "overrides"), REPORT_CONFIGS.items(), ids=list(REPORT_CONFIGS))
def test_an_old_report_config_is_todays_composition(name: str, overrides: tuple[str, ...]):
    """`experiment=report` composes to exactly the numbers it did: the old config, upgraded,
    is the experiment today's composition makes; the whole tree too, node for node."""
    old = read_yaml(DATA / name)
    assert "arch" in old["model"] and "name" in old["optimizer"]  # the old form indeed
    new = today(*overrides)
    upgraded = upgrade_tree(old)
    assert experiment_settings(upgraded) == experiment_settings(new)
    assert upgraded == {k: v for k, v in new.items() if k not in NEW_ROOT_KEYS}


@pytest.mark.parametrize(
    "overrides",
    [(), ("model=baseline_cnn", "optimizer=sgd", "scheduler=none", "logger=none")],
    ids=["defaults", "baseline_cnn-sgd-none"],
)
def test_a_config_in_todays_form_is_left_as_it_is(overrides: tuple[str, ...]):
    flat = flatten(today(*overrides))
    assert list(upgrade_settings(flat).items()) == list(flat.items())  # keys' order too
    assert upgrade_tree(today(*overrides)) == today(*overrides)


def test_every_old_name_becomes_the_target_of_todays_preset():
    """In its place, with the keys around it untouched. `_partial_` as the preset has it
    for the experiment's nodes; the logger is built partially whatever it says
    (targets.build) and is not part of the experiment (EXECUTION_SETTINGS)."""
    assert {(k, n) for k, n, _ in OLD_NAMES} == {
        (k, n) for k, (names, _) in RENAMED.items() for n in names
    }  # a name legacy.py learns gets a row here
    for key, name, preset_name in OLD_NAMES:
        group = key.split(".")[0]
        preset = read_yaml(CONF / group / f"{preset_name}.yaml")
        target, partial = f"{group}._target_", f"{group}._partial_"
        upgraded = upgrade_settings({"seed": 3, key: name, f"{group}.x": 1})
        keys = list(upgraded)
        assert keys == ["seed", target, *[partial][: partial in upgraded], f"{group}.x"], keys
        assert upgraded[target] == preset["_target_"], (key, name)
        assert upgraded["seed"] == 3 and upgraded[f"{group}.x"] == 1
        if group != "logger":
            assert upgraded.get(partial, False) == preset.get("_partial_", False), (key, name)


@pytest.mark.parametrize("job", sorted(p.name for p in SWEEP_V1.iterdir() if p.is_dir()))
def test_an_old_run_folder_reads_in_todays_keys_and_labels(job: str):
    """What the aggregator reads of an old job: its settings as today's composition of
    its overrides, and from them alone (a run copied without its result or hydra.yaml)
    the labels its result.json recorded."""
    run_dir = SWEEP_V1 / job
    record = read_run(run_dir)
    assert record.broken is None
    todays = flatten(today(*read_yaml(run_dir / HYDRA_DIR / OVERRIDES_FILE)))
    assert record.config == {k: v for k, v in todays.items() if k not in NEW_ROOT_KEYS}
    bare = RunRecord(run_dir, record.config, None, _choices={})
    recorded = result(run_dir)
    assert (bare.model, bare.activation) == (recorded["model"], recorded["activation"])


# --- e2e: an old run folder ------------------------------------------------------------


def with_epoch_1_checkpoint(run_dir: Path, overrides: list[str]) -> Path:
    """Put the old run's epoch-1 checkpoint (and best weights) into run_dir, made by
    today's code: the same settings for 1 epoch, kept, trained in this process (fs.train:
    the CLI's task, run folder and all). Issue 24 changed the config's form, not the
    checkpoint's, and with milestones in epochs ([1, 2]) the state after epoch 1 does not
    depend on trainer.epochs. Returns the folder of that 1-epoch run."""
    scratch = run_dir.parent / "epoch_1"
    kept = ["trainer.keep_checkpoint=true", "trainer.keep_weights=both"]
    cfg = fs.compose([*overrides, "trainer.epochs=1", *kept])
    assert fs.train(cfg, scratch)["status"] == "completed"
    for name in (CHECKPOINT_FILE, BEST_WEIGHTS_FILE):
        shutil.copy(scratch / name, run_dir / name)
    return scratch


@pytest.mark.e2e
def test_an_old_interrupted_run_resumes_and_evaluates(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture
):
    """Relaunched with its own command, the old run resumes after epoch 1 (not refused
    as another run's folder, not started over) on the same schedule, and `evaluate`
    (its main, in this process) rebuilds it, from today's .hydra/config.yaml and from
    the old code's."""
    run_dir = tmp_path / "run"
    shutil.copytree(RUN_V1, run_dir)
    assert result(run_dir)["status"] == "interrupted"
    overrides = read_yaml(RUN_V1 / HYDRA_DIR / OVERRIDES_FILE)
    epoch_1 = with_epoch_1_checkpoint(run_dir, overrides)
    proc = run_cli(*overrides, f"hydra.run.dir={run_dir}", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert MISMATCH not in proc.stdout + proc.stderr

    res = result(run_dir)
    assert res["status"] == "completed" and res["epochs"] == 3
    assert (res["model"], res["activation"]) == ("baseline_cnn", "relu")
    rows = metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    # epoch 1 is the checkpoint's, as the run that made it logged it, to the last digit
    # (its numbers differ from the old run's on a CPU that trains `precision=auto` in
    # bf16, and in the last digits on one that sums in another order: the old numbers
    # themselves are tests/test_golden.py's concern)
    new_lines = (run_dir / METRICS_FILE).read_text().splitlines()[:2]
    assert new_lines == (epoch_1 / METRICS_FILE).read_text().splitlines()
    # MultiStepLR [1, 2] x 0.2 from 0.001. Each value is one or two float64 products,
    # each rounded to within half an ulp (1.1e-16 relative), and metrics.csv holds
    # repr(), which reads back exactly: 1e-12 is ample for rounding and far below any
    # other schedule (another gamma or milestone is off by a factor of 2 or more).
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == pytest.approx([0.001, 0.001 * 0.2, 0.001 * 0.2**2], rel=1e-12, abs=0)
    resumed = RESUMED_LOG.format(checkpoint=run_dir / CHECKPOINT_FILE)
    assert resumed in proc.stdout
    assert resumed in (run_dir / "flowers_sweep.log").read_text()
    assert (run_dir / WEIGHTS_FILE).is_file()
    # The folder's identity is still the record the old run started with.
    assert (run_dir / RUN_CONFIG_FILE).read_bytes() == (RUN_V1 / RUN_CONFIG_FILE).read_bytes()

    expected = f"top1: {res['test_acc']:.4f}"  # 20 test images: the 4 digits are exact
    for config in ("as relaunched (today's form)", "as the old code wrote it"):
        if config == "as the old code wrote it":
            shutil.copy(RUN_V1 / HYDRA_DIR / CONFIG_FILE, run_dir / HYDRA_DIR / CONFIG_FILE)
        evaluation_files(run_dir)[0].unlink(missing_ok=True)
        capsys.readouterr()
        code = evaluate.main([str(run_dir)])
        evaluated = capsys.readouterr()
        assert code == 0, (config, evaluated.err[-3000:])
        assert expected in evaluated.out.splitlines(), (config, evaluated.out)
        per_class = pd.read_csv(evaluation_files(run_dir)[0])
        correct = (per_class["support"] * per_class["accuracy"].fillna(0)).sum()
        assert round(correct) / per_class["support"].sum() == res["test_acc"], config


# --- e2e: an old sweep -------------------------------------------------------------------


@pytest.mark.e2e
def test_an_old_sweep_relaunched_skips_its_runs_and_reports_the_same(
    tmp_path: Path, cache_dir: Path
):
    """The sweep's command again (jobs 0-5): every job is skipped as completed, nothing
    in its folder changes, and its report has the old report's labels and numbers.

    The sweep folder also holds job 6 (seed=2, another launch's, interrupted): the
    sweep's end reports it and exits 1, as it does for any run of the folder that did not
    complete (callbacks.SweepEnd); it is the only run named.
    """
    sweep = tmp_path / "sweep"
    shutil.copytree(SWEEP_V1, sweep)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    files = [p for job in jobs for p in job.rglob("*") if p.is_file()]
    before = {p: p.read_bytes() for p in files}
    task = read_yaml(SWEEP_V1 / "multirun.yaml")["hydra"]["overrides"]["task"]
    assert task[:2] == ["case=relu,sigmoid,baseline_cnn", "seed=0,1"]
    proc = run_cli("-m", *task, f"hydra.sweep.dir={sweep}", "aggregate=true", cache=cache_dir)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert MISMATCH not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    summary = proc.stderr.split("flowers_sweep: 1 run of the sweep did not complete:\n")
    assert len(summary) == 2, proc.stderr[-3000:]
    assert summary[1].splitlines()[0].startswith(f"  {sweep / '6'}: interrupted: ")

    for job in jobs[:6]:
        skipped = SKIPPED_LOG.format(run_dir=job)
        assert skipped in proc.stdout, job
        assert skipped in (job / "flowers_sweep.log").read_text(), job
        assert not (job / WEIGHTS_FILE).exists()  # nothing trained
    assert "epoch 1/2" not in proc.stdout
    changed = [str(p.relative_to(sweep)) for p in files if p.read_bytes() != before[p]]
    assert not changed, changed  # result.json, metrics.csv, .hydra/, run_config.json

    report = sweep / "report"
    pd.testing.assert_frame_equal(
        pd.read_csv(report / "results.csv"), pd.read_csv(REPORT_V1 / "results.csv")
    )
    for name in ("results.csv", "results.md"):
        assert (report / name).read_text() == (REPORT_V1 / name).read_text(), name
    runs = (report / "runs.csv").read_text().replace(str(sweep), "SWEEP")
    assert runs == (REPORT_V1 / "runs.csv").read_text()
