"""Every command's --help says what it does, each of its arguments and an example.

`python -m flowers_sweep --help` is Hydra's, filled from conf/hydra/help/flowers_sweep.yaml:
it must name the other commands and list the config groups with their options. The
other commands are argparse: their parsers are read in-process (every argument has a
help text, the parser a description and an example), and each `--help` is run once as a
user runs it. Also here: the run's log line counts threads in words that agree, and
evaluate's confusion matrix says which run it is.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import runpy
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from flowers_sweep import evaluate

from .helpers.cli import HANG_GUARD_S, run_app, run_cli
from .helpers.runfolders import write_run

COMMANDS = [
    "flowers_sweep.aggregate.cli",
    "flowers_sweep.evaluate",
    "flowers_sweep.predict",
    "flowers_sweep.summary",
    "flowers_sweep.data.preview",
    "flowers_sweep.status",
    "flowers_sweep.plan",
]
# how a user starts each: the package's __main__ (aggregate) or the module itself
RUN_AS = {"flowers_sweep.aggregate.cli": "flowers_sweep.aggregate"}
OTHER_COMMANDS = ("aggregate", "evaluate", "predict", "summary", "data.preview", "status", "plan")


def parser_of(module: str) -> argparse.ArgumentParser:
    return importlib.import_module(module).arg_parser()


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's own arguments: options and positionals, not argparse's -h."""
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.e2e
def test_the_main_help_says_what_the_tool_does_its_commands_and_groups():
    proc = run_cli("--help", cache=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "activation-function study" in text
    for command in OTHER_COMMANDS:
        assert f"python -m flowers_sweep.{command}" in text, command
    assert "python -m flowers_sweep -m model.activation=relu,sigmoid,leaky_relu" in text
    lines = text.splitlines()
    groups = {line.split(":")[0]: line for line in lines if ": " in line and "=" not in line}
    for group, option in [("model", "resnet18"), ("case", "relu"), ("dataset", "flowers102")]:
        assert option in groups.get(group, ""), (group, lines)
    assert "--cfg job" in text and "--hydra-help" in text
    assert "README.md" in text and "docs/configuration.md" in text
    assert len(lines) <= 60  # a terminal's worth: the composed config is --cfg job's


@pytest.mark.parametrize("module", COMMANDS)
def test_every_argument_of_every_command_is_explained(module):
    parser = parser_of(module)
    assert parser.description and len(parser.description) > 60, module
    assert parser.epilog and f"python -m {RUN_AS.get(module, module)} " in parser.epilog
    for action in arguments(parser):
        name = "/".join(action.option_strings) or action.dest
        assert action.help and len(action.help) > 15, f"{module}: {name} has no help text"
    text = parser.format_help()
    for action in arguments(parser):
        assert (action.option_strings or [action.metavar])[0] in text, action
        assert action.help.split()[0] in text


def check_help(code: int | str | None, out: str) -> None:
    assert code == 0, out[-3000:]
    assert out.startswith("usage: python -m "), out[:200]
    assert "example" in out and "docs/" in out


@pytest.mark.parametrize("module", COMMANDS)
def test_every_commands_help_runs_as_a_user_runs_it(module, monkeypatch, capsys):
    """`python -m MODULE --help` in this process: runpy runs the module (a package's
    __main__) as `python -m` does, its `if __name__ == "__main__"` block included."""
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with warnings.catch_warnings():  # runpy's: the module is imported already, by the test
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SystemExit) as ended:
            runpy.run_module(RUN_AS.get(module, module), run_name="__main__", alter_sys=True)
    check_help(ended.value.code, capsys.readouterr().out)


@pytest.mark.e2e
def test_a_commands_help_runs_in_a_fresh_interpreter():
    """Once as a user runs it, for the package's __main__ (the others are module files)."""
    proc = run_cli("--help", cache=None, module="flowers_sweep.aggregate")
    check_help(proc.returncode, proc.stdout)


def test_summary_and_preview_pass_what_is_not_theirs_to_hydra(tmp_path):
    from flowers_sweep.data import preview
    from flowers_sweep.summary import arg_parser

    args, rest = arg_parser().parse_known_args(["model=resnet50", "-cd", str(tmp_path), "+x=1"])
    assert (args.config_dir, rest) == (str(tmp_path), ["model=resnet50", "+x=1"])
    args, rest = preview.parse(["augment=none", "--views", "2", "-cd", str(tmp_path)])
    assert args.views == 2
    assert rest == ["--config-dir", str(tmp_path), "augment=none"]


@pytest.mark.parametrize(("threads", "words"), [(1, "1 thread"), (2, "2 threads")])
def test_the_run_log_counts_threads_in_agreeing_words(threads, words, tmp_path, monkeypatch):
    train = importlib.import_module("flowers_sweep.trainer.training")
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    cfg = OmegaConf.create({"model": {"activation": "relu"}, "trainer": {"compile": False}})
    state = SimpleNamespace(
        cfg=cfg,
        placement=SimpleNamespace(device="cpu", dtype=None, layout=torch.contiguous_format),
        run_dir=tmp_path,
        data=SimpleNamespace(counts=lambda: {"train": 4}),
        params=10,
        resumed=False,
    )
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    train.log.addHandler(handler)
    level = train.log.level
    train.log.setLevel(logging.INFO)
    try:
        train.begin(state, "resnet18")
    finally:
        train.log.removeHandler(handler)
        train.log.setLevel(level)
    line = next(r.getMessage() for r in records if "parameters" in r.getMessage())
    assert line.endswith(f", {words}"), line


def test_the_confusion_matrix_title_names_the_run_split_and_weights(tmp_path):
    run_dir = write_run(
        tmp_path / "multirun" / "2026-11-28_10-00-00" / "3", case="sigmoid", seed=2,
        activation="sigmoid",
    )  # fmt: skip
    title = evaluate.figure_title(run_dir, "val", "best_val", 0.8123, 300)
    folder, label, scores = title.splitlines()
    assert folder == ".../multirun/2026-11-28_10-00-00/3"
    assert label == "case=sigmoid model=resnet18 activation=sigmoid seed=2"
    assert scores == "val split, best_val weights: top-1 81.2% (300 images)"


def test_a_title_says_what_it_can_of_a_run_without_records(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    title = evaluate.figure_title(Path("."), "test", "last", 0.5, 10)
    assert title.splitlines() == [
        f".../{'/'.join(tmp_path.resolve().parts[-2:])}/run",
        "test split, last weights: top-1 50.0% (10 images)",
    ]


def test_the_flowers_sweep_command_completes_presets_in_a_shell(tmp_path, monkeypatch, capsys):
    """The console script is the CLI: its shell-completion script (run as a user's shell
    runs it) completes `flowers-sweep`; Hydra's query (in this process: app.main, as the
    script runs it) lists a group's presets."""
    command = str(Path(sys.executable).with_name("flowers-sweep"))
    script = subprocess.run([command, "--shell-completion", "install=bash"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=HANG_GUARD_S)  # fmt: skip
    assert script.returncode == 0, script.stderr[-2000:]
    assert "complete -o nospace -o default -F hydra_bash_completion flowers-sweep" in script.stdout
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMP_LINE", "flowers-sweep model=")
    assert run_app(["--shell-completion", "query=bash"], monkeypatch) == 0
    out, err = capsys.readouterr()
    assert {"model=baseline_cnn", "model=resnet18", "model=resnet50"} <= set(out.split()), err
    assert list(tmp_path.iterdir()) == []  # nothing run, no folder made
