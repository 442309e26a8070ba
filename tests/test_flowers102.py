"""Flowers102 through torchvision's loader, on trees generated offline."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from flowers_sweep.config.validate import validate
from flowers_sweep.data import build_loaders, load_splits
from flowers_sweep.data import flowers102 as fl
from flowers_sweep.data.images import load_resized
from flowers_sweep.errors import DatasetNotFoundError, ImageDecodeError

from .helpers.cli import make_cfg, run_cli


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
    missing = tmp_path / "nowhere"
    proc = run_cli(
        "dataset=flowers102", f"dataset.root={missing}", "model=baseline_cnn",
        "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert str(missing / "flowers-102") in last and "dataset.download=true" in last
    assert "Traceback" not in proc.stderr


def test_truncated_jpeg_is_named(mini_tree, tmp_path, cache_dir):
    victim = mini_tree / "flowers-102" / "jpg" / "image_00003.jpg"
    victim.write_bytes(victim.read_bytes()[:300])
    proc = run_cli(
        "dataset=flowers102", f"dataset.root={mini_tree}", "dataset.verify_checksums=false",
        "dataset.image_size=16", "model=baseline_cnn", "trainer.epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "image_00003.jpg" in proc.stderr.strip().splitlines()[-1]
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


@pytest.mark.parametrize("train", [False, True])
def test_cached_and_reference_pipelines_agree(tmp_path, cache_dir, train):
    """Same images through both pipelines: same shape, dtype and value statistics."""
    from .helpers.fake_flowers102 import write_tree

    write_tree(tmp_path, per_split=40, size=96, upscale_to=(300, 250))
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


def test_flowers102_end_to_end(flowers_tree, tmp_path, cache_dir):
    root, sizes, verify = flowers_tree
    run_dir = tmp_path / "run"
    proc = run_cli(
        "dataset=flowers102", f"dataset.root={root}", f"dataset.verify_checksums={verify}",
        "dataset.image_size=32", "model=baseline_cnn", "trainer.epochs=1",
        f"hydra.run.dir={run_dir}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["train_size"], result["val_size"], result["test_size"]) == sizes
    assert result["status"] == "completed" and result["num_classes"] == 102
    log = (run_dir / "flowers_sweep.log").read_text()
    assert f"trainset size: {sizes[0]}" in log and f"testset size: {sizes[2]}" in log
    # The run evaluated again: the same accuracy, and a row per flower, by its name.
    again = run_cli(str(run_dir), cache=cache_dir, module="flowers_sweep.evaluate")
    assert again.returncode == 0, again.stderr[-3000:]
    assert float(again.stdout.split("top1: ")[1].split()[0]) == pytest.approx(
        result["test_acc"], abs=5e-5
    )
    per_class = pd.read_csv(run_dir / "per_class.csv")
    assert len(per_class) == 102 and per_class["name"].iloc[0] == "pink primrose"
    assert per_class["support"].sum() == sizes[2]


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


def test_report_experiment_cfg_job_shows_settings():
    proc = run_cli("experiment=report", "--cfg", "job", cache=None)
    assert proc.returncode == 0, proc.stderr
    for text in (
        "_target_: flowers_sweep.data.flowers102.Flowers102",
        "image_size: 224",
        "epochs: 100",
        "gamma: 0.2",
        "lr: 0.001",
    ):
        assert text in proc.stdout
