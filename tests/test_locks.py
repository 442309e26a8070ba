"""Many jobs, one set of files: run-folder and cache locks, create-only publishing."""

import subprocess
import sys
import textwrap

import pytest
import torch

from flowers_sweep.atomic import atomic_create
from flowers_sweep.data.cache import cached
from flowers_sweep.errors import RunFolderBusyError
from flowers_sweep.runfolder import hold, is_held

from .helpers.cli import HANG_GUARD_S, ROOT

# Each process asks for the same entry; the build takes a while and leaves a mark.
BUILDER = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    from flowers_sweep.data.cache import cached

    cache, marks = Path(sys.argv[1]), Path(sys.argv[2])

    def build():
        with open(marks, "a") as f:
            f.write("built\\n")
        time.sleep(1.5)
        return {"x": torch.arange(1000)}

    print(int(cached(cache, "demo", {"v": 1}, build)["x"].sum()))
    """
)


def test_jobs_starting_on_an_empty_cache_build_it_once(tmp_path):
    marks = tmp_path / "marks.txt"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(tmp_path / "cache"), str(marks)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
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
    other = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from flowers_sweep.runfolder import hold
            with hold({str(tmp_path)!r}):
                print("held", flush=True)
                sys.stdin.read()
        """)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "held"
        assert is_held(tmp_path)
        with pytest.raises(RunFolderBusyError, match="in use"), hold(tmp_path):
            pass
    finally:
        other.communicate("", timeout=HANG_GUARD_S)
    assert not is_held(tmp_path)  # released with the process
    with hold(tmp_path):
        pass
