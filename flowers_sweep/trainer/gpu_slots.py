"""Which GPU a job trains on: one job per GPU of the node by default, never all on GPU 0.

`trainer.device=auto` in a job that sees CUDA GPUs claims a *slot*: a lock file named by
a GPU's UUID and a slot number, held until the run ends. Slots are tried slot-major
(every GPU's slot 0, then every GPU's slot 1, ...), so concurrent jobs spread over the
GPUs before any GPU takes a second job; `trainer.jobs_per_gpu` sets how many slots a GPU
has, and a job that finds every slot taken waits for one. The locks are OS file locks
(filelock), released by the kernel when a job dies, in a per-user folder of the node's
temporary directory, so every launcher shares them: joblib workers, submitit_local jobs
that see all GPUs, and several launches on one workstation. A SLURM job given one GPU
sees only that one and claims it at once.

An explicit `trainer.device=cuda:N` claims nothing: the user chose.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from flowers_sweep.trainer.hardware import resolve_device

log = logging.getLogger(__name__)
POLL_S = 2.0  # how often a job waiting for a GPU looks again


def slot_dir() -> Path:
    """The node-wide, per-user folder of slot locks."""
    uid = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return Path(tempfile.gettempdir()) / f"flowers_sweep-{uid}" / "gpu_slots"


def gpu_keys() -> list[str]:
    """A node-wide name for each visible GPU (its UUID), in CUDA's index order.

    Indexes are relative to each process's CUDA_VISIBLE_DEVICES; UUIDs are not, so two
    jobs that see different subsets of the GPUs still agree on which one is which.
    """
    keys = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        keys.append(f"GPU-{uuid}" if uuid is not None else f"index-{i}")
    return keys


@contextlib.contextmanager
def claim_slot(
    keys: Sequence[str], jobs_per_gpu: int, folder: Path | None = None, poll_s: float = POLL_S
) -> Iterator[int]:
    """Hold a free slot of one of the GPUs `keys` for the duration of the block.

    Yields the index into `keys` of the GPU claimed. Waits (logging once) while every
    one of the `len(keys) * jobs_per_gpu` slots is held by another process.
    """
    folder = Path(folder or slot_dir())
    folder.mkdir(parents=True, exist_ok=True)
    waiting_since = None
    while True:
        for slot in range(jobs_per_gpu):
            for index, key in enumerate(keys):
                lock = FileLock(str(folder / f"{key}.slot{slot}.lock"))
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                if waiting_since is not None:
                    waited = time.monotonic() - waiting_since
                    log.info("GPU %d is free after %.0f s of waiting", index, waited)
                try:
                    yield index
                finally:
                    lock.release()
                return
        if waiting_since is None:
            waiting_since = time.monotonic()
            log.info(
                "all %d GPU(s) run trainer.jobs_per_gpu=%d job(s) each: waiting for a free one",
                len(keys),
                jobs_per_gpu,
            )
        time.sleep(poll_s)


def given_no_gpu() -> str | None:
    """Why a process that sees no CUDA GPU is on a machine that has some, or None.

    A launcher hides GPUs through CUDA_VISIBLE_DEVICES: submitit_local with Hydra's
    default `gpus_per_node: null` sets it empty, which would train on the CPU unnoticed.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    has_gpus = Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists()
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles") and has_gpus:
        return f"CUDA_VISIBLE_DEVICES={visible!r}"
    return None


@contextlib.contextmanager
def assigned_device(setting: str, jobs_per_gpu: int) -> Iterator[torch.device]:
    """The device a run trains on, held for the block (see the module's docstring).

    `setting` is `trainer.device` (validated by config.py): auto, cpu, cuda, cuda:N, mps.
    Raises FlowersSweepError for a CUDA device on a machine without CUDA.
    """
    if setting != "auto" or not torch.cuda.is_available():
        if setting == "auto" and (why := given_no_gpu()):
            log.warning(
                "trainer.device=auto: this job was given no GPU (%s) on a machine that has "
                "some, so it trains on the CPU; with submitit set hydra.launcher.gpus_per_node",
                why,
            )
        yield resolve_device(setting)
        return
    keys = gpu_keys()
    with claim_slot(keys, jobs_per_gpu) as index:
        if len(keys) > 1:
            log.info("trainer.device=auto: this job trains on GPU %d of %d", index, len(keys))
        yield torch.device("cuda", index)
