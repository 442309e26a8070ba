"""The package as users install it: a wheel in a fresh environment, run from anywhere."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from .helpers.cli import HANG_GUARD_S, ROOT, TINY

pytestmark = pytest.mark.e2e


def source_tree(dest):
    """The files a fresh clone has (and any not yet committed): an in-place build would
    reuse build/ and *.egg-info/ left by earlier builds, and could pass on stale files."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = source_tree(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("flowers_sweep-*.whl")
    return path


def test_the_wheel_carries_the_configs_and_nothing_test_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "flowers_sweep/conf/config.yaml" in names
    assert "flowers_sweep/conf/experiment/report.yaml" in names
    assert "flowers_sweep/conf/hparams_search/optuna.yaml" in names
    assert "flowers_sweep/conf/hydra/sweeper/optuna.yaml" in names  # the sweeper's config
    assert "hydra_plugins/flowers_sweep_search/study_sweeper.py" in names
    assert not [n for n in names if "fake_flowers102" in n or n.startswith("tests/")]


def fresh_env(tmp_path, wheel):
    """A new virtual environment with only the wheel installed, into its site-packages
    by this interpreter's pip (`--target`: the new one needs no pip of its own). Its
    dependencies are the ones this interpreter already has (installing torch again would
    take minutes): their folder is put on the path, but not its .pth files, so the
    editable install of this clone is not found there."""
    env_dir = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)],
        check=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
         site, str(wheel)],
        check=True, capture_output=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    deps = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "zz_dependencies.pth"), "w") as f:
        f.write(deps + "\n")
    return python


def test_a_wheel_runs_a_sweep_the_summary_and_the_aggregator_from_an_empty_folder(
    tmp_path, wheel, cache_dir
):
    """One sweep, the search (its sweeper is the wheel's hydra_plugins, found from the
    wheel too; test_optuna_search: editable): it runs the wheel's app, configs and
    sweep-end callback as a grid does. Its report is written by the aggregator's command
    (the report a sweep writes at its end: test_aggregate, test_studies)."""
    python = fresh_env(tmp_path, wheel)
    work = tmp_path / "empty"
    work.mkdir()
    env = {**os.environ, "FLOWERS_SWEEP_CACHE": str(cache_dir), "PYTHONPATH": ""}

    def run(*args):
        return subprocess.run([str(python), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=HANG_GUARD_S)  # fmt: skip

    where = run("-c", "import flowers_sweep; print(flowers_sweep.__file__)")
    assert str(tmp_path / "venv") in where.stdout, where.stdout + where.stderr  # not the clone
    sweep = work / "search"
    proc = run("-m", "flowers_sweep", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1",
               "model=baseline_cnn", *TINY, "logger=none", "aggregate=false",
               f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "optuna.db").is_file()
    assert json.loads((sweep / "0" / "result.json").read_text())["status"] == "completed"
    again = run("-m", "flowers_sweep.aggregate", str(sweep), "--out", str(work / "again"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (work / "again" / "results.md").is_file() and (work / "again" / "trials.csv").is_file()
    summary = run("-m", "flowers_sweep.summary", "model=resnet18")
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "params: " in summary.stdout
