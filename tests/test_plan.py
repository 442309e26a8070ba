"""`python -m flowers_sweep.plan`: a launch's jobs listed, checked and costed before it
runs, with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from flowers_sweep import plan
from flowers_sweep.job.sweep_plan import DONE, NEW, OTHER, PARTIAL, folder_state, plan_launch
from flowers_sweep.record.runrecord import (
    CHECKPOINT_FILE,
    HYDRA_DIR,
    METRICS_FILE,
    OVERRIDES_FILE,
    RESULT_FILE,
    RUN_CONFIG_FILE,
)
from flowers_sweep.record.settings import experiment_settings
from flowers_sweep.trainer import cost

from .helpers.cli import HANG_GUARD_S, TINY, make_cfg, run_cli

# The report's cases sweep of conftest.report_cases_sweep: the same arguments plan again.
CASES = ["-m", "case=relu,sigmoid,leaky_relu,baseline_cnn", "seed=0,1", *TINY, "trainer.epochs=2"]
# 12 jobs, exactly one invalid: at 16 px a 7-px kernel leaves the baseline CNN's second
# pooling nothing (16 -> 10 -> 5 -> -1); 5 px fits (16 -> 12 -> 6 -> 2 -> 1), and 24 px
# fits any of the three.
ONE_BAD = [
    "-m", "model=baseline_cnn", "model.kernel_size=3,5,7", "dataset.image_size=16,24,32,48",
]  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`, with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's job lines by job number: their columns split on runs of 2+ spaces."""
    rows = {}
    for line in out.splitlines()[1:]:
        first = line.split(" ", 1)[0]
        if first.isdigit() or first == "base":
            rows[first] = [c for c in line.split("  ") if c.strip()]
    return rows


def test_a_12_job_sweep_with_one_bad_job_exits_2_naming_it_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "notes.txt").write_text("the user's own file\n")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = snapshot(sweep)

    status = plan.main([*ONE_BAD, "trainer.epochs=1", f"hydra.sweep.dir={sweep}"])

    out, err = capsys.readouterr()
    assert status == 2
    rows = table_rows(out)
    assert sorted(rows, key=int) == [str(n) for n in range(12)]
    assert [n for n, r in rows.items() if r[1].strip() == "INVALID"] == ["8"]
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err
    assert errors[0].startswith("flowers_sweep.plan: error: job 8 (")
    assert "model.kernel_size=7 dataset.image_size=16 trainer.epochs=1)" in errors[0]
    assert "image_size=16 is too small" in errors[0]
    assert "1 of 12 jobs invalid" in err
    assert snapshot(sweep) == before
    assert list(work.iterdir()) == []


