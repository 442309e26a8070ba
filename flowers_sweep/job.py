"""What a Hydra job needs around its training run: its threads, its .hydra/ files, the
job composed without its `+key=` overrides (for overrides.validate_added_keys), and the
note a sweep's end reads (stop signals: stopping.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.atomic import atomic_write_text
from flowers_sweep.hardware import available_cpus
from flowers_sweep.launch import drop_unused_dirs, note_job
from flowers_sweep.runrecord import CONFIG_FILE, HYDRA_FILE, OVERRIDES_FILE

log = logging.getLogger("flowers_sweep")


def thread_count(setting: Any, launcher: Any) -> int | None:
    """Torch threads for this job: parallel joblib jobs share the CPUs evenly."""
    if setting != "auto":
        return int(setting)
    cpus = available_cpus()
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = launcher.get("n_jobs") or -1
        parallel = cpus if n_jobs < 0 else min(n_jobs, cpus)
        return max(1, cpus // parallel)
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None  # torch's default: every core


def composed_without_added(overrides: list[str]) -> DictConfig | None:
    """This job's config composed from its own sources without its `+`/`++` overrides,
    to tell a key that exists from one that was added; None if it cannot be composed
    (then the check is stricter, see overrides.validate_added_keys)."""
    try:
        import hydra.conf  # noqa: F401  (registers Hydra's own schema)
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
        from hydra.core.plugins import Plugins

        Plugins.instance()  # the config sources (pkg://, file://) are plugins
        hc = HydraConfig.get()
        search_path = ConfigSearchPathImpl()
        for source in hc.runtime.config_sources:
            search_path.append(source.provider, f"{source.schema}://{source.path}")
        kept = [o for o in overrides if not o.startswith("+")]
        loaded = ConfigLoaderImpl(config_search_path=search_path).load_configuration(
            hc.job.config_name, kept, run_mode=RunMode.RUN
        )
        used = [Path(hc.runtime.output_dir)]
        if hc.mode == RunMode.MULTIRUN:  # a single run has no sweep folder: reading
            used.append(Path(hc.sweep.dir))  # hydra.sweep.dir would make one
        drop_unused_dirs(*used)
        return loaded
    except Exception as exc:  # a check's helper must never fail the run
        log.debug("could not compose without the added keys: %s", exc)
        return None


def note_this_job(run_dir: Path, status: str, why: str) -> None:
    """For the sweep's end: this launch did not complete this job (see launch.py)."""
    hc = HydraConfig.get()
    try:
        note_job(Path(hc.sweep.dir), int(hc.job.num), run_dir, status, why)
    except Exception as exc:  # a note is a hint; it must not become the job's failure
        log.warning("could not note the job's outcome for the sweep's end: %s", exc)


def write_hydra_files(run_dir: Path, cfg: DictConfig) -> None:
    """Rewrite .hydra/ from this process's own config, with the folder held.

    Hydra writes .hydra/ before the task runs and before anyone holds the folder, so a
    process that lost the race for the folder may have just overwritten them; the
    process that holds it puts back its own, the same text Hydra writes.
    """
    subdir = HydraConfig.get().output_subdir
    if subdir is None:  # hydra.output_subdir=null: Hydra keeps no copy
        return
    hydra_dir = run_dir / subdir
    atomic_write_text(hydra_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg))
    atomic_write_text(hydra_dir / HYDRA_FILE, OmegaConf.to_yaml(HydraConfig.instance().cfg))
    atomic_write_text(
        hydra_dir / OVERRIDES_FILE, OmegaConf.to_yaml(HydraConfig.get().overrides.task)
    )
