"""Hydra's sweep grammar as Optuna's search space, and a trial's values as overrides.

A search's settings are Hydra overrides, in the preset's `hydra.sweeper.params` and on
the command line (which wins). Those that sweep become Optuna distributions; the rest
are passed to every trial unchanged:

    grammar                                   distribution
    interval(1e-4, 1e-2)                      FloatDistribution(1e-4, 1e-2)
    tag(log, interval(1e-4, 1e-2))            FloatDistribution(1e-4, 1e-2, log=True)
    int(interval(8, 64)), tag(log, ...)       IntDistribution(8, 64[, log=True])
    range(8, 65, 8)                           IntDistribution(8, 64, step=8)
    range(0.1, 0.5, 0.1)                      FloatDistribution(0.1, 0.4, step=0.1)
    choice(16, 32, 64), 16,32,64              CategoricalDistribution((16, 32, 64))

`range` keeps Hydra's meaning (the stop is left out, as in Python's `range`). A choice
that is not a number or bool (a list: `choice([0.4,0.7], [0.6])`) is stored as its
override text, "[0.4,0.7]": Optuna's storage keeps only plain types, and Hydra reads the
text back as the list (the old hydra-optuna-sweeper stored lists the same way). Grammar: https://hydra.cc/docs/advanced/override_grammar/extended/
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from flowers_sweep.config.overrides import override_text
from flowers_sweep.errors import ConfigError

NUMERIC = (bool, int, float)  # kept as themselves: plots and the dashboard show numbers


def distribution(key: str, sweep: Any, text: str = "") -> BaseDistribution:
    """The Optuna distribution of one sweep override's value (`text`: as the user wrote
    it, for messages).

    Raises:
        ConfigError: a sweep Optuna cannot sample (an empty range, low > high, a log
            scale from 0, `glob`, ...).
    """
    try:
        return _distribution(key, sweep, text)
    except ValueError as exc:  # Optuna's own checks of the bounds
        if isinstance(exc, ConfigError):
            raise
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{text or key}: {first}") from None


def _distribution(key: str, sweep: Any, text: str) -> BaseDistribution:
    log = "log" in getattr(sweep, "tags", ())
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if isinstance(sweep, RangeSweep):
        values = list(sweep.range())
        if not values:
            raise ConfigError(f"{text or key}: holds no value")
        step = sweep.step
        if all(isinstance(v, int) for v in (sweep.start, step)):
            return IntDistribution(values[0], values[-1], step=step, log=log and step == 1)
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
    if isinstance(sweep, ChoiceSweep):
        # every string is stored as override text, so a trial's value goes back verbatim
        choices = [v if isinstance(v, NUMERIC) else override_text(v) for v in sweep.list]
        return CategoricalDistribution(choices)
    raise ConfigError(
        f"{text or key}: {type(sweep).__name__} cannot be searched; use interval(...), "
        "tag(log, interval(...)), int(interval(...)), range(...) or choice(...)"
    )


def parse(overrides: Iterable[str], where: str) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except Exception as exc:  # Hydra's OverrideParseException, with its own caret lines
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{where}: {first}") from None


def search_space(
    params: Mapping[str, Any] | None, arguments: Iterable[str]
) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """The distributions to sample and the fixed overrides every trial gets.

    `params` is `hydra.sweeper.params` (key -> grammar text), `arguments` the command's
    overrides; a later one wins over an earlier one of the same key, so the command line
    can fix a searched setting (`trainer.batch_size=16`) or search a fixed one.
    """
    preset = [f"{k}={v}" for k, v in (params or {}).items()]
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for where, overrides in (("hydra.sweeper.params", preset), ("the command", arguments)):
        for o in parse(overrides, where):
            key = o.get_key_element()
            space.pop(key, None)
            fixed.pop(key, None)
            if o.is_sweep_override():
                space[key] = distribution(key, o.value(), o.input_line)
            else:
                fixed[key] = o.get_value_element_as_str()
    return space, fixed


def trial_overrides(params: Mapping[str, Any], fixed: Mapping[str, str]) -> list[str]:
    """A trial's overrides: the fixed ones, then its sampled values."""
    sampled = [f"{k}={v if isinstance(v, str) else override_text(v)}" for k, v in params.items()]
    return [*(f"{k}={v}" for k, v in fixed.items()), *sampled]
