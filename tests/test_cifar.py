"""CIFAR-10 and CIFAR-100 through torchvision's loaders, on files generated offline."""

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from flowers_sweep.data import load_splits
from flowers_sweep.data.cifar import CIFAR10, CIFAR100
from flowers_sweep.data.sources import class_count
from flowers_sweep.errors import DatasetNotFoundError
from flowers_sweep.record.runrecord import read_data

from .helpers.cli import make_cfg, result, run_cli
from .helpers.datasets import make_cifar

NAMES = ["airplane", "automobile", "bird", "cat", "deer"] + [f"k{i}" for i in range(5)]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """Both sets, generated: CIFAR-10 500/100 files, CIFAR-100 1,000/200."""
    root = tmp_path_factory.mktemp("cifar")
    make_cifar(root, "cifar10", train_per_class=50, test_per_class=10, class_names=NAMES)
    make_cifar(root, "cifar100", train_per_class=10, test_per_class=2)
    return root


def official(base, names, key="labels"):
    """(N, 3, 32, 32) uint8 images and (N,) labels of the batch files, in file order."""
    data, labels = [], []
    for name in names:
        with open(base / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        data.append(batch["data"])
        labels += batch[key]
    return torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32)), torch.tensor(labels)


def test_cifar10_val_carved_from_train_by_class(cifar_root, tmp_path):
    splits = CIFAR10(str(cifar_root), verify_checksums=False).load(tmp_path / "cache")
    assert splits.counts() == {"train": 450, "val": 50, "test": 100}
    assert splits.class_names == NAMES
    assert splits.train.labels.bincount().tolist() == [45] * 10
    assert splits.val.labels.bincount().tolist() == [5] * 10
    assert all(s.image_sizes is None for _, s in splits.items())
    assert splits.train.images.shape[1:] == (3, 32, 32)
    base = cifar_root / "cifar-10-batches-py"
    train_images, train_labels = official(base, [f"data_batch_{i}" for i in range(1, 6)])
    test_images, test_labels = official(base, ["test_batch"])
    assert torch.equal(splits.test.images, test_images)
    assert torch.equal(splits.test.labels, test_labels)
    ours = torch.cat([splits.train.images, splits.val.images])
    rows = {bytes(x.numpy().tobytes()) for x in ours}
    assert rows == {bytes(x.numpy().tobytes()) for x in train_images} and len(ours) == 500
    first_val = (train_images == splits.val.images[0]).flatten(1).all(1).nonzero()[0, 0]
    assert int(train_labels[first_val]) == int(splits.val.labels[0])


def test_cifar100_fine_labels_and_names(cifar_root, tmp_path):
    source = CIFAR100(str(cifar_root), verify_checksums=False)
    assert source.class_names() == [f"class_{k:02d}" for k in range(100)]
    splits = source.load(tmp_path / "cache")
    assert splits.counts() == {"train": 900, "val": 100, "test": 200}
    assert splits.val.labels.bincount().tolist() == [1] * 100
    base = cifar_root / "cifar-100-python"
    assert torch.equal(splits.test.labels, official(base, ["test"], "fine_labels")[1])


def test_the_seed_and_fraction_fix_the_cut(cifar_root, tmp_path):
    def val(**kwargs):
        source = CIFAR10(str(cifar_root), verify_checksums=False, **kwargs)
        return source.load(tmp_path / "cache").val

    assert torch.equal(val(seed=0).images, val(seed=0).images)
    assert not torch.equal(val(seed=0).images, val(seed=1).images)
    assert len(val(val_fraction=0.2)) == 100


def test_other_sizes_are_resized_and_record_the_native_size(cifar_root, tmp_path):
    splits = CIFAR10(str(cifar_root), verify_checksums=False, image_size=48).load(tmp_path)
    assert splits.train.images.shape[1:] == (3, 48, 48)
    assert splits.test.image_sizes.shape == (100, 2)
    assert set(splits.test.image_sizes.flatten().tolist()) == {32}
    native = CIFAR10(str(cifar_root), verify_checksums=False).load(tmp_path)
    small = torch.nn.functional.interpolate(
        splits.test.images.float(), size=32, mode="bilinear", antialias=True
    )
    assert (small - native.test.images.float()).abs().mean() < 6  # the same pictures


