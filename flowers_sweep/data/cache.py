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
from filelock import FileLock, Timeout

from flowers_sweep.atomic import atomic_create
from flowers_sweep.errors import ConfigError
from flowers_sweep.paths import path_text, user_path

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    env = os.environ.get("FLOWERS_SWEEP_CACHE")
    if env:
        return user_path(env)
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(xdg).expanduser() / "flowers_sweep"


def cache_key(spec: Mapping[str, Any]) -> str:
    blob = json.dumps(spec, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _load(path: Path) -> dict | None:
    """The entry at path, or None when there is none or it cannot be read."""
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True, mmap=True)
    except Exception as exc:  # a foreign or damaged file: rebuild rather than fail
        log.warning(
            "ignoring unreadable cache entry %s (%s)", path_text(path), path_text(str(exc))
        )
        return None


def cached(
    cache_dir: Path, prefix: str, spec: Mapping[str, Any], build: Callable[[], dict]
) -> dict:
    """Load the entry for `spec`; on a miss, build it and publish it for the others.

    Loads are memory-mapped: instant, and parallel jobs share one copy in the page cache.
    When every job of a sweep starts on an empty cache, a lock beside the entry lets one
    build it (minutes and gigabytes for Flowers102) while the others wait, then read it.
    An entry is only ever published where none exists, never replaced under a reader.
    """
    path = Path(cache_dir) / f"{prefix}-{cache_key(spec)}.pt"
    entry = _load(path)
    if entry is not None:
        return entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"dataset.cache_dir={str(cache_dir)!r} is unusable ({type(exc).__name__}: "
            f"{exc.strerror or exc}): point it (or $FLOWERS_SWEEP_CACHE) at a writable folder"
        ) from None
    lock = FileLock(path.with_name(path.name + ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another job to build %s", path_text(path))
        lock.acquire()
    try:
        entry = _load(path)  # built by the job we waited for
        if entry is not None:
            return entry
        if path.exists():  # unreadable, so nobody can be reading it: make way
            path.unlink()
        entry = build()
        atomic_create(path, lambda f: torch.save(entry, f))
        log.info("cached %s", path_text(path))
        return entry
    finally:
        lock.release()
