"""A search's Optuna study: where it is stored, how it samples, how it prunes.

Two kinds of process open the study: the sweeper (hydra_plugins/flowers_sweep_search),
which asks it for trials, and each trial's run (pruning.py), which reports its
validation accuracy every epoch and asks whether to stop. Both read the same
`hydra.sweeper` node through this module, so they name the same storage, sampler and
pruner, on the launch's machine or on a cluster node.

`hydra.sweeper.storage`:
    sqlite (default)  SWEEP_DIR/optuna.db; one machine, or a file system with working
                      locks (Optuna's docs warn against SQLite on NFS with many writers)
    journal           SWEEP_DIR/optuna.journal, Optuna's journal file storage: an
                      append-only log that is safe on shared (NFS) file systems
    any URL           e.g. postgresql://user@host/db, as Optuna's `storage=` takes it

Paths go into URLs escaped (SQLAlchemy's URL.create), so a folder named `lr?1e-3`
keeps its study inside it instead of reading `?1e-3` as a URL query.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.config import targets
from flowers_sweep.errors import ConfigError, FlowersSweepError
from flowers_sweep.record.runrecord import JOURNAL_FILE, SQLITE_FILE

STORAGES = ("sqlite", "journal")  # names; any other value is a storage URL
SQLITE_TIMEOUT_S = 60  # how long a writer waits for another's lock before failing

# The names `hydra.sweeper.sampler=` takes; a `_target_` node builds any other.
# TPE's constant liar counts running trials as bad guesses, so trials run in parallel
# (n_jobs > 1, or two launches) are not all drawn at the same spot (Optuna's docs).
SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": partial(optuna.samplers.TPESampler, constant_liar=True),
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,  # needs the `cmaes` package
    "gp": optuna.samplers.GPSampler,  # Gaussian process (torch, scipy)
    "qmc": optuna.samplers.QMCSampler,  # quasi-random (Sobol)
}
NEEDS = {"cmaes": "cmaes"}  # sampler -> the package it imports
# The names `hydra.sweeper.pruner=` takes, with Optuna's defaults (MedianPruner: no
# pruning in the first 5 trials; Hyperband and successive halving: Li et al., 2018).
PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}


class StudyStorageError(FlowersSweepError):
    """The study's storage cannot be opened (an old schema, a bad URL)."""


def _node(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def _named(key: str, value: Any, names: Mapping[str, Any]) -> Any:
    allowed = f"allowed values are {', '.join(names)}, or a _target_ node"
    if targets.is_node(value):
        targets.locate(key, value)  # one line when it does not import
        return None
    if not isinstance(value, str) or value not in names:
        raise ConfigError(f"{key}={value}: {allowed}")
    return names[value]


def build_sampler(spec: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler `hydra.sweeper.sampler` names (with `seed`), or its `_target_` node.

    Raises:
        ConfigError: an unknown name, a node that does not build a sampler, or a sampler
            whose package is not installed.
    """
    make = _named("hydra.sweeper.sampler", spec, SAMPLERS)
    if make is None:
        return _built("hydra.sweeper.sampler", spec, optuna.samplers.BaseSampler)
    package = NEEDS.get(spec)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"hydra.sweeper.sampler={spec} needs the {package} package: "
                          f"pip install {package}")  # fmt: skip
    return make(seed=seed)


def build_pruner(spec: Any) -> optuna.pruners.BasePruner:
    """The pruner `hydra.sweeper.pruner` names, or its `_target_` node.

    Raises:
        ConfigError: an unknown name, or a node that does not build a pruner.
    """
    make = _named("hydra.sweeper.pruner", spec, PRUNERS)
    if make is None:
        return _built("hydra.sweeper.pruner", spec, optuna.pruners.BasePruner)
    return make()


def _built(key: str, node: Any, kind: type) -> Any:
    try:
        built = instantiate(_node(node))
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(f"{key}: {type(cause).__name__}: {cause}") from None
    if not isinstance(built, kind):
        raise ConfigError(f"{key}: {node['_target_']} is not an optuna {kind.__name__}")
    return built


def storage_url(spec: Any, sweep_dir: Path) -> str:
    """What Optuna's tools take to open the study (`optuna-dashboard URL`): a URL, or for
    the journal storage its file's path."""
    if spec in (None, "sqlite"):
        from sqlalchemy.engine import URL

        path = Path(sweep_dir).absolute() / SQLITE_FILE
        return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)
    if spec == "journal":
        return str(Path(sweep_dir).absolute() / JOURNAL_FILE)
    if not isinstance(spec, str) or "://" not in spec:
        raise ConfigError(f"hydra.sweeper.storage={spec}: allowed values are sqlite, journal, "
                          "or a storage URL (postgresql://..., sqlite:///PATH)")  # fmt: skip
    return spec


def open_storage(spec: Any, sweep_dir: Path) -> optuna.storages.BaseStorage:
    """The study's storage, opened (an SQLite file is created in `sweep_dir`).

    Raises:
        StudyStorageError: the storage was made by an older Optuna (the message gives the
            one command that upgrades it), or cannot be opened.
    """
    url = storage_url(spec, sweep_dir)
    try:
        if spec == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(url))
        sqlite = url.startswith("sqlite")
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if sqlite else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except RuntimeError as exc:
        if "optuna storage upgrade" not in str(exc):
            raise
        made_by = str(exc).partition("(set up by ")[2].partition(")")[0] or "an older Optuna"
        raise StudyStorageError(
            f"the study in {url} was made by {made_by}; upgrade it once with: optuna storage "
            f"upgrade --storage '{url}' (then run the same command again to continue it)"
        ) from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StudyStorageError(f"{url}: cannot open: {type(exc).__name__}: {first}") from None