def test_cache_hit_reads_no_batch_and_changed_files_rebuild(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_cifar(root, "cifar10", train_per_class=10, test_per_class=2)
    cache = tmp_path / "cache"
    first = CIFAR10(str(root), verify_checksums=False).load(cache)
    opened = []
    real = CIFAR10.open

    def counted(self, *args, **kwargs):
        opened.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CIFAR10, "open", counted)
    again = CIFAR10(str(root), verify_checksums=False).load(cache)
    assert opened == [] and torch.equal(first.train.images, again.train.images)
    make_cifar(root, "cifar10", train_per_class=10, test_per_class=2, seed=5)
    changed = CIFAR10(str(root), verify_checksums=False).load(cache)
    assert opened == [1, 1] and not torch.equal(changed.test.images, first.test.images)


def test_checksums_on_by_default_refuse_generated_files_in_one_line(cifar_root, tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CIFAR10(str(cifar_root)).load(tmp_path / "cache")
    message = str(err.value)
    assert "not the official files" in message and "dataset.verify_checksums=false" in message
    assert str(cifar_root / "cifar-10-batches-py") in message and "\n" not in message


@pytest.mark.parametrize("cls", [CIFAR10, CIFAR100])
def test_missing_files_say_where_and_how(tmp_path, cls):
    folder = "cifar-10-batches-py" if cls is CIFAR10 else "cifar-100-python"
    with pytest.raises(DatasetNotFoundError) as err:
        cls(str(tmp_path / "nowhere")).load(tmp_path / "cache")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / folder) in message and "\n" not in message
    assert "dataset.download=true" in message and "https://www.cs.toronto.edu" in message
    assert not (tmp_path / "nowhere").exists()


def test_before_the_files_are_there_the_official_names_stand_in(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", pytest.fail)  # no fetch
    names = CIFAR100(str(tmp_path), download=True).class_names()
    assert len(set(names)) == 100 and names == sorted(names) and names[1] == "aquarium_fish"
    assert CIFAR10(str(tmp_path), download=True).class_names()[:2] == ["airplane", "automobile"]
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_says_so_and_leaves_no_half_folder(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(url, download_root, filename=None, md5=None, **kwargs):
        root = Path(download_root)  # what a download cut short leaves behind
        (root / "cifar-10-batches-py").mkdir(parents=True)
        (root / filename).write_bytes(b"half an archive")
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("the user's")
    with pytest.raises(DatasetNotFoundError) as err:
        CIFAR10(str(tmp_path / "data"), download=True).load(tmp_path / "cache")
    message = str(err.value)
    assert message.startswith("dataset.download=true could not fetch CIFAR-10 (URLError")
    assert "\n" not in message
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["keep.txt"]
    with pytest.raises(DatasetNotFoundError):
        CIFAR10(str(tmp_path / "new" / "data"), download=True).load(tmp_path / "cache")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"val_fraction": 0}, "val_fraction=0 is invalid: a number in (0, 1)"),
        ({"val_fraction": 1.0}, "val_fraction=1.0 is invalid"),
        ({"val_fraction": "x"}, "val_fraction='x' is invalid"),
        ({"seed": -1}, "seed=-1 is invalid"),
        ({"image_size": 0}, "image_size=0 is invalid"),
        ({"download": "yes"}, "download='yes' is invalid"),
        ({"root": None}, "root=None is invalid"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_key(kwargs, start):
    with pytest.raises(ValueError) as err:
        CIFAR10(**kwargs)
    assert str(err.value).startswith(start) and "\n" not in str(err.value)


@pytest.mark.parametrize(("preset", "count"), [("cifar10", 10), ("cifar100", 100)])
def test_through_the_config_and_load_splits(cifar_root, cache_dir, preset, count):
    cfg = make_cfg(
        f"dataset={preset}", f"dataset.root={cifar_root}", "dataset.verify_checksums=false"
    )
    assert class_count(cfg.dataset) == count
    splits = load_splits(cfg.dataset)
    assert splits.num_classes == count and splits.train.images.shape[-1] == 32
    assert len(cfg.dataset.mean) == len(cfg.dataset.std) == 3


@pytest.mark.e2e
def test_cifar10_trains_through_the_cli_with_the_cifar_augmentation(cifar_root, tmp_path):
    """The issue's command on generated files: 500 training files cut 450/50 (the
    default fraction's 45,000/5,000 in proportion), the official 100 as test."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        "dataset=cifar10", f"dataset.root={cifar_root}", "dataset.verify_checksums=false",
        "augment=cifar", "trainer.epochs=1", "trainer.batch_size=32", "model=baseline_cnn",
        f"hydra.run.dir={run_dir}", cache=tmp_path / "cache",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = result(run_dir)
    assert (record["train_size"], record["val_size"], record["test_size"]) == (450, 50, 100)
    assert read_data(run_dir)["class_names"] == NAMES
