"""Reproducible sweeps of the Flowers102 activation-function study.

The Python API (see flowers_sweep.api and docs/notebook.ipynb):

    compose(overrides, config_dir=None) -> DictConfig   a run's config, as the CLI's
    train(cfg, run_dir) -> dict                         one run, in this process
    sweep(overrides, sweep_dir=None) -> Report          the CLI's -m, in a subprocess
    load(paths) -> Report                               run or sweep folders, as DataFrames

The names are loaded on first use, so `python -m flowers_sweep` starts no slower.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Report", "__version__", "compose", "load", "sweep", "train"]
_API = ("compose", "load", "sweep", "train")


def __getattr__(name: str) -> Any:
    if name in _API:
        from flowers_sweep import api

        return getattr(api, name)
    if name == "Report":
        from flowers_sweep.aggregate.report import Report

        return Report
    raise AttributeError(f"module 'flowers_sweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
