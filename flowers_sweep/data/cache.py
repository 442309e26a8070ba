"""An on-disk cache of prepared splits, shared by every job of a sweep.

Entries are keyed by a hash of everything that determines their content, so a change
of size, seed or generator version can never be served a stale file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from flowers_sweep.runfolder import save_torch

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    env = os.environ.get("FLOWERS_SWEEP_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(xdg).expanduser() / "flowers_sweep"


def cache_key(spec: Mapping[str, Any]) -> str:
    blob = json.dumps(spec, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached(
    cache_dir: Path, prefix: str, spec: Mapping[str, Any], build: Callable[[], dict]
) -> dict:
    """Load the entry for `spec`, building and saving it atomically on a miss.

    Loads are memory-mapped: instant, and parallel jobs share one copy in the page cache.

    Concurrent jobs may both build on a first miss; each rename is atomic, so the
    worst case is duplicated work, never a torn file.
    """
    path = Path(cache_dir) / f"{prefix}-{cache_key(spec)}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True, mmap=True)
        except Exception as exc:  # a foreign or damaged file: rebuild rather than fail
            log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
    entry = build()
    save_torch(path, entry)
    log.info("cached %s", path)
    return entry
