"""benchmarks/gpu_check.sh and scripts/wheelhouse.sh, checked offline in seconds.

The GPU machine has PyTorch and no package index: what gpu_check needs beyond the image
must all be in the wheelhouse, and the script must fit its 8 minutes. The dry run itself
(`--device cpu --quick`, minutes) is not part of the suite.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .helpers.cli import HANG_GUARD_S

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / "scripts" / "wheelhouse.sh"
GPU_CHECK = ROOT / "benchmarks" / "gpu_check.sh"
# What the GPU machine's image has (issue 22): gpu_check must not need to install these.
IMAGE = ("torch", "torchvision", "numpy", "pandas", "scipy", "seaborn", "matplotlib", "tqdm",
         "filelock", "pillow", "tensorboard")  # fmt: skip
TARGET = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython",
          "extra": ""}  # fmt: skip
LOCAL = {"flowers_sweep", "tests", "benchmarks", "benchlib", "hydra_plugins", "conftest"}
# An extra is imported only by the option it serves (`import timm` inside model=timm's
# builder, `import mlflow` inside logger=mlflow's), which gpu_check never selects:
# pyproject's extras other than dev.
EXTRAS = {"timm", "mlflow", "wandb"}
# Imported only when a search runs (search/study.py, search/space.py, loaded by the sweeper and by
# a search trial's run): gpu_check runs none, and wheelhouse.sh leaves them out.
SEARCH_ONLY = {"optuna", "sqlalchemy"}


def test_the_extras_left_out_are_pyprojects_own():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]
    named = {
        canonicalize_name(Requirement(r).name) for k, v in extras.items() if k != "dev" for r in v
    }
    assert named == EXTRAS


def pins(array: str) -> dict[str, str]:
    """name -> version of one `ARRAY=( "name==version" ... )` in wheelhouse.sh."""
    body = re.search(rf"^{array}=\((.*?)^\)", WHEELHOUSE.read_text(), re.M | re.S)
    assert body, f"{array} not found in wheelhouse.sh"
    return {canonicalize_name(n): v for n, v in re.findall(r'"([\w.-]+)==([\w.]+)"', body[1])}


def requirements(dist: str) -> list[Requirement]:
    """A distribution's requirements that apply on the target (Python 3.12, Linux)."""
    out = []
    for line in md.requires(dist) or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(TARGET):
            out.append(req)
    return out


