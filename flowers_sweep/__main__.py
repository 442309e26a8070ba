"""`python -m flowers_sweep [overrides]`: compose the config, check it, run one case.

With `-m` Hydra calls `main` once per combination of the sweep's overrides.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from flowers_sweep.config import validate
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.train import run

log = logging.getLogger("flowers_sweep")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    choices = hc.runtime.choices
    try:
        validate(cfg)
        result = run(cfg, Path(hc.runtime.output_dir), choices.get("case"), choices.get("model"))
    except FlowersSweepError as exc:
        log.error("%s", exc)  # into the run's log file too
        print(f"flowers_sweep: error: {exc}", file=sys.stderr)
        sys.exit(2)
    return result["test_acc"]


if __name__ == "__main__":
    main()
