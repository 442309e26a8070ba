"""`python -m flowers_sweep`'s flags, before Hydra reads them (`__main__.py` calls
`hydra_args`):

- your `-cd DIR` comes first in the config search path: a file in DIR named like a
  shipped one (`model/resnet18.yaml`, `config.yaml`) is the one read, as in the
  composition of the other commands and of `flowers_sweep.compose` (composition.py).
  Hydra itself puts `--config-dir` after the application's own folder, where a
  same-named file could never be read; so DIR becomes Hydra's primary config path
  (`--config-path`) and the package's folder the additional one;
- the flag combinations Hydra refuses (`--info --resolve`, `-m --cfg job`) are one
  line and exit status 2, not a traceback.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from flowers_sweep.config import CONFIG_MODULE
from flowers_sweep.config.composition import split_config_dir, split_flag, user_config_dir
from flowers_sweep.errors import ConfigError, FlowersSweepError

CONFIG_PATH_FLAGS = ("-cp", "--config-path")


class UsageError(FlowersSweepError):
    """Flags that cannot go together, or a config folder that is not there."""


def hydra_args(args: Sequence[str]) -> list[str]:
    """The command line's arguments as Hydra should read them (see the module's
    docstring). Raises UsageError for flags Hydra refuses, or a missing -cd folder."""
    why = usage_error(args)
    if why:
        raise UsageError(why)
    return user_config_first(args)


def usage_error(args: Sequence[str]) -> str | None:
    """Hydra's own rules for its flags, as one line; None when they hold (or when
    Hydra's argument parser refuses the line: it says why itself)."""
    from hydra._internal.utils import get_args_parser

    quiet = io.StringIO()
    try:  # quietly: Hydra parses them again, and prints its own errors and --version
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            flags = get_args_parser().parse_args(list(args))
    except SystemExit:
        return None
    if flags.help:  # Hydra prints the help whatever else is there
        return None
    shows = flags.cfg is not None
    if flags.resolve and not shows:
        return (
            "--resolve goes with --cfg (job, hydra or all) or --help, not alone or with "
            "--info: e.g. --cfg job --resolve"
        )
    if flags.hydra_help:
        return None
    given = [
        name
        for name, on in (
            ("--run", flags.run),
            ("--multirun (-m)", flags.multirun),
            ("--cfg", shows),
            ("--info", flags.info is not None),
            ("--shell-completion", flags.shell_completion),
        )
        if on
    ]
    if len(given) > 1:
        return (
            f"{' and '.join(given)} cannot go together: --cfg and --info print the config "
            "without running it (of a sweep too: give its overrides without -m)"
        )
    return None


def user_config_first(args: Sequence[str]) -> list[str]:
    """`-cd DIR` / `--config-dir[=]DIR` as `--config-path=DIR` plus `--config-dir=` the
    package's config folder: the search path is then Hydra's own, DIR, the package's
    (`--info searchpath` lists DIR as `main`). Unchanged when there is no -cd, when
    `--config-path` is given too (the user chose the primary folder), or when the
    package's configs are not a folder on disk (a zipped install).

    Raises UsageError when DIR is not a folder.
    """
    rest, folder = split_config_dir(args)
    if folder is None or any(_is_flag(a, CONFIG_PATH_FLAGS) for a in rest):
        return list(args)
    try:
        mine = user_config_dir(folder, _config_name(rest))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    shipped = package_config_dir()
    if shipped is None:
        return list(args)
    return [f"--config-path={mine}", f"--config-dir={shipped}", *rest]


def package_config_dir() -> Path | None:
    """The shipped config folder on disk (conf/ of a clone, flowers_sweep/conf of a
    wheel), or None when it is not a plain folder."""
    try:
        path = Path(str(resources.files(CONFIG_MODULE)))
    except (ModuleNotFoundError, TypeError):
        return None
    return path if path.is_dir() else None


def _config_name(args: Sequence[str]) -> str:
    """The primary config's name the command line gives (-cn NAME), else `config`."""
    return split_flag(args, ("-cn", "--config-name"))[1] or "config"


def _is_flag(arg: str, names: Sequence[str]) -> bool:
    return arg.partition("=")[0] in names
