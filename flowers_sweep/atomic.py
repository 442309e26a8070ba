"""Files written atomically: a process killed mid-write leaves the old file or the new
one, never half of one.

Everything a later step trusts (the aggregator, a resume, a skip, a cache entry) is
written to a temporary name beside its place and renamed into it.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


class OutputError(OSError):
    """A command's output could not be written where it was asked to go; the message,
    one line, names the path and why. An OSError, not a FlowersSweepError: a sweep's end
    counts it as a failed report, not as "nothing to aggregate". The commands give it
    their one-line error policy (outcome.command(PROG, OutputError))."""


WHY = {  # errno -> what it means for an output path, in words
    errno.EEXIST: "a file is in the way where a folder is needed",
    errno.ENOTDIR: "a file is in the way where a folder is needed",
    errno.EISDIR: "a folder is in the way where a file is needed",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
}


@contextmanager
def writing_to(place: Path, what: str) -> Iterator[None]:
    """Turn an OSError raised while writing `what` (the report, the evaluation) into
    or under `place` into an OutputError of one line naming the path."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        named = exc.filename2 or exc.filename  # a rename's target, else the file
        path = Path(named if named is not None else place)
        if path.name.startswith(".") and path.name.endswith(".tmp"):  # atomic_write's
            path = path.parent  # temporary file: the folder it could not be made in
        why = WHY.get(exc.errno or 0) or exc.strerror or type(exc).__name__
        raise OutputError(f"cannot write {what} to {path}: {why}") from exc


def _publish(
    path: Path, write: Callable[[BinaryIO], None], fsync: bool, place: Callable[[str], bool]
) -> bool:
    """write(file) into a temporary file beside path, then place(tmp) puts it there.

    The temporary file is created with mode 0666 and the process's umask applied by the
    kernel, as a plain open() would (mkstemp's 0600 would hide results from the group).
    With fsync, the data and then the folder's entry reach the disk before returning,
    so a crash right after cannot leave the new name pointing at nothing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        placed = place(tmp)
        if fsync:
            _fsync_dir(path.parent)
        return placed
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone already once renamed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform that cannot open folders: nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None], fsync: bool = True) -> None:
    """Call write(file) on a temporary file beside path, then rename it into place."""

    def replace(tmp: str) -> bool:
        os.replace(tmp, path)
        return True

    _publish(path, write, fsync, replace)


def atomic_create(path: Path, write: Callable[[BinaryIO], None]) -> bool:
    """Like atomic_write, but only where path does not exist yet; False if it did.

    A file that others may have memory-mapped (a cache entry, read by every job of a
    sweep, maybe on other nodes) is never replaced: on NFS that can fault their reads.
    """

    def link(tmp: str) -> bool:
        try:
            os.link(tmp, path)  # atomic, and fails rather than replace
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: the caller's lock must do
            if Path(path).exists():
                return False
            os.replace(tmp, path)
        return True

    return _publish(path, write, True, link)


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), fsync)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
