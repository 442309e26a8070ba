"""Whether a SLURM cluster answers here (the `slurm` tests need one)."""

from __future__ import annotations

import shutil
import subprocess

from .cli import HANG_GUARD_S


def slurm_cluster() -> str | None:
    """Why no SLURM cluster answers here, or None when one does (with a node up)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (bash scripts/local_slurm.sh up starts a one-node cluster)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=HANG_GUARD_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    states = proc.stdout.split()
    if proc.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states):
        return "no SLURM node up (bash scripts/local_slurm.sh up, then export SLURM_CONF)"
    return None
