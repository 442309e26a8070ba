"""A session fixture's folder made once for the whole test session, also when pytest-xdist
runs the tests in several worker processes (each of which has its own session).

The pattern is pytest-xdist's own (its docs, "Making session-scoped fixtures execute
only once"): the workers share the parent of their base temporary folders; the first
to ask makes the folder under a file lock, the others wait for it and reuse it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def made_once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """SESSION_TMP/name, made by `make(folder)` in exactly one worker of the session.

    A folder whose making failed is made again by the next worker that asks (its test
    fails there too, with its own reason); one made completely is marked `.made`."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-USER/pytest-N, shared by the session's workers
    folder = root / f"once-{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".made").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".made").touch()
    return folder
