"""Many jobs, one set of files: run-folder and cache locks, create-only publishing."""

import pytest
import torch

from flowers_sweep.atomic import atomic_create
from flowers_sweep.data.cache import cached
from flowers_sweep.errors import RunFolderBusyError
from flowers_sweep.record.runfolder import hold, is_held

from .helpers.cli import HANG_GUARD_S
from .helpers.holders import HOLD_RUN_FOLDER, held_elsewhere, start_python

# Each process asks for the same entry; the build takes a while and leaves a mark.
BUILDER = """
import torch
from flowers_sweep.data.cache import cached

cache, marks = ARGS

def build():
    with open(marks, "a") as f:
        f.write("built\\n")
    time.sleep(1.5)
    return {"x": torch.arange(1000)}

print(int(cached(cache, "demo", {"v": 1}, build)["x"].sum()))
"""


def test_jobs_starting_on_an_empty_cache_build_it_once(tmp_path):
    marks = tmp_path / "marks.txt"
    procs = [start_python(BUILDER, tmp_path / "cache", marks) for _ in range(3)]
    outs = [p.communicate(timeout=HANG_GUARD_S) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == [str(sum(range(1000)))] * 3
    assert marks.read_text() == "built\n"  # the others waited, then read it
    assert len(list((tmp_path / "cache").glob("demo-*.pt"))) == 1


def test_a_published_entry_is_never_replaced(tmp_path):
    path = tmp_path / "entry.pt"
    assert atomic_create(path, lambda f: f.write(b"first"))
    inode = path.stat().st_ino
    assert not atomic_create(path, lambda f: f.write(b"second"))
    assert path.read_bytes() == b"first" and path.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["entry.pt"]  # no temp file left


def test_a_damaged_entry_is_rebuilt(tmp_path):
    builds = []

    def build():
        builds.append(1)
        return {"x": torch.ones(3)}

    cached(tmp_path, "demo", {"v": 1}, build)
    (entry,) = tmp_path.glob("demo-*.pt")
    entry.write_bytes(b"not a torch file")
    assert torch.equal(cached(tmp_path, "demo", {"v": 1}, build)["x"], torch.ones(3))
    assert len(builds) == 2
    assert torch.equal(cached(tmp_path, "demo", {"v": 1}, build)["x"], torch.ones(3))
    assert len(builds) == 2


def test_a_held_run_folder_refuses_a_second_holder(tmp_path):
    with held_elsewhere(HOLD_RUN_FOLDER, tmp_path):
        assert is_held(tmp_path)
        with pytest.raises(RunFolderBusyError, match="in use"), hold(tmp_path):
            pass
    assert not is_held(tmp_path)  # released with the process
    with hold(tmp_path):
        pass
