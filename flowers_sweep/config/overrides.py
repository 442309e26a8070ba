"""The command line's overrides: a value written in their grammar (`override_text`),
and `+key=value` overrides checked for keys that no config defines.

A typo'd key added with `+` would be taken silently and change nothing; this refuses it
in one line with the closest key that exists, before any data is read.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flowers_sweep.errors import ConfigError
from flowers_sweep.record.settings import flatten

NEEDS_QUOTES = set(" ,[]{}()='\"\\:$")  # characters Hydra's grammar gives a meaning


def override_text(value: Any) -> str:
    """`value` written as Hydra's override grammar reads it back (lists, dicts, quoting)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_text(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if text and not NEEDS_QUOTES & set(text) and _reads_back(text, text):
        return text  # plain: a name, a path of ordinary characters
    # Quoted: backslashes are literal there except before a quote or at the end
    quoted = "'" + re.sub(r"(\\+)(?='|$)", r"\1\1", text).replace("'", "\\'") + "'"
    if not _reads_back(quoted, text):
        raise ConfigError(f"{text!r} cannot be written as a command-line override")
    return quoted


@functools.cache
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _reads_back(written: str, text: str) -> bool:
    """Whether Hydra's grammar reads `key=written` as the string `text` (not a number,
    a bool, null, or an error: `2024`, `true`, `~/x` and `josé` unquoted are not)."""
    try:
        value = _parser().parse_override(f"key={written}").value()
    except Exception:
        return False
    return isinstance(value, str) and value == text


def edited_overrides(task: Sequence[str], whole: DictConfig, cfg: DictConfig) -> list[str]:
    """The overrides that compose `cfg` itself: `task` (those `whole` was composed with)
    plus, for each value of `cfg` that differs from the composition `whole`, `key=value`
    (`+key=value` for a key `whole` lacks, `~key` for one `cfg` dropped), the edited
    keys' earlier overrides left out. The `hydra` node of `whole` is not compared."""
    before = flatten(OmegaConf.to_container(whole, resolve=False), keep_empty=True)
    after = flatten(OmegaConf.to_container(cfg, resolve=False), keep_empty=True)
    before = {k: v for k, v in before.items() if k.split(".")[0] != "hydra"}
    edits = {k: v for k, v in after.items() if k not in before or before[k] != v}
    dropped = list(dict.fromkeys(_gone(cfg, k) for k in before if k not in after))
    kept = [o for o in task if o.split("=", 1)[0].lstrip("+~") not in {*edits, *dropped}]
    return (
        kept
        + [f"~{k}" for k in dropped]
        + [f"{'' if k in before else '+'}{k}={override_text(v)}" for k, v in edits.items()]
    )


def _gone(cfg: DictConfig, key: str) -> str:
    """The highest node on the way to the dotted `key` that `cfg` lacks (`~` drops it whole)."""
    parts = key.split(".")
    for depth in range(1, len(parts)):
        node = ".".join(parts[:depth])
        if OmegaConf.select(cfg, node, default=_ABSENT) is _ABSENT:
            return node
    return key


def validate_added_keys(
    cfg: DictConfig,
    overrides: Sequence[str],
    groups: Collection[str],
    base: DictConfig | None = None,
) -> None:
    """A `+key=value` (or `++key=value`) that adds a key no config defines is refused as
    a likely typo.

    Hydra answers `trainer.epoch=3` with "Key 'epoch' is not in struct" and suggests the
    `+` form, which then adds the key silently: the run would train with the default and
    record a setting that did nothing. `base` is the config composed without the added
    keys; a key it holds is an existing one (`+model.layers=[...]` works in Hydra).
    Without `base`, `+` keys are refused and `++` keys let through. Adding a config
    group (`+experiment=report`) is fine, and so is a key under a `_target_` node (its
    constructor takes it).

    Raises:
        ConfigError: naming the key and the closest key that exists.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([str(text) for text in overrides])
    for override in parsed:
        key = override.key_or_group
        added = override.is_add() or override.is_force_add()
        if not added or key in groups or key.startswith("hydra"):
            continue
        if base is None and override.is_force_add():
            continue
        if base is not None and OmegaConf.select(base, key, default=_ABSENT) is not _ABSENT:
            continue
        parent = OmegaConf.select(cfg, key.rpartition(".")[0]) if "." in key else None
        if isinstance(parent, DictConfig) and "_target_" in parent:
            continue
        leaves = list(flatten(OmegaConf.to_container(base or cfg)))
        known = [leaf for leaf in leaves if leaf != key]
        section = key.rpartition(".")[0]
        siblings = [leaf for leaf in known if leaf.rpartition(".")[0] == section]
        close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6) or (
            difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        )
        hint = (
            f"; did you mean {close[0]}? (set an existing key without +)"
            if close
            else ("; `--cfg job` lists the keys that exist")
        )
        raise ConfigError(
            f"+{key.lstrip('+')} adds a key that no config defines, so it would change "
            f"nothing{hint}"
        )


_ABSENT = object()


def refuse_preset_lists(overrides: Sequence[str]) -> None:
    """`logger=[tensorboard,mlflow]` is refused: Hydra merges a list of options of a
    group into one node, where each of our presets is one `_target_` node, so the last
    would silently win. Several loggers at once are `logger=many`.

    Raises:
        ConfigError: naming the override and the way to have several loggers.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([str(text) for text in overrides])
    for override in parsed:
        if override.key_or_group == "logger" and isinstance(override.value(), list):
            raise ConfigError(
                f"{override.input_line} is invalid: a list of logger presets would merge "
                "into one logger (the last); use logger=many (TensorBoard and MLflow), "
                "adding one with +logger@logger.loggers.wandb=wandb (docs/tracking.md)"
            )


def check_study(overrides: Sequence[str], choices: Mapping[str, Any]) -> None:
    """A `study` preset (conf/study/) is a whole sweep: its file's axes are the launch's
    sweeper params. Two launches' worth in one are refused before any job starts:

    - `study=report,activations`: Hydra would sweep the group, and each job would get a
      study's choice but no study's axes (identical default runs);
    - a study with a search (`hparams_search=optuna`): the search would sample the
      study's axes (`case`, `seed`) as hyperparameters.

    `overrides`: the launch's command-line overrides; `choices`: Hydra's group choices.

    Raises:
        ConfigError: naming the override or the two choices, and what to do instead.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([str(text) for text in overrides])
    for override in parsed:
        if override.key_or_group == "study" and override.is_sweep_override():
            raise ConfigError(
                f"{override.input_line} is invalid: a study is a whole sweep; launch one "
                "study at a time (study=report, then study=activations)"
            )
    study, search = choices.get("study"), choices.get("hparams_search")
    if study and search:
        raise ConfigError(
            f"study={study} with hparams_search={search}: a study is a grid of its own axes "
            "and a search samples its trials; use one of them (a search's axes are its "
            "hydra.sweeper.params)"
        )
