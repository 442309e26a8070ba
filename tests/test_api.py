"""The Python API (flowers_sweep.compose, train, sweep, load): what a notebook calls.

The notebook that uses all four end to end is executed by tests/test_notebook.py; these
tests take each piece apart, the run's folder checked against the CLI's.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import matplotlib
import pytest
import torch
from omegaconf import OmegaConf, open_dict

import flowers_sweep as fs
from flowers_sweep import evaluate
from flowers_sweep.aggregate.cli import main as aggregate_main
from flowers_sweep.api import RunFailedError, SweepFailedError
from flowers_sweep.errors import ConfigError
from flowers_sweep.record.runrecord import MULTIRUN_FILE, read_result

from .helpers.cli import TINY, metrics, run_app
from .helpers.runfolders import write_run

CNN = ["model=baseline_cnn", *TINY]
NOT_FOUND = "In 'config': Could not find 'model/nope'\n"  # Hydra's line, as the command says it
CONF = Path(__file__).resolve().parents[1] / "conf"  # the shipped folder, as a user's


def test_the_api_is_at_the_top_level():
    names = dir(fs)
    for name in ("compose", "train", "sweep", "load", "Report", "RunFailedError", "ConfigError"):
        assert name in names
        assert callable(getattr(fs, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fs.nope  # noqa: B018


def test_compose_gives_the_validated_run_config_without_hydras_node():
    cfg = fs.compose(["model=baseline_cnn", "trainer.epochs=3"])
    assert cfg.trainer.epochs == 3
    assert cfg.model._target_.endswith("BaselineCNN")
    assert "hydra" not in cfg
    with pytest.raises(ConfigError, match=r"trainer\.epochs"):
        fs.compose(["trainer.epochs=0"])
    with pytest.raises(ConfigError, match=r"a list of overrides such as \['model=baseline_cnn'\]"):
        fs.compose("model=baseline_cnn")


def test_compose_reads_a_users_config_folder(tmp_path):
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "my_sgd.yaml").write_text(
        "_target_: torch.optim.SGD\n_partial_: true\nlr: 0.05\nmomentum: 0.8\n"
    )
    cfg = fs.compose(["optimizer=my_sgd"], config_dir=tmp_path)
    assert cfg.optimizer.momentum == 0.8
    with pytest.raises(ConfigError, match="no such folder"):
        fs.compose([], config_dir=tmp_path / "missing")


def test_train_refuses_a_config_not_from_compose(tmp_path):
    cfg = OmegaConf.create(OmegaConf.to_container(fs.compose(CNN)))
    with pytest.raises(
        ConfigError, match=r"not a config flowers_sweep\.compose\(\.\.\.\) returned \(a copy"
    ):
        fs.train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    write_run(tmp_path / "sweep" / "0")  # a sweep's folder is not a run's
    with pytest.raises(ConfigError, match=r"holds other runs .*sweep/0"):
        fs.train(fs.compose(CNN), tmp_path / "sweep")


def test_copies_of_composes_config_are_from_compose():
    """compose()'s mark rides on OmegaConf's flags, which every DictConfig copy keeps and
    plain data drops: this fails first if an OmegaConf release stops carrying them."""
    from flowers_sweep.api import _composed_from

    cfg = fs.compose(CNN, config_dir=CONF)
    args = ["--config-dir", str(CONF), *CNN]
    for copied in (cfg, OmegaConf.create(cfg), copy.deepcopy(cfg), cfg.copy(),
                   OmegaConf.merge(cfg, {"seed": 3})):  # fmt: skip
        assert _composed_from(copied) == args
    assert _composed_from(OmegaConf.create(OmegaConf.to_container(cfg))) is None
    assert _composed_from(cfg.model) is None  # a node of it is not a run's config
    assert _composed_from({"seed": 0}) is None


def test_edits_become_the_overrides_that_compose_them():
    """train() records a config edited since compose as overrides; composing those
    gives the edited config itself (a new key, a changed list, a dropped node)."""
    from flowers_sweep.config.composition import compose_whole
    from flowers_sweep.config.overrides import edited_overrides

    whole = compose_whole(CNN)
    cfg = fs.compose(CNN)
    cfg.trainer.epochs = 2
    cfg.scheduler.milestones = [1, 2]
    del cfg.logger
    with open_dict(cfg):
        cfg.notes = {}
    overrides = edited_overrides(CNN, whole, cfg)
    assert "trainer.epochs=2" in overrides and "~logger" in overrides
    assert "+notes={}" in overrides
    assert OmegaConf.to_container(fs.compose(overrides)) == OmegaConf.to_container(cfg)
    assert edited_overrides(CNN, whole, fs.compose(CNN)) == CNN  # no edit: as composed


@pytest.mark.e2e
def test_train_writes_the_clis_run_folder(tmp_path, monkeypatch, capsys, cache_dir):
    """In this process, leaving it as found (the autouse fixture checks threads and
    signals); the folder is the CLI's: its aggregator, evaluate and resume accept it
    (their mains, as their commands call them, in this process: the real commands'
    tests are test_legacy's resume, test_golden's aggregate, test_inference's evaluate)."""
    monkeypatch.chdir(tmp_path)
    backend, threads = matplotlib.get_backend(), torch.get_num_threads()
    cfg = fs.compose([*CNN, "trainer.threads=1"])
    result = fs.train(cfg, "run")
    run_dir = tmp_path / "run"
    assert result["status"] == "completed"
    assert result == read_result(run_dir)
    assert 0 <= result["test_acc"] <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no outputs/ folder
    assert torch.get_num_threads() == threads
    assert matplotlib.get_backend() == backend
    first = metrics(run_dir)

    assert fs.train(cfg, run_dir) == result  # completed: not trained again
    assert metrics(run_dir) == first
    resume = [*CNN, "trainer.threads=1", f"hydra.run.dir={run_dir}"]
    assert run_app(resume, monkeypatch) == 0, capsys.readouterr().err[-2000:]
    said = capsys.readouterr()
    assert "already holds a completed run" in said.out + said.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no empty outputs/multirun
    assert aggregate_main([str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert "baseline_cnn" in (tmp_path / "report" / "results.md").read_text()
    assert evaluate.main([str(run_dir)]) == 0, capsys.readouterr().err[-2000:]

    cfg = OmegaConf.create(cfg)  # a copy of compose's config is one too (issue 37)
    cfg.trainer.epochs = 2  # an edited config is another run: the folder is refused
    with pytest.raises(RunFailedError, match=r"other settings: trainer\.epochs=1 \(now 2\)"):
        fs.train(cfg, run_dir)
    assert metrics(run_dir) == first
    # in a folder of its own, the edit is recorded as an override: the CLI resumes it
    edited = tmp_path / "edited"
    assert fs.train(cfg, edited)["epochs"] == 2
    overrides = OmegaConf.load(edited / ".hydra" / "overrides.yaml")
    assert "trainer.epochs=2" in overrides and "trainer.epochs=1" not in overrides
    capsys.readouterr()
    assert run_app([*overrides, f"hydra.run.dir={edited}"], monkeypatch) == 0
    said = capsys.readouterr()
    assert "already holds a completed run" in said.out + said.err, said.err[-2000:]


@pytest.mark.e2e
def test_a_failed_run_raises_with_its_reason(tmp_path, cache_dir):
    cfg = fs.compose([*CNN, "optimizer.lr=1e12", "trainer.epochs=3"])
    with pytest.raises(
        RunFailedError, match=r"run diverged: training loss became nan in epoch 1/3"
    ):
        fs.train(cfg, tmp_path / "run")
    assert read_result(tmp_path / "run")["status"] == "diverged"


@pytest.mark.e2e
def test_sweep_refusals_are_one_line(tmp_path, monkeypatch, cache_dir):
    """A sweep that cannot start raises with the command's reason (the real command's,
    below) and leaves no folder (the command's output stood in for: the folder is
    sweep()'s own); one whose runs fail returns the report that lists them."""
    from flowers_sweep import api

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="sweep_dir="):
        fs.sweep(["hydra.sweep.dir=x"])
    with monkeypatch.context() as patch:
        patch.setattr(api, "_run_streamed", lambda command, echo: (1, NOT_FOUND))
        with pytest.raises(SweepFailedError, match=r"did not start .*Could not find 'model/no"):
            fs.sweep(["model=nope"], echo=False)
    assert list(tmp_path.iterdir()) == []  # the default folder it made is gone
    report = fs.sweep([*CNN, "trainer.epochs=0"], sweep_dir="s", echo=False)
    assert report.runs["status"].tolist() == ["failed"]
    assert report.cases.empty
    os.utime(tmp_path / "s" / MULTIRUN_FILE)  # as if that sweep had ended just now
    with pytest.raises(  # not the old report; the real command's reason
        SweepFailedError, match=r"did not start \(exit status 1\): .*Could not find 'model/nope'"
    ):
        fs.sweep(["model=nope"], sweep_dir="s", echo=False)


def test_load_opens_run_and_sweep_folders(tmp_path):
    from flowers_sweep.aggregate import AggregateError

    with pytest.raises(AggregateError, match="no run folders"):
        fs.load(tmp_path)


@pytest.mark.parametrize(
    ("attempted", "raised", "says"),
    [
        (("interrupted", KeyboardInterrupt(), float("nan")), KeyboardInterrupt,
         "interrupted; train again to resume"),
        (("completed", None, 0.5), RunFailedError, "the run wrote no result"),
    ],
)  # fmt: skip
def test_train_says_what_became_of_the_run(tmp_path, monkeypatch, attempted, raised, says):
    """The run's outcome, as the CLI's task reports it, becomes train()'s exception."""
    from flowers_sweep import app

    monkeypatch.setattr(app, "attempt", lambda cfg, job: attempted)
    with pytest.raises(raised, match=says):
        fs.train(fs.compose(CNN), tmp_path / "run")


def test_a_commands_reason_is_its_one_line_or_its_tracebacks_exception():
    from flowers_sweep.api import _reason

    log = "[2026-01-01 00:00:00][flowers_sweep][INFO] - run folder: x"
    assert (
        _reason(f"{log}\nflowers_sweep: error: bad value\n") == "flowers_sweep: error: bad value"
    )
    assert _reason(f"{log}\nIn 'config': Could not find 'model/nope'\nmore") == (
        "In 'config': Could not find 'model/nope'"
    )
    # under a debugger (or coverage's tracer) Hydra prints its whole traceback
    traceback = (
        "Traceback (most recent call last):\n  File x\n    code\n"
        "MissingConfigException: In 'config': nope\nAvailable options:\n\tprovider=schema\n"
    )
    assert _reason(traceback) == "MissingConfigException: In 'config': nope"
    assert _reason("") == "no output"


@pytest.mark.parametrize(
    "text",
    ["relu", "~/data", "josé", "2024", "true", "null", "inf", "1e-5", "", "a b,c", "#x",
     "C:\\data\\x", "ends\\", "it's", "a\\'b", "${oc.env:HOME}/x"],
)  # fmt: skip
def test_a_string_is_written_as_an_override_that_reads_back_the_same_string(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from flowers_sweep.config.overrides import override_text

    written = override_text(text)
    assert OverridesParser.create().parse_override(f"k={written}").value() == text


def test_train_refuses_an_edit_no_override_composes_back_before_writing(tmp_path):
    """A config group's node replaced by a value (Hydra takes `+logger=null` as a group
    choice), or a key no config defines: one line naming the key, and no folder."""
    cfg = fs.compose(CNN)
    cfg.logger = None
    with pytest.raises(ConfigError, match=r"cfg\.logger as edited cannot be recorded"):
        fs.train(cfg, tmp_path / "run")
    cfg = fs.compose(CNN)
    with open_dict(cfg):
        cfg.trainer.epoch = 3  # a typo of epochs
    with pytest.raises(ConfigError, match=r"\+trainer\.epoch .* did you mean trainer\.epochs"):
        fs.train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
