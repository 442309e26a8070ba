"""Reading and writing a run folder, atomically.

Everything a later step trusts (the aggregator, a resume, a skip) lives in the run
folder, so every file is written to a temporary name and renamed into place: a run
killed mid-write leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from filelock import FileLock, Timeout

from flowers_sweep.errors import RunFolderBusyError, RunFolderError, RunFolderMismatchError

METRICS_FILE = "metrics.csv"
RESULT_FILE = "result.json"
WEIGHTS_FILE = "model.pt"  # the last epoch's weights, as the report tested
BEST_WEIGHTS_FILE = "model_best_val.pt"  # the weights of the best validation epoch
CHECKPOINT_FILE = "checkpoint.pt"
KEEP_WEIGHTS = ("last", "best", "both", "none")  # trainer.keep_weights: which files a run keeps
TRACEBACK_FILE = "traceback.txt"
RUN_CONFIG_FILE = "run_config.json"  # the config this folder's run was started with
LOCK_FILE = ".run.lock"  # held by the process training in the folder
RUN_FILES = (
    METRICS_FILE, RESULT_FILE, WEIGHTS_FILE, BEST_WEIGHTS_FILE, CHECKPOINT_FILE, TRACEBACK_FILE,
)  # fmt: skip
# Settings that may change between a run and its resume without changing its results.
RESUME_IGNORED = (
    "aggregate", "resume", "trainer.num_workers", "trainer.threads", "trainer.device",
    "trainer.keep_checkpoint", "dataset.cache_dir", "dataset.download",
    "trainer.checkpoint_every_epochs", "trainer.checkpoint_every_s", "trainer.keep_weights",
    "trainer.jobs_per_gpu",
    "logger.name", "optimized_metric",
)  # fmt: skip
METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_s",
)


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


def write_metrics(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite the whole (small) table each epoch, so it is never half a row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in METRIC_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def save_torch(path: Path, obj: Any, fsync: bool = True) -> None:
    atomic_write(path, lambda f: torch.save(obj, f), fsync)


def read_metrics(path: Path) -> list[dict[str, str]]:
    if not Path(path).is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (milestones are one setting)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}." if isinstance(value, dict) else prefix + key))
    return out


def completed_result(run_dir: Path) -> dict[str, Any] | None:
    """The folder's result when its run completed, else None (absent, failed, unreadable)."""
    path = Path(run_dir) / RESULT_FILE
    try:
        result = read_json(path)
    except (OSError, ValueError):
        return None
    return result if result.get("status") == "completed" else None


@contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Train in run_dir only while no other process does (a relaunch, a requeued job).

    An OS lock (flock), so a killed or pre-empted process lets go of it at once and its
    run can be resumed; it works across the nodes of a cluster on a shared file system
    that supports locks (NFSv4, Lustre, GPFS).
    """
    lock = FileLock(Path(run_dir) / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusyError(
            f"{run_dir} is in use: another process is training its run right now; nothing "
            f"was written. Wait for it to finish (or stop it), then relaunch to resume"
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_held(run_dir: Path) -> bool:
    """Whether some process is training in run_dir now (for a sweep's final summary)."""
    try:
        with hold(run_dir):
            return False
    except RunFolderBusyError:
        return True
    except OSError:  # a read-only copy of a sweep: nobody trains there
        return False


def _read_record(record: Path) -> dict[str, Any]:
    try:
        old = read_json(record)
        if not isinstance(old.get("config"), dict) or not isinstance(old.get("hydra_files"), dict):
            raise ValueError("config or hydra_files missing")
        return old
    except (OSError, ValueError) as exc:
        raise RunFolderError(
            f"{record} is unreadable ({type(exc).__name__}: {exc}); add resume=false to "
            f"start the run over"
        ) from exc


def restore_hydra_files(run_dir: Path) -> None:
    """Put back the .hydra/*.yaml that the folder's run started with.

    Hydra rewrites them at every launch, before any of our code runs; a launch that may
    not run here undoes that, so the folder keeps describing its own run.
    """
    record = Path(run_dir) / RUN_CONFIG_FILE
    if not record.is_file():
        return
    for name, text in _read_record(record)["hydra_files"].items():
        atomic_write_text(Path(run_dir) / ".hydra" / name, text)


def claim(run_dir: Path, config: Mapping[str, Any], fresh: bool = False) -> None:
    """Make sure the folder holds this config's run, or nothing yet.

    The first start records the config (and Hydra's own files, which Hydra rewrites at
    every launch). A later start with other settings restores Hydra's files and stops
    rather than mix two runs in one folder; `fresh` (resume=false) clears it instead.
    """
    run_dir = Path(run_dir)
    record = run_dir / RUN_CONFIG_FILE
    identity = {k: v for k, v in flatten(dict(config)).items() if k not in RESUME_IGNORED}
    if fresh:
        for name in (*RUN_FILES, RUN_CONFIG_FILE):
            (run_dir / name).unlink(missing_ok=True)
    if record.is_file():
        old = _read_record(record)
        changed = [k for k in sorted(set(old["config"]) | set(identity))
                   if old["config"].get(k) != identity.get(k)]  # fmt: skip
        if changed:
            restore_hydra_files(run_dir)
            shown = ", ".join(
                f"{k}={old['config'].get(k)!r} (now {identity.get(k)!r})" for k in changed[:3]
            )
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise RunFolderMismatchError(
                f"{run_dir} holds a run with other settings: {shown}{more}; relaunch with "
                f"its settings to resume it, add resume=false to start it over, or use a "
                f"new hydra.sweep.dir (hydra.run.dir)"
            )
        return
    hydra_dir = run_dir / ".hydra"
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(hydra_dir.glob("*.yaml"))}
    write_json(record, {"config": identity, "hydra_files": files})