def closure(names) -> set[str]:
    """The distributions and everything they require, as installed here."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        with contextlib.suppress(md.PackageNotFoundError):  # not installed here
            todo += [canonicalize_name(r.name) for r in requirements(name)]
    return seen


def imported_modules() -> set[str]:
    """Top-level modules imported anywhere in what gpu_check runs: tests/test_gpu.py with
    conftest and the test helpers it imports, the benchmarks, and the package."""
    files = [ROOT / "tests" / n for n in ("test_gpu.py", "conftest.py")]
    files += sorted((ROOT / "tests" / "helpers").glob("*.py"))
    files += sorted((ROOT / "benchmarks").glob("*.py"))
    files += sorted((ROOT / "flowers_sweep").rglob("*.py"))
    found: set[str] = set()
    done: set[Path] = set()
    while files:
        path = files.pop()
        if path in done:
            continue
        done.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.add(name.split(".")[0])
                if name.startswith("tests."):  # a test helper: its imports count too
                    files.append(ROOT / (name.replace(".", "/") + ".py"))
    return found


def test_the_wheelhouse_holds_every_package_gpu_check_imports_beyond_the_image():
    wheels = {**pins("NEEDED"), **pins("FALLBACK")}
    image = closure(IMAGE)
    by_module = md.packages_distributions()
    missing = []
    outside = LOCAL | EXTRAS | SEARCH_ONLY | set(sys.stdlib_module_names)
    for module in sorted(imported_modules() - outside):
        dists = by_module.get(module)
        assert dists, f"{module} is imported but no installed distribution provides it"
        for dist in closure(dists):
            if dist not in image and dist not in wheels:
                missing.append(f"{dist} (for import {module})")
    assert not missing, f"not in the image nor in wheelhouse.sh: {sorted(set(missing))}"


def test_a_run_imports_no_search_only_module():
    """What SEARCH_ONLY leaves out must be true: the CLI's task and a run's modules load
    without Optuna or SQLAlchemy."""
    code = ("import sys, flowers_sweep.app, flowers_sweep.trainer.training, "
            "flowers_sweep.evaluate; "
            f"print(sorted(m for m in {sorted(SEARCH_ONLY)!r} if m in sys.modules))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_every_needed_wheel_brings_its_own_dependencies():
    """What a wheel requires is in the wheelhouse or the image, at a version that fits."""
    needed, fallback = pins("NEEDED"), pins("FALLBACK")
    wheels, image = {**needed, **fallback}, closure(IMAGE)
    for name in needed:
        for req in requirements(name):
            dep = canonicalize_name(req.name)
            assert dep in wheels or dep in image, f"{name} needs {req}: not in the wheelhouse"
            if dep in wheels:
                assert req.specifier.contains(wheels[dep], prereleases=True), (
                    f"{name} needs {req}; the wheelhouse pins {dep}=={wheels[dep]}"
                )
    for name in fallback:  # a fallback is something the image normally has already
        assert name in image, f"{name} is no dependency of the image's packages"


def test_the_pins_fit_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [Requirement(r) for r in project["dependencies"]]
    specs += [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    wheels = {**pins("NEEDED"), **pins("FALLBACK")}
    checked = 0
    for req in specs:
        name = canonicalize_name(req.name)
        if name in wheels:
            checked += 1
            assert req.specifier.contains(Version(wheels[name])), f"{name}=={wheels[name]} {req}"
    assert checked >= 5  # hydra-core, the two launchers, omegaconf, pytest, setuptools


def test_the_step_limits_fit_in_eight_minutes():
    """Every step's limit and kill grace, and the compiled resume's share, stay inside
    the deadline, and the deadline inside 8 minutes."""
    text = GPU_CHECK.read_text()
    deadline = int(re.search(r"^DEADLINE=\$\(\((\d+) \* SCALE\)\)", text, re.M)[1])
    grace = int(re.search(r"^GRACE=(\d+)", text, re.M)[1])
    limits = [int(x) for x in re.findall(r"^\s*(?:if )?(?:step|optional) \w+ (\d+)\b", text,
                                         re.M)]  # fmt: skip
    assert len(limits) >= 9  # setup, tests, seven benchmarks
    assert sum(limits) + grace * len(limits) <= deadline <= 475
    assert "resume_compiled $((left / SCALE))" in text  # what is left, never more


def test_gpu_check_needs_its_folders_and_explains_itself(tmp_path):
    def run(*args):
        return subprocess.run(["bash", str(GPU_CHECK), *args], capture_output=True, text=True,
                              timeout=HANG_GUARD_S)  # fmt: skip

    assert subprocess.run(["bash", "-n", str(GPU_CHECK)]).returncode == 0
    assert subprocess.run(["bash", "-n", str(WHEELHOUSE)]).returncode == 0
    help_ = run("--help")
    assert help_.returncode == 0 and "--wheels" in help_.stdout and "--quick" in help_.stdout
    no_wheels = run("--out", str(tmp_path / "o"))
    assert no_wheels.returncode == 2 and "--wheels" in no_wheels.stderr
    empty = run("--wheels", str(tmp_path), "--out", str(tmp_path / "o"))
    assert empty.returncode == 2 and "wheelhouse.sh" in empty.stderr
    wh = subprocess.run(["bash", str(WHEELHOUSE), "--help"], capture_output=True, text=True)
    assert wh.returncode == 0 and "--python-version" in wh.stdout


def test_the_summary_merges_each_step_and_counts_failures(tmp_path):
    out = tmp_path
    (out / "steps.tsv").write_text(
        "setup\tpassed\t0\t20\t55\ngpu_tests\tfailed\t1\t30\t70\n"
        "checkpoint_cost\tmissing\t\t0\t0\nconcurrent_cases\ttimed out\t124\t45\t45\n"
        "resume_eager\tpassed\t0\t40\t45\n"
    )
    (out / "gpu_tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="t" name="a"/>'
        '<testcase classname="t" name="b"><failure message="x"/></testcase>'
        '<testcase classname="t" name="c"><skipped/></testcase></testsuite></testsuites>'
    )
    (out / "resume_eager.json").write_text(json.dumps({
        "equal": True, "largest_difference": 0.0, "tolerance": 0.0, "resumed_after_epoch": 1,
        "images_per_split": 48, "image_size": 32, "overrides": []}))  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check_report.py"), "merge", str(out),
         "--device", "cpu", "--quick", "--seconds", "135"],
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr  # one failed, one timed out
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["gpu_tests"]["passed"] == 1 and report["gpu_tests"]["failed"] == 1
    assert report["gpu_tests"]["failures"] == ["t::b"]
    assert report["missing"] == ["checkpoint_cost"]
    assert report["steps"]["concurrent_cases"]["status"] == "timed out"
    assert report["resume_eager"]["equal"] is True
    text = proc.stdout
    assert "1 passed, 1 failed" in text and "TIMED OUT" in text
    assert "checkpoint_cost: missing" in text and "resume, eager: equal to the twin" in text


@pytest.fixture()
def benchlib(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import benchlib

    return benchlib


def test_checkpoints_are_counted_as_a_run_writes_them(benchlib):
    count = benchlib.checkpoints_per_run
    every = {"every_epochs": 1, "every_s": None}
    assert count(100, 2.0, every) == 100
    assert count(100, 2.0, {"every_epochs": None, "every_s": 300}) == 1  # only at the end
    assert count(100, 7.0, {"every_epochs": None, "every_s": 300}) == 3  # 43, 86, 100
    assert count(100, 400.0, {"every_epochs": None, "every_s": 300}) == 100
    assert count(100, 2.0, {"every_epochs": 10, "every_s": 300}) == 10
    assert count(5, 2.0, {"every_epochs": None, "every_s": None}) == 1

    class Trainer(dict):
        pass

    assert benchlib.checkpoint_policy(Trainer())["every_epochs"] == 1  # keys absent


@pytest.mark.parametrize(("n", "bs"), [(6149, 64), (1020, 128), (97, 32), (64, 64), (10, 64)])
def test_the_warm_up_meets_every_batch_shape_of_the_timed_pass(benchlib, n, bs):
    import torch

    split = benchlib.photo_split(n, 8, 3, torch.device("cpu"))

    def shapes(s):
        return {len(s.labels[lo : lo + bs]) for lo in range(0, len(s), bs)}

    assert shapes(benchlib.warm_split(split, bs)) == shapes(split)


def test_benchmark_splits_take_the_warp_path(benchlib, monkeypatch):
    """Original photo sizes: the report's squash-conjugated warp, not the square rotation."""
    import torch

    from flowers_sweep.data import augment

    calls = []
    real = augment.apply_geometry
    monkeypatch.setattr(augment, "apply_geometry", lambda *a: calls.append(1) or real(*a))
    from flowers_sweep.data.loaders import TensorBatches

    split = benchlib.photo_split(8, 16, 3, torch.device("cpu"))
    aug = augment.BatchAugment([0.5] * 3, [0.2] * 3, 0.5, 10)
    for _ in TensorBatches(split, 4, torch.device("cpu"), aug.train_view)(torch.Generator()):
        pass
    assert calls == [1, 1]
