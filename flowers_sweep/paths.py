"""Paths a user gives mean what they mean where the command was run.

Under `hydra.job.chdir=true` Hydra moves each job into its run folder before our code
runs, so a relative `dataset.root`, `dataset.cache_dir` or `model.weights` would
silently point inside the run folder. Every such path goes through `user_path`.

A file's name may hold any bytes; where they are not UTF-8, Python's str of the path
holds lone surrogates, which a log file or terminal opened strict refuses to write
(`--- Logging error ---`, and the file never named). Every message that names a file
names it through `path_text`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.record.runrecord import hydra_runtime

RUN_PATH_KEYS = ("dataset.root", "dataset.cache_dir")  # what evaluate reads from a run


def user_path(path: str | Path) -> Path:
    """`path` with `~` expanded, made absolute against the folder the command ran in.

    That folder is Hydra's recorded original working directory in a Hydra job (also in
    joblib and submitit workers), and the current one elsewhere (evaluate, predict,
    tests). An absolute path is returned as it is.
    """
    return Path(to_absolute_path(str(Path(path).expanduser())))


def path_text(path: str | os.PathLike[str]) -> str:
    """`path` as text any log, terminal or file can hold: the bytes of a name that are
    not in the file system's encoding (os.fsdecode's surrogates) shown as `\\xNN`, as
    Python shows bytes; any other text unchanged. Also safe on any message (a str)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # the name's own bytes, back from os.fsdecode's surrogateescape
        return os.fsencode(text).decode(sys.getfilesystemencoding(), "backslashreplace")
    except UnicodeError:  # a surrogate no file name produced: escape it as it stands
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def rebase_run_paths(cfg: DictConfig, run_dir: Path) -> None:
    """Make a finished run's relative data paths absolute against the folder it was
    launched from (Hydra's `runtime.cwd` in its .hydra/hydra.yaml), so `evaluate` finds
    the run's data from any folder. Without that record the paths stay as they are."""
    try:
        launched_from = Path(hydra_runtime(run_dir)["cwd"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return
    for key in RUN_PATH_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            OmegaConf.update(cfg, key, str(launched_from / value), merge=False)
