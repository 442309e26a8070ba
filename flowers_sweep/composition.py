"""A run's config composed outside a run: for the commands that inspect one
(`summary`, `data.preview`) without starting it, so no output folder appears."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

from flowers_sweep.config import CONFIG_MODULE
from flowers_sweep.errors import ConfigError


def config_dir_overrides(args: Sequence[str]) -> list[str]:
    """Hydra's `--config-dir DIR` / `-cd DIR` as the override that does the same in
    Hydra's compose API (`hydra.searchpath`), so a user's config folder works here as
    for a run; the other arguments are kept as they are.

    Raises ConfigError when DIR is not a folder.
    """
    out, rest = [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("-cd", "--config-dir") or arg.startswith("--config-dir="):
            folder = arg.split("=", 1)[1] if "=" in arg else (rest.pop(0) if rest else "")
            path = Path(folder).expanduser().resolve()
            if not folder or not path.is_dir():
                raise ConfigError(f"--config-dir={folder!r} is invalid: no such folder")
            out.insert(0, f"hydra.searchpath=[file://{path}]")
        else:
            out.append(arg)
    return out


def compose_config(overrides: Sequence[str]) -> tuple[DictConfig, dict[str, Any]]:
    """The same composition as a run, without @hydra.main, so no output folder appears;
    with Hydra's group choices (the model preset's name labels the summary)."""
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices
