"""Which of a run's settings make the experiment, and which only how it is carried out.

A run folder is identified by its experiment settings (runfolder.claim compares them on
a relaunch) and the report's cases are split by them (aggregate); execution settings may
change between launches without making another experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowers_sweep.record.legacy import upgrade_settings

# Settings that change how a run is carried out, not what it computes (a name covers
# the keys under it). A relaunch may
# change them and still resume; they never split a case in the report; they are not
# logged as the experiment's hyperparameters. Everything else is the experiment.
EXECUTION_SETTINGS = (
    "aggregate",
    "resume",
    "trainer.num_workers",
    "trainer.threads",
    "trainer.device",
    "trainer.keep_checkpoint",
    "dataset.cache_dir",
    "dataset.download",
    "trainer.checkpoint_every_epochs",
    "trainer.checkpoint_every_s",
    "trainer.keep_weights",
    "trainer.jobs_per_gpu",
    "logger",  # the whole node: where a run reports, not what it computes
    "optimized_metric",
    "tags",  # labels, kept beside the settings
    "fail_fast",  # when a launch stops starting jobs
)


def flatten(tree: Any, prefix: str = "", keep_empty: bool = False) -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (milestones are one setting).

    The one flattener of a config tree. An empty mapping leaves no key, unless
    `keep_empty` (then {"a": {}} -> {"a": {}}: an edit that empties a node is seen)."""
    if not isinstance(tree, dict) or (keep_empty and prefix and not tree):
        return {prefix.removesuffix("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        nested = isinstance(value, dict) and (value or not keep_empty)
        out.update(flatten(value, f"{prefix}{key}." if nested else f"{prefix}{key}", keep_empty))
    return out


def is_execution_setting(key: str) -> bool:
    """Whether the flattened `key` is one of EXECUTION_SETTINGS or under one."""
    return any(key == name or key.startswith(f"{name}.") for name in EXECUTION_SETTINGS)


def experiment_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened settings that make the experiment: all but EXECUTION_SETTINGS.
    A config written before `_target_` nodes comes in today's keys (legacy.py)."""
    flat = upgrade_settings(flatten(dict(config)))
    return {k: v for k, v in flat.items() if not is_execution_setting(k)}
