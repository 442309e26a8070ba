"""The outcome table: what each ending of a run records, exits with and returns."""

from __future__ import annotations

import re
import signal

import pytest

import flowers_sweep.job.outcome as outcome
from flowers_sweep.errors import (
    CheckpointError,
    ConfigError,
    DivergedError,
    RunFolderBusyError,
    RunFolderMismatchError,
    Terminated,
    TrialPrunedError,
)
from flowers_sweep.job.outcome import RULES, command, outcome_of


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TrialPrunedError("x"), "pruned"),
        (RunFolderBusyError("x"), "busy"),
        (RunFolderMismatchError("x"), "refused"),
        (KeyboardInterrupt(), "interrupted"),
        (Terminated("x"), "terminated"),
        (DivergedError("x"), "diverged"),
        (ConfigError("x"), "failed"),
        (CheckpointError("x"), "failed"),
        (MemoryError(), "failed"),
    ],
)
def test_each_exception_has_its_outcome(exc, expected):
    assert outcome_of(exc) == expected


def test_the_documented_table_is_the_table():
    """The module's docstring shows the rules to a reader; it must say what RULES do."""
    lines = outcome.__doc__.split("outcome      recorded")[1].split("\n\n")[0].splitlines()[1:]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines]
    shown = {row[0]: row[1:4] for row in rows}
    assert set(shown) == set(RULES)
    for name, rule in RULES.items():
        recorded, alone, in_sweep = shown[name]
        assert recorded == (rule.recorded or recorded), name
        assert rule.recorded is not None or recorded.startswith("("), name
        assert alone.split()[0] == str(rule.alone), name
        starts = {"value": "the ", "none": "None", "nan": "NaN", "exit": f"exit {rule.alone}",
                  "pruned": "Pruned"}  # fmt: skip
        assert in_sweep.startswith(starts[rule.in_sweep]), name


def test_signals_exit_as_a_shell_reports_them():
    assert RULES["interrupted"].alone == 128 + signal.SIGINT == 130
    assert RULES["terminated"].alone == 128 + signal.SIGTERM == 143
    assert RULES["terminated"].recorded == "interrupted"  # a requeued job resumes it


def test_a_command_turns_user_errors_into_one_line_and_exit_2(capsys):
    @command("prog", KeyError)
    def main(argv=None) -> int:
        if argv == "config":
            raise ConfigError("trainer.epochs=0 is invalid")
        if argv == "key":
            raise KeyError("k")
        if argv == "bug":
            raise ZeroDivisionError("a bug")
        return 0

    assert main() == 0
    assert main("config") == 2
    assert capsys.readouterr().err == "prog: error: trainer.epochs=0 is invalid\n"
    assert main("key") == 2
    assert capsys.readouterr().err == "prog: error: 'k'\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        main("bug")
