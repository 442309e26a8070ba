"""Every `experiment=` preset, run through the real command line at a tiny scale.

The presets are found by a glob over conf/experiment/, so a new one is run here with no
edit. Each keeps its own choices (model, starting weights, normalisation, augmentation,
optimizer, schedule); only the scale is cut down, by the dataset it picks:

- synthetic: TINY, as the other CLI tests run.
- flowers102: a small generated tree in torchvision's layout (18 JPEGs), since the real
  images are not here; its label and split files are our own, so
  `dataset.verify_checksums=false`; 32 px, one epoch, batches of 16.

A preset that starts from torchvision's weights (experiment=finetune) finds a stand-in
file where torchvision keeps them (TORCH_HOME/hub/checkpoints): the model's layout,
freshly initialised, since nothing is downloaded here. The run still goes through the
named-weights path and loads that file, which the test checks in its log.

One preset (CLI_PRESET, the one whose run must find TORCH_HOME's file) starts the real
command line; the others run app.main in this process, as `python -m` calls it (what
the run sets for its process put back after it: helpers/cli.run_app_in_process):
the same composition, folder and training, without the interpreter's start.
"""

import pytest
import yaml
from omegaconf import OmegaConf

from flowers_sweep.record.runrecord import CONFIG_FILE, HYDRA_DIR, RESULT_FILE

from .helpers.cli import TINY, make_cfg, result, run_app_in_process, run_cli
from .helpers.fake_flowers102 import write_tree
from .helpers.presets import (
    compose_with_hydra,
    preset_files,
    preset_override,
    stand_in_torchvision_weights,
)

pytestmark = pytest.mark.e2e
SCALE = ["trainer.epochs=1", "trainer.batch_size=16", "dataset.image_size=32"]
CLI_PRESET = "experiment=finetune"


def tiny_settings(dataset: str, tmp_path) -> list[str]:
    """Overrides that cut a run of the preset down to seconds, on data that is here."""
    if dataset == "synthetic":
        return list(TINY)
    if dataset == "flowers102":
        write_tree(tmp_path / "flowers", per_split=6, size=40)
        return [f"dataset.root={tmp_path / 'flowers'}", "dataset.verify_checksums=false", *SCALE]
    pytest.fail(f"no tiny settings for dataset {dataset!r}: add them to tiny_settings")


def run_folders(run_dir, sweep_dir) -> list:
    """The folders the launch trained in: the run's, or a multirun's jobs."""
    if (run_dir / RESULT_FILE).is_file():
        return [run_dir]
    return sorted(p for p in sweep_dir.glob("*") if (p / RESULT_FILE).is_file())


@pytest.mark.parametrize("preset", preset_files("experiment"), ids=preset_override)
def test_every_experiment_runs_tiny_through_the_cli(
    preset, tmp_path, cache_dir, monkeypatch, capsys
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # read by the run too
    override = preset_override(preset)
    cfg, hydra = compose_with_hydra(override)
    stand_in = stand_in_torchvision_weights(cfg.model, tmp_path / "torch")
    tiny = tiny_settings(hydra.runtime.choices.dataset, tmp_path)
    warmup = cfg.scheduler.get("warmup_epochs", 0)  # a warm-up needs epochs after it
    tiny += [f"trainer.epochs={warmup + 1}"] if warmup else []
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    argv = [override, *tiny, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={sweep_dir}"]
    if override == CLI_PRESET:
        proc = run_cli(*argv, cache=cache_dir)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert run_app_in_process(argv, monkeypatch) == 0, capsys.readouterr().err[-3000:]
    folders = run_folders(run_dir, sweep_dir)
    assert folders, f"no {RESULT_FILE} under {run_dir} or {sweep_dir}"
    expected = OmegaConf.to_container(make_cfg(override, *tiny))
    for folder in folders:
        assert result(folder)["status"] == "completed", result(folder)
        # the preset's settings reached the run, changed only by the tiny ones
        ran = yaml.safe_load((folder / HYDRA_DIR / CONFIG_FILE).read_text())
        if folder == run_dir:
            assert ran == expected
        if stand_in is not None:
            assert f"from {stand_in}" in (folder / "flowers_sweep.log").read_text()


def test_the_cli_preset_is_one_of_them():
    assert CLI_PRESET in {preset_override(p) for p in preset_files("experiment")}