def test_the_default_sweep_folder_is_only_named_and_a_search_only_described(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert plan.main(["-m", "seed=0,1", "--no-estimate"]) == 0
    out = capsys.readouterr().out
    folders = [r[5].strip() for r in table_rows(out).values()]
    assert [Path(f).name for f in folders] == ["0", "1"]
    assert Path(folders[0]).parent.parent == Path("outputs/multirun")
    # the optuna preset replaces ${fs.unique_dir:...}, which OmegaConf evaluates while
    # merging: a real compose makes that folder; this one must not
    assert plan.main(["hparams_search=optuna", "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert "chooses its jobs as it runs (20 trials)" in out
    assert list(table_rows(out)) == ["base"]
    assert list(tmp_path.iterdir()) == []


def test_jobs_are_numbered_as_the_real_launch_numbered_its_folders(report_cases_sweep):
    """Each job's overrides are those Hydra recorded in the folder of that number."""
    launch = plan_launch([*CASES[1:], f"hydra.sweep.dir={report_cases_sweep}"], multirun=True)
    assert len(launch.jobs) == 8
    for job in launch.jobs:
        assert job.folder == report_cases_sweep / str(job.num)
        recorded = yaml.safe_load((job.folder / HYDRA_DIR / OVERRIDES_FILE).read_text())
        assert job.overrides == recorded
        assert job.state == DONE, (job.num, job.detail)


def test_a_half_finished_sweep_is_marked_done_partial_new(tmp_path, report_cases_sweep, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(report_cases_sweep, sweep)
    (sweep / "1" / RESULT_FILE).unlink()  # killed: metrics.csv and run_config.json stay
    result = json.loads((sweep / "2" / RESULT_FILE).read_text())
    (sweep / "2" / RESULT_FILE).write_text(json.dumps({**result, "status": "interrupted"}))
    shutil.rmtree(sweep / "3")
    before = snapshot(sweep)

    status = plan.main([*CASES, f"hydra.sweep.dir={sweep}", "--no-estimate"])

    out = capsys.readouterr().out
    assert status == 0
    states = {n: r[1].strip() for n, r in table_rows(out).items()}
    assert states["0"] == DONE
    assert states["1"] == f"{PARTIAL} (unfinished, 2/2 epochs)"
    assert states["2"] == f"{PARTIAL} (interrupted, 2/2 epochs)"
    assert states["3"] == NEW
    assert [states[str(n)] for n in range(4, 8)] == [DONE] * 4
    assert "total: 8 jobs (5 done, 2 partial, 1 new)" in out
    labels = {n: r[2].strip() for n, r in table_rows(out).items()}
    assert labels["0"] == "relu" and labels["7"] == "baseline_cnn"  # the case's name
    assert snapshot(sweep) == before


def test_a_folder_of_other_settings_is_named_and_stops_the_plan(tmp_path, capsys):
    run = tmp_path / "run"
    args = [*TINY, f"hydra.run.dir={run}", "--no-estimate"]
    (job,) = plan_launch(args[:-1], multirun=False).jobs
    settings = experiment_settings(OmegaConf.to_container(job.cfg, resolve=True))
    run.mkdir()
    record = {"config": {**settings, "optimizer.lr": 0.5}, "hydra_files": {}}
    (run / RUN_CONFIG_FILE).write_text(json.dumps(record))
    assert plan.main(args) == 2
    err = capsys.readouterr().err
    assert "job 0 (" in err and "holds a run with other settings" in err
    assert "optimizer.lr=0.5 (now 0.001)" in err
    (run / RUN_CONFIG_FILE).write_text(json.dumps({**record, "config": settings}))
    assert plan.main(args) == 0  # the same settings: the folder is this run's


def test_folder_state_reads_each_kind_of_start(tmp_path):
    settings = {"seed": 0}
    assert folder_state(tmp_path / "absent", settings, 3) == (NEW, "")
    run = tmp_path / "run"
    run.mkdir()
    assert folder_state(run, settings, 3) == (NEW, "")
    (run / CHECKPOINT_FILE).write_bytes(b"x")
    assert folder_state(run, settings, 3) == (PARTIAL, "started, no epoch recorded")
    (run / METRICS_FILE).write_text("epoch,val_acc\n1,0.5\n")
    assert folder_state(run, settings, 3) == (PARTIAL, "unfinished, 1/3 epochs")
    (run / RESULT_FILE).write_text(json.dumps({"status": "completed", "test_acc": 0.5}))
    assert folder_state(run, settings, 3) == (DONE, "")
    (run / RUN_CONFIG_FILE).write_text(json.dumps({"config": {"seed": 1}}))
    assert folder_state(run, settings, 3) == (OTHER, "seed=1 (now 0)")


def test_hydra_expands_globs_and_ranges_and_a_bad_job_keeps_its_place(capsys):
    launch = plan_launch(["model=glob(resnet1*)", "seed=range(0,2)"], multirun=True)
    assert [j.overrides for j in launch.jobs[:3]] == [
        ["model=resnet101", "seed=0"],
        ["model=resnet101", "seed=1"],
        ["model=resnet152", "seed=0"],
    ]
    assert len(launch.jobs) == 6 and not any(j.errors for j in launch.jobs)
    assert plan.main(["-m", "model=resnet18,resnet19", "+trainer.epoch=3", "--no-estimate"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert "job 0 (model=resnet18 +trainer.epoch=3): +trainer.epoch adds a key" in errors[0]
    assert "did you mean trainer.epochs?" in errors[0]
    assert "job 1 (model=resnet19 +trainer.epoch=3): In 'config': Could not find" in errors[1]
    assert "search path" not in errors[1]  # Hydra's long tail is cut


def test_a_sweep_without_m_is_hydras_error_in_one_line(capsys):
    assert plan.main(["seed=0,1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1
    assert errors[0].startswith("flowers_sweep.plan: error: job 0 (seed=0,1): Ambiguous value")
    assert errors[0].endswith("add --multirun to your command line")


def test_run_seconds_and_bytes_follow_the_stated_rule():
    step = cost.StepCost(
        image_s=0.01, steps=3, batch_size=32, image_size=32, device="cpu", threads=2,
        params=1000, checkpoint_bytes=12_000, weights_bytes=4_000,
    )  # fmt: skip
    sizes = {"train": 100, "val": 30, "test": 30}
    # 100 x 2 training images, then (30 x 2 + 2 x 30) evaluated at a third of the cost
    assert cost.run_seconds(step, sizes, epochs=2) == pytest.approx(0.01 * (200 + 120 / 3))
    assert cost.run_bytes(step, "last", keep_checkpoint=False) == (12_000 + 8_000, 4_000)
    assert cost.run_bytes(step, "both", keep_checkpoint=True) == (12_000 + 8_000, 20_000)
    assert cost.run_bytes(step, "none", keep_checkpoint=False) == (12_000 + 4_000, 0)
    # an EMA: its weights in the checkpoint; model.pt and model_ema.pt at the end
    assert cost.run_bytes(step, "last", False, ema=True) == (16_000 + 8_000, 4_000)
    assert cost.run_bytes(step, "last_ema", True, ema=True) == (16_000 + 12_000, 24_000)
    assert cost.run_bytes(step, "ema", False, ema=True) == (16_000 + 8_000, 4_000)
    assert "measured: median of 3 steps of batch 32 at 32 px on cpu, 2 threads: 10 ms/image" in (
        step.basis()
    )


def test_split_sizes_are_the_synthetic_configs_and_unknown_for_flowers102():
    synthetic = make_cfg("dataset.train_size=48", "dataset.val_size=20").dataset
    assert cost.split_sizes(synthetic) == {"train": 48, "val": 20, "test": 300}
    assert cost.split_sizes(make_cfg("dataset=flowers102").dataset) is None


@pytest.mark.parametrize(
    ("optimizer", "state_per_param"), [("optimizer=adam", 2), ("optimizer=sgd", 1)]
)
def test_the_measured_checkpoint_holds_the_optimizers_state(optimizer, state_per_param):
    cfg = make_cfg("model=baseline_cnn", optimizer, *TINY, "trainer.device=cpu")
    step = cost.measure_step(cfg, steps=1)
    assert step.steps == 1 and step.image_s > 0 and step.device == "cpu"
    assert step.threads == 1  # TINY's trainer.threads=1, restored after (the state guard)
    weights = step.params * 4  # the baseline CNN has no buffers
    assert step.weights_bytes == weights
    optimizer_state = step.checkpoint_bytes - weights
    # Adam's exp_avg and exp_avg_sq (and one step count a tensor); SGD's momentum buffer
    assert state_per_param * weights <= optimizer_state <= state_per_param * weights + 100


def test_the_command_line_prints_the_measured_estimate_and_writes_nothing(tmp_path, cache_dir):
    proc = run_cli(
        "-m", "model=baseline_cnn", "seed=0,1", *TINY, "trainer.device=cpu", cache=cache_dir,
        cwd=tmp_path,
        module="flowers_sweep.plan", timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(table_rows(proc.stdout)) == 2
    measured = [line for line in lines if line.startswith("baseline_cnn-relu: measured: ")]
    assert len(measured) == 1 and "batch 16 at 32 px on cpu, 1 thread:" in measured[0]
    total = next(line for line in lines if line.startswith("total: "))
    assert "2 jobs (2 new); time: about" in total and " kept, up to " in total
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_run_planned_without_a_gpu_is_measured_on_the_cpu_saying_so():
    step = cost.measure_step(make_cfg("model=baseline_cnn", *TINY, "trainer.device=cuda"), 1)
    assert step.device == "cpu"
    assert step.basis().endswith("CUDA is not available here; measured on the CPU instead)")


@pytest.mark.gpu
def test_a_cuda_run_is_measured_on_its_gpu():
    step = cost.measure_step(make_cfg("model=baseline_cnn", *TINY, "trainer.device=cuda"), 2)
    assert step.device.startswith("cuda") and step.image_s > 0
    assert f"at 32 px on {step.device}: " in step.basis()  # no thread count on a GPU


def test_a_search_folder_whose_trials_sampled_other_values_plans_its_relaunch(tmp_path, capsys):
    """Trial 0 of a search holds a sampled lr: not the base config's, yet the same search.
    Planning its relaunch (more trials) checks the base config only, exit 0."""
    sweep = tmp_path / "search"
    (sweep / "0").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    sampled = experiment_settings(
        OmegaConf.to_container(make_cfg("hparams_search=optuna", "optimizer.lr=0.00123"))
    )
    (sweep / "0" / RUN_CONFIG_FILE).write_text(json.dumps({"config": sampled, "hydra_files": {}}))
    args = ["-m", "hparams_search=optuna", f"hydra.sweep.dir={sweep}", "--no-estimate"]
    assert plan.main(args) == 0, capsys.readouterr()
    assert "chooses its jobs as it runs" in capsys.readouterr().out
