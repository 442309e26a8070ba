"""The main command's flags: printing the config (--cfg, --info, --help, --resolve) runs
nothing and makes no folder; the flag combinations Hydra refuses are one line; a user's
-cd folder comes before the package's (command_line.py, composition.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowers_sweep as fs
from flowers_sweep.config.command_line import (
    UsageError,
    hydra_args,
    package_config_dir,
    usage_error,
)
from flowers_sweep.config.composition import compose_config, config_dir_overrides
from flowers_sweep.job.launch import unique_dir

from .helpers.cli import CONF, run_app, run_cli

SHOWN = [
    ["--cfg", kind, *more] for kind in ("job", "hydra", "all") for more in ([], ["--resolve"])
]
PRINTING = [
    *SHOWN,
    ["--info"],
    ["--info", "config"],
    ["--help"],
    ["--help", "--resolve"],
    ["--hydra-help"],
    ["hparams_search=optuna", "--cfg", "all", "--resolve"],
    ["hparams_search=optuna", "--cfg", "hydra", "--resolve"],
]  # fmt: skip
REFUSED = [
    ["--info", "--resolve"],
    ["--resolve"],
    ["--cfg", "job", "--info"],
    ["-m", "--cfg", "job"],
    ["-m", "--info"],
]


@pytest.mark.parametrize("flags", PRINTING, ids=" ".join)
def test_printing_the_config_runs_nothing_and_makes_no_folder(
    flags, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert usage_error(flags) is None
    assert run_app(flags, monkeypatch) == 0
    out = capsys.readouterr().out
    assert out.strip() and "Traceback" not in out
    assert list(tmp_path.iterdir()) == [], "a folder was made by a command that only prints"
    if flags[-2:] == ["all", "--resolve"]:  # the name a launch would get, not made
        assert "dir: outputs/runs/" in out


def test_a_printed_default_folder_is_the_name_a_launch_would_get(tmp_path):
    """unique_dir resolved only to print says the next free name and makes nothing."""
    from unittest import mock

    base = str(tmp_path / "outputs" / "t")
    made = unique_dir(base)
    with mock.patch("flowers_sweep.job.launch.only_printing", return_value=True):
        assert unique_dir(base) == f"{base}-2"
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == [Path(made).name]


@pytest.mark.parametrize("flags", REFUSED, ids=" ".join)
def test_flags_hydra_refuses_are_one_line(flags):
    why = usage_error(flags)
    assert why and "\n" not in why
    with pytest.raises(UsageError):
        hydra_args(flags)


@pytest.mark.e2e
def test_the_resolved_hydra_config_prints_as_a_user_runs_it(tmp_path):
    proc = run_cli("--cfg", "hydra", "--resolve", cache=None, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "aggregate: true" in proc.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def my_conf(tmp_path) -> Path:
    """A user's folder with its own config.yaml (seed 7, 3 epochs) and a preset named
    like a shipped one (model/resnet18.yaml with sigmoid)."""
    conf = tmp_path / "myconf"
    (conf / "model").mkdir(parents=True)
    text = (CONF / "config.yaml").read_text()
    assert "\nseed: 0\n" in text
    (conf / "config.yaml").write_text(text.replace("\nseed: 0\n", "\nseed: 7\n"))
    preset = (CONF / "model" / "resnet18.yaml").read_text()
    assert "activation: relu" in preset
    (conf / "model" / "resnet18.yaml").write_text(
        preset.replace("activation: relu", "activation: sigmoid")
    )
    return conf


def test_a_users_files_come_before_the_shipped_ones_of_the_same_name(my_conf):
    cfg = fs.compose(["trainer.epochs=3"], config_dir=my_conf)
    assert (cfg.seed, cfg.model.activation, cfg.trainer.epochs) == (7, "sigmoid", 3)
    cfg, choices = compose_config(config_dir_overrides(["-cd", str(my_conf)]))  # summary, preview
    assert (cfg.seed, cfg.model.activation, choices["model"]) == (7, "sigmoid", "resnet18")
    cfg = fs.compose(["model=baseline_cnn"], config_dir=my_conf)  # the rest: the package's
    assert cfg.model._target_.endswith("BaselineCNN") and cfg.seed == 7
    assert fs.compose([]).seed == 0  # without -cd: the shipped files


def test_the_command_line_puts_the_users_folder_first(my_conf):
    args = hydra_args(["-m", "--config-dir", str(my_conf), "seed=1"])
    assert args == [
        f"--config-path={my_conf}",
        f"--config-dir={package_config_dir()}",
        "-m",
        "seed=1",
    ]
    assert hydra_args(["-cp", "x", "-cd", str(my_conf)]) == ["-cp", "x", "-cd", str(my_conf)]
    with pytest.raises(UsageError, match="no such folder"):
        hydra_args(["-cd", str(my_conf / "missing")])


@pytest.mark.e2e
def test_cfg_job_shows_the_users_files_as_a_user_runs_it(my_conf):
    proc = run_cli(
        "-cd", str(my_conf), "-cn", "config", "--cfg", "job", cache=None, cwd=my_conf.parent
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\nseed: 7\n" in proc.stdout and "activation: sigmoid" in proc.stdout


def test_a_users_partial_config_yaml_is_one_line_not_hydras_traceback(tmp_path):
    """A config.yaml of a few keys, meant as an edit of the shipped one, replaces it and
    would end in Hydra's "not in struct" traceback: the error says what to do instead."""
    (tmp_path / "config.yaml").write_text("seed: 5\n")
    with pytest.raises(UsageError, match=r"replaces the shipped config.yaml .*-cn NAME"):
        hydra_args(["-cd", str(tmp_path)])
    # under another name it is no primary config: -cn picks the user's own
    (tmp_path / "mine.yaml").write_text("defaults: [config, _self_]\nseed: 5\n")
    assert "--config-name=mine" in hydra_args(["-cd", str(tmp_path), "--config-name=mine"])
    (tmp_path / "config.yaml").write_text((CONF / "config.yaml").read_text())  # a full copy
    assert hydra_args(["-cd", str(tmp_path)])[0] == f"--config-path={tmp_path}"
