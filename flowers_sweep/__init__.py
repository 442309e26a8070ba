"""Reproducible sweeps of the Flowers102 activation-function study.

The Python API (see flowers_sweep.api and docs/notebook.ipynb):

    compose(overrides, config_dir=None) -> DictConfig     a run's config, as the CLI's
    train(cfg, run_dir) -> dict                           one run, in this process
    sweep(overrides, sweep_dir=None, config_dir=None, echo=True) -> Report
                                                          the CLI's -m, in a subprocess
    load(paths, select="last") -> Report                  run or sweep folders, as tables

Their errors: ConfigError, RunFailedError, SweepFailedError, AggregateError, all
FlowersSweepError.

The names are loaded on first use, so `python -m flowers_sweep` starts no slower.
"""

from typing import Any

__version__ = "0.1.0"
# name -> the module that defines it: the functions, the report, and the errors they raise
_WHERE = {
    "compose": "flowers_sweep.api",
    "train": "flowers_sweep.api",
    "sweep": "flowers_sweep.api",
    "load": "flowers_sweep.api",
    "RunFailedError": "flowers_sweep.api",
    "SweepFailedError": "flowers_sweep.api",
    "Report": "flowers_sweep.aggregate.report",
    "AggregateError": "flowers_sweep.aggregate.runs",
    "ConfigError": "flowers_sweep.errors",
    "FlowersSweepError": "flowers_sweep.errors",
}
__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'flowers_sweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
