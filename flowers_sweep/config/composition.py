"""A run's config composed outside a run: for the commands that inspect one
(`summary`, `data.preview`) and `flowers_sweep.compose`, without starting it, so no
output folder appears.

A user's config folder (`-cd DIR`) is searched first, then the package's, as for a run
(command_line.py): a file in DIR named like a shipped one is the one read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf, open_dict

from flowers_sweep.config import CONFIG_MODULE
from flowers_sweep.config.overrides import edited_overrides
from flowers_sweep.errors import ConfigError
from flowers_sweep.record.settings import flatten

CONFIG_DIR_FLAGS = ("-cd", "--config-dir")


def config_dir_overrides(args: Sequence[str]) -> list[str]:
    """Hydra's `--config-dir DIR` / `-cd DIR` checked and made absolute, as the one
    `--config-dir=DIR` that compose_config takes (the last one given counts); the other
    arguments are kept as they are.

    Raises ConfigError when DIR is not a folder.
    """
    rest, folder = split_config_dir(args)
    if folder is None:
        return rest
    return [f"--config-dir={user_config_dir(folder)}", *rest]


def split_flag(args: Sequence[str], names: Sequence[str]) -> tuple[list[str], str | None]:
    """The arguments without any `FLAG VALUE` or `FLAG=VALUE` for a flag in `names`, and
    the last one's value (None: none given; "" for a flag without its value)."""
    rest, found, todo = [], None, list(args)
    while todo:
        arg = todo.pop(0)
        flag, eq, value = arg.partition("=")
        if flag in names:
            found = value if eq else (todo.pop(0) if todo else "")
        else:
            rest.append(arg)
    return rest, found


def split_config_dir(args: Sequence[str]) -> tuple[list[str], str | None]:
    """The arguments without any `-cd DIR`, `--config-dir DIR` or `--config-dir=DIR`,
    and the last one's folder (None: none given)."""
    return split_flag(args, CONFIG_DIR_FLAGS)


# Groups every run composes: a primary config without them cannot make a run.
PRIMARY_GROUPS = ("model", "dataset", "optimizer", "scheduler", "trainer")


def user_config_dir(folder: str | Path, config_name: str = "config") -> Path:
    """A user's config folder, absolute.

    Raises ConfigError when it is not a folder, or when its `<config_name>.yaml`, which
    replaces the shipped primary config as a whole (the user's folder comes first), has
    no defaults list and lacks the groups a run needs: a file of a few keys meant as an
    edit of the shipped one, which would end in Hydra's "not in struct" traceback.
    """
    path = Path(folder).expanduser().resolve()
    if not str(folder) or not path.is_dir():
        raise ConfigError(f"--config-dir={str(folder)!r} is invalid: no such folder")
    primary = path / f"{config_name}.yaml"
    try:
        tree = yaml.safe_load(primary.read_text(encoding="utf-8")) if primary.is_file() else None
    except (OSError, yaml.YAMLError):
        tree = None  # Hydra reads it and says what is wrong
    if isinstance(tree, dict) and "defaults" not in tree:
        missing = [g for g in PRIMARY_GROUPS if g not in tree]
        if missing:
            raise ConfigError(
                f"{primary} replaces the shipped {config_name}.yaml but has no defaults "
                f"list and no {', '.join(missing)}: start from a copy of the shipped "
                f"one, or name yours otherwise with `defaults: [config, _self_]` and "
                f"-cn NAME (docs/extending.md)"
            )
    return path


@contextmanager
def initialized(config_dir: Path | None = None) -> Iterator[None]:
    """Hydra set up to compose as a run does: its own configs, then `config_dir` (a
    user's folder, absolute) when given, then the package's."""
    if config_dir is None:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            yield
        return
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    try:
        version.setbase("1.3")
        # What the command line's search path is (command_line.user_config_first):
        # hydra, main = the user's folder, command-line = the package's, schema.
        search_path = create_config_search_path(search_path_dir=str(config_dir))
        search_path.prepend(
            "command-line", f"pkg://{CONFIG_MODULE}", anchor=SearchPathQuery(provider="schema")
        )
        Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)
        yield
    finally:
        restore_gh_from_backup(backup)


def compose_whole(args: Sequence[str]) -> DictConfig:
    """The config a run composes, with its hydra node; `args` are overrides and at most
    one `-cd DIR` (in any of its spellings). Raises ConfigError for a missing DIR."""
    overrides, folder = split_config_dir(args)
    config_dir = None if folder is None else user_config_dir(folder)
    with initialized(config_dir):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def compose_config(overrides: Sequence[str]) -> tuple[DictConfig, dict[str, Any]]:
    """The same composition as a run, without @hydra.main, so no output folder appears;
    with Hydra's group choices (the model preset's name labels the summary)."""
    cfg = compose_whole(overrides)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def overrides_composing(cfg: DictConfig, args: list[str], whole: DictConfig) -> list[str]:
    """The overrides that compose `cfg`: those of `args` (compose's arguments, which
    composed `whole`) and cfg's edits since. Raises ConfigError, naming the key, for an
    edit that no override composes back (a config group's node replaced by a value, a
    key no override can name)."""
    task = edited_overrides(list(whole.hydra.overrides.task), whole, cfg)
    folder = split_config_dir(args)[1]
    wanted = OmegaConf.to_container(cfg, resolve=False)
    try:
        again = compose_whole([*(["--config-dir", folder] if folder else []), *task])
        with open_dict(again):
            del again["hydra"]
        got = OmegaConf.to_container(again, resolve=False)
    except Exception:  # Hydra's errors for an override it cannot read or apply
        got = None
    if got != wanted:
        if got is None:  # the first edit's override is what Hydra could not take
            edits = [o for o in task if o not in whole.hydra.overrides.task] or ["?"]
            edits.sort(key=lambda o: "=" not in o)  # a value set, before the drops it made
            key = edits[0].split("=", 1)[0].lstrip("+~")
        else:
            have, want = flatten(got, keep_empty=True), flatten(wanted, keep_empty=True)
            keys = {**want, **have}
            key = next(k for k in keys if want.get(k, _ABSENT) != have.get(k, _ABSENT))
        raise ConfigError(
            f"train(cfg, run_dir): cfg.{key} as edited cannot be recorded as a command-line "
            f"override that composes it back (the CLI could not resume the run); make that "
            f"change with compose([...]) overrides instead"
        )
    return task


_ABSENT = object()
