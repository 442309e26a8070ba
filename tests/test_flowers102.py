"""Flowers102 through torchvision's loader, on trees generated offline."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import flowers_sweep as fs
from flowers_sweep import evaluate
from flowers_sweep.config.validate import validate
from flowers_sweep.data import build_loaders, load_splits
from flowers_sweep.data import flowers102 as fl
from flowers_sweep.data.images import load_resized
from flowers_sweep.errors import DatasetNotFoundError, ImageDecodeError
from flowers_sweep.models import build_model

from .helpers.cli import make_cfg, run_app, run_cli
from .helpers.state import ProcessState


def flowers_cfg(root, *overrides, verify=False):
    return make_cfg(
        "dataset=flowers102",
        f"dataset.root={root}",
        f"dataset.verify_checksums={str(verify).lower()}",
        *overrides,
    )


def test_report_split_swap_sizes(flowers_tree, cache_dir):
    root, sizes, verify = flowers_tree
    cfg = flowers_cfg(root, "dataset.image_size=32", verify=verify)
    splits = load_splits(cfg.dataset, workers=2)
    assert tuple(splits.counts().values()) == sizes
    assert splits.train.images.shape[1:] == (3, 32, 32)
    assert splits.train.images.dtype == torch.uint8
    assert splits.num_classes == 102 and splits.class_names[0] == "pink primrose"
    assert int(splits.train.labels.min()) >= 0 and int(splits.train.labels.max()) < 102


def test_split_mapping_is_configuration(mini_tree, cache_dir):
    cfg = flowers_cfg(mini_tree, "dataset.image_size=16", "dataset.splits.train=train")
    splits = load_splits(cfg.dataset)
    official = fl.open_split(cfg.dataset, "train")
    assert torch.equal(splits.train.labels, torch.tensor(official._labels))


def test_cache_is_reused_from_disk(mini_tree, cache_dir, monkeypatch):
    cfg = flowers_cfg(mini_tree, "dataset.image_size=24")
    first = load_splits(cfg.dataset)
    fl._MEMORY.clear()
    monkeypatch.setattr(fl, "decode_all", lambda *a: pytest.fail("decoded again"))
    again = load_splits(cfg.dataset)
    assert torch.equal(first.test.images, again.test.images)


def test_a_changed_split_file_with_the_same_counts_is_not_served_stale(mini_tree, cache_dir):
    from scipy.io import loadmat, savemat

    cfg = flowers_cfg(mini_tree, "dataset.image_size=16")
    before = load_splits(cfg.dataset)
    setid = mini_tree / "flowers-102" / "setid.mat"
    ids = loadmat(setid, squeeze_me=True)
    trn, val = ids["trnid"].copy(), ids["valid"].copy()
    trn[0], val[0] = val[0], trn[0]  # swap one image between two splits: same counts
    savemat(setid, {"trnid": trn[None, :], "valid": val[None, :], "tstid": ids["tstid"][None, :]})
    after = load_splits(cfg.dataset)  # the same process (in-memory copy), then from disk
    official_val = fl.open_split(cfg.dataset, "val")
    assert torch.equal(after.val.labels, torch.tensor(official_val._labels))
    assert not torch.equal(after.val.images, before.val.images)
    fl._MEMORY.clear()
    assert torch.equal(load_splits(cfg.dataset).val.images, after.val.images)


def test_checksums_on_by_default_reject_other_files(mini_tree, cache_dir):
    cfg = flowers_cfg(mini_tree, verify=True)
    with pytest.raises(DatasetNotFoundError, match=r"dataset\.download=true"):
        load_splits(cfg.dataset)


def test_missing_root_names_path_and_fix(tmp_path, cache_dir):
    """Through fs.train, the CLI's task in this process: the run fails with the error
    the CLI prints as its one line (a run failed for its settings: test_user_input)."""
    missing = tmp_path / "nowhere"
    cfg = fs.compose(["dataset=flowers102", f"dataset.root={missing}", "model=baseline_cnn",
                      "trainer.epochs=1"])  # fmt: skip
    with pytest.raises(fs.RunFailedError) as failed:
        fs.train(cfg, tmp_path / "run")
    cause = failed.value.__cause__
    assert isinstance(cause, DatasetNotFoundError) and "\n" not in str(cause)
    assert str(missing / "flowers-102") in str(cause) and "dataset.download=true" in str(cause)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"


def test_truncated_jpeg_is_named(mini_tree, tmp_path, cache_dir):
    """Through fs.train, the CLI's task in this process; the CLI's one line for a run
    that failed on its data: test_missing_root_names_path_and_fix."""
    victim = mini_tree / "flowers-102" / "jpg" / "image_00003.jpg"
    victim.write_bytes(victim.read_bytes()[:300])
    cfg = fs.compose([
        "dataset=flowers102", f"dataset.root={mini_tree}", "dataset.verify_checksums=false",
        "dataset.image_size=16", "model=baseline_cnn", "trainer.epochs=1", "trainer.threads=1",
    ])  # fmt: skip
    with pytest.raises(fs.RunFailedError, match=r"image_00003\.jpg"):
        fs.train(cfg, tmp_path / "run")
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "failed" and "image_00003.jpg" in result["error"]


def test_decode_error_wraps_pil(tmp_path):
    bad = tmp_path / "image_00001.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageDecodeError, match=r"image_00001\.jpg"):
        load_resized(bad, 16)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_become_rgb(tmp_path, mode):
    path = tmp_path / f"{mode}.jpg"
    Image.new(mode, (50, 40), 128 if mode == "L" else (0, 100, 200, 0)).save(path)
    out, size = load_resized(path, 16)
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8
    assert size == (50, 40)  # the photo's own width and height, for the augmentation


@pytest.fixture(scope="module")
def large_photos_tree(tmp_path_factory):
    """Photos about the size of the real ones (read only: both cases share it)."""
    from .helpers.fake_flowers102 import write_tree

    root = tmp_path_factory.mktemp("large_photos")
    write_tree(root, per_split=40, size=96, upscale_to=(300, 250))
    return root


@pytest.mark.xdist_group("large_photos_tree")  # one worker: the tree is made once
@pytest.mark.parametrize("train", [False, True])
def test_cached_and_reference_pipelines_agree(large_photos_tree, cache_dir, train):
    """Same images through both pipelines: same shape, dtype and value statistics."""
    tmp_path = large_photos_tree
    stats = {}
    for pipeline in ("cached", "reference"):
        cfg = flowers_cfg(tmp_path, "dataset.image_size=64", f"dataset.pipeline={pipeline}",
                          "trainer.batch_size=40", "trainer.num_workers=0")  # fmt: skip
        validate(cfg)
        torch.manual_seed(0)
        loaders = build_loaders(cfg, torch.device("cpu"))
        part = loaders.train if train else loaders.val
        x, _ = next(iter(part(torch.Generator().manual_seed(0) if train else None)))
        stats[pipeline] = x
        assert x.shape == (40, 3, 64, 64) and x.dtype == torch.float32
    cached = load_splits(flowers_cfg(tmp_path, "dataset.image_size=64").dataset)
    assert cached.train.image_sizes.tolist() == [[300, 250]] * 40  # kept with the cache
    ours, ref = stats["cached"], stats["reference"]
    assert ours.mean((0, 2, 3)) == pytest.approx(ref.mean((0, 2, 3)), abs=0.05)
    assert ours.std((0, 2, 3)) == pytest.approx(ref.std((0, 2, 3)), rel=0.05)
    if not train:  # same order, no randomness: close pixel for pixel as well
        assert (ours - ref).abs().mean() < 0.1


@pytest.fixture(scope="module")
def flowers_run(flowers_tree, tmp_path_factory):
    """One real CLI run on the Flowers102 tree, launched as a user of relative paths
    launches it: from a folder holding `tree` (a link to the generated tree) and the
    weights file `w.pt`, with hydra.job.chdir=true, the data, its cache and the weights
    named relative to that folder. Both tests below read it."""
    root, sizes, verify = flowers_tree
    launch = tmp_path_factory.mktemp("launch")
    (launch / "tree").symlink_to(root, target_is_directory=True)
    cfg = make_cfg("model=baseline_cnn", "dataset=flowers102")
    torch.save(build_model(cfg.model, 102, 16).state_dict(), launch / "w.pt")
    proc = run_cli(
        "hydra.job.chdir=true", "dataset=flowers102", "dataset.root=tree",
        f"dataset.verify_checksums={verify}", "dataset.cache_dir=cache", "dataset.image_size=16",
        "model=baseline_cnn", "model.weights=w.pt", "trainer.epochs=1", "trainer.threads=1",
        "hydra.run.dir=run", cache=None, cwd=launch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return launch, launch / "run", sizes


@pytest.fixture(scope="module")
def evaluated(flowers_run, tmp_path_factory):
    """`flowers_sweep.evaluate RUN_DIR` (its main, in this process) from a folder other
    than the launch's: the relative paths the run recorded still mean the launch's."""
    _, run_dir, _ = flowers_run
    before = ProcessState.capture()  # a module fixture: the autouse check comes after it
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("elsewhere"))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = evaluate.main([str(run_dir)])
    assert not before.changes(), before.changes()
    return code, out.getvalue(), err.getvalue()


@pytest.mark.e2e
@pytest.mark.xdist_group("flowers_run")  # one worker: the run is made once
def test_flowers102_end_to_end(flowers_run, evaluated):
    _, run_dir, sizes = flowers_run
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["train_size"], result["val_size"], result["test_size"]) == sizes
    assert result["status"] == "completed" and result["num_classes"] == 102
    log = (run_dir / "flowers_sweep.log").read_text()
    assert f"trainset size: {sizes[0]}" in log and f"testset size: {sizes[2]}" in log
    # The run evaluated again: the same accuracy, and a row per flower, by its name.
    code, out, err = evaluated
    assert code == 0, err[-3000:]
    assert float(out.split("top1: ")[1].split()[0]) == pytest.approx(result["test_acc"], abs=5e-5)
    per_class = pd.read_csv(run_dir / "per_class.csv")
    assert len(per_class) == 102 and per_class["name"].iloc[0] == "pink primrose"
    assert per_class["support"].sum() == sizes[2]


@pytest.mark.e2e
@pytest.mark.xdist_group("flowers_run")
def test_relative_paths_mean_the_launch_folder_under_chdir(flowers_run, evaluated):
    launch, run_dir, _ = flowers_run
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"
    assert list((launch / "cache").glob("flowers102-*"))  # the cache beside the tree
    assert not (run_dir / "cache").exists()
    assert "loaded" in (run_dir / "flowers_sweep.log").read_text()  # w.pt, beside it too
    code, _, err = evaluated
    assert code == 0, err[-3000:]  # from another folder


def scheduled_milestones(cfg):
    """The milestones of the scheduler a run of cfg builds."""
    import torch

    from flowers_sweep.optim import build_scheduler

    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=cfg.optimizer.lr)
    return dict(build_scheduler(optimizer, cfg.scheduler, cfg.trainer.epochs).milestones)


def test_report_preset_decays_at_the_reports_epochs():
    """The presets state milestones as fractions of the run: at the report's 100 epochs
    the scheduler they build must decay after exactly epochs 40 and 70 (and 60 for the
    earlier schedule), and a case still picks the activation."""
    assert scheduled_milestones(make_cfg("experiment=report")) == {40: 1, 70: 1}
    v1 = make_cfg("experiment=report", "scheduler=report_v1")
    assert scheduled_milestones(v1) == {60: 1}
    assert make_cfg("experiment=report", "case=sigmoid").model.activation == "sigmoid"


def test_report_experiment_cfg_job_shows_settings(monkeypatch, capsys):
    # app.main as `python -m flowers_sweep experiment=report --cfg job` calls it
    assert run_app(["experiment=report", "--cfg", "job"], monkeypatch) == 0
    out = capsys.readouterr().out
    for text in (
        "_target_: flowers_sweep.data.flowers102.Flowers102",
        "image_size: 224",
        "epochs: 100",
        "gamma: 0.2",
        "lr: 0.001",
    ):
        assert text in out
