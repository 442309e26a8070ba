"""Paths a user gives mean what they mean where the command was run.

Under `hydra.job.chdir=true` Hydra moves each job into its run folder before our code
runs, so a relative `dataset.root`, `dataset.cache_dir` or `model.weights` would
silently point inside the run folder. Every such path goes through `user_path`.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.runrecord import HYDRA_DIR, HYDRA_FILE

RUN_PATH_KEYS = ("dataset.root", "dataset.cache_dir")  # what evaluate reads from a run


def user_path(path: str | Path) -> Path:
    """`path` with `~` expanded, made absolute against the folder the command ran in.

    That folder is Hydra's recorded original working directory in a Hydra job (also in
    joblib and submitit workers), and the current one elsewhere (evaluate, predict,
    tests). An absolute path is returned as it is.
    """
    return Path(to_absolute_path(str(Path(path).expanduser())))


def rebase_run_paths(cfg: DictConfig, run_dir: Path) -> None:
    """Make a finished run's relative data paths absolute against the folder it was
    launched from (Hydra's `runtime.cwd` in its .hydra/hydra.yaml), so `evaluate` finds
    the run's data from any folder. Without that record the paths stay as they are."""
    try:
        hydra_cfg = yaml.safe_load((Path(run_dir) / HYDRA_DIR / HYDRA_FILE).read_text())
        launched_from = Path(hydra_cfg["hydra"]["runtime"]["cwd"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return
    for key in RUN_PATH_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            OmegaConf.update(cfg, key, str(launched_from / value), merge=False)
