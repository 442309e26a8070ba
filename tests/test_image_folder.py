"""`dataset=image_folder`: folders of class folders, on trees generated offline."""

import io
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowers_sweep.data import image_folder as imf
from flowers_sweep.data import load_splits, open_source
from flowers_sweep.data.image_folder import ImageFolder
from flowers_sweep.data.sources import class_count
from flowers_sweep.data.stratified import split_counts, stratified_split
from flowers_sweep.errors import ConfigError, DatasetNotFoundError, ImageDecodeError
from flowers_sweep.paths import path_text

from .helpers.cli import make_cfg
from .helpers.datasets import CLASSES, CORRUPT_NAME, ODD, make_image_folder


@pytest.fixture()
def flat(tmp_path):
    """Layout B: three classes of ten awkward files each, plus a hidden and a text file."""
    root = tmp_path / "flowers"
    make_image_folder(root, per_class=10)
    return root


def counting_decodes(monkeypatch) -> list[int]:
    """Each later decode_all call appends how many files it decoded."""
    calls: list[int] = []
    real = imf.decode_all

    def counted(files, size, workers):
        calls.append(len(files))
        return real(files, size, workers)

    monkeypatch.setattr(imf, "decode_all", counted)
    return calls


def test_extensions_are_torchvisions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert imf.IMG_EXTENSIONS == IMG_EXTENSIONS


def test_flat_layout_classes_counts_and_original_sizes(flat, tmp_path):
    source = ImageFolder(str(flat), image_size=24)
    assert source.class_names() == sorted(CLASSES)
    splits = source.load(tmp_path / "cache", workers=2)
    assert splits.class_names == sorted(CLASSES)
    assert splits.counts() == {"train": 24, "val": 3, "test": 3}  # 8/1/1 a class
    for _, split in splits.items():
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 24, 24)
        assert split.labels.dtype == torch.int64
        assert torch.equal(split.labels.bincount(minlength=3), torch.full((3,), len(split) // 3))
        assert split.image_sizes.shape == (len(split), 2)
    sizes = torch.cat([s.image_sizes for _, s in splits.items()]).tolist()
    assert sorted(map(tuple, sizes)) == sorted([ODD[i % len(ODD)][2] for i in range(10)] * 3)


def test_split_layout_uses_the_folders_and_allows_a_class_missing_from_val(tmp_path):
    root = tmp_path / "split"
    make_image_folder(root, per_class=0, splits={"train": 4, "val": 2, "test": 3}, odd=False)
    for path in (root / "val" / "tulip").iterdir():
        path.unlink()
    (root / "val" / "tulip").rmdir()
    source = ImageFolder(str(root), image_size=16, split=[0.5, 0.25, 0.25])  # ignored here
    splits = source.load(tmp_path / "cache")
    assert splits.counts() == {"train": 12, "val": 4, "test": 9}
    assert splits.val.labels.tolist() == [0, 0, 1, 1]  # daisy, rose; no tulip
    assert splits.test.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_a_val_or_test_class_absent_from_train_is_named(tmp_path):
    root = tmp_path / "split"
    make_image_folder(root, per_class=0, splits={"train": 2, "val": 1, "test": 1}, odd=False)
    (root / "test" / "orchid").mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        ImageFolder(str(root)).class_names()
    message = str(err.value)
    assert str(root / "test" / "orchid") in message and "train/ folder" in message
    assert "\n" not in message


def test_split_counts_rule():
    assert split_counts(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert split_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]  # at least one in each
    assert split_counts(4, (0.8, 0.1, 0.1)) == [2, 1, 1]
    assert split_counts(2, (0.8, 0.1, 0.1)) == [2, 0, 0]  # too few for all three
    assert split_counts(1, (0.1, 0.45, 0.45)) == [0, 1, 0]  # largest remainder, then order
    assert split_counts(50, (0.9, 0.1)) == [45, 5]
    assert split_counts(5000, (0.9, 0.1)) == [4500, 500]
    fractions = (0.7, 0.2, 0.1)
    for n in range(0, 60):
        counts = split_counts(n, fractions)
        assert sum(counts) == n
        if n >= 3:
            assert min(counts) >= 1
        if n >= 10:  # every split's share is >= 1 anyway: plain largest-remainder rounding
            assert all(abs(c - n * f) < 1 for c, f in zip(counts, fractions, strict=True))


def test_stratified_split_is_seeded_disjoint_and_per_class():
    labels = np.repeat(np.arange(4), [20, 7, 3, 50])
    parts = stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))  # disjoint, all
    for label, n in enumerate([20, 7, 3, 50]):
        got = [int((labels[p] == label).sum()) for p in parts]
        assert got == split_counts(n, (0.8, 0.1, 0.1))
    again = stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = stratified_split(labels, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(parts[1], other[1])


def test_flat_cut_is_seeded_and_one_class_growing_leaves_the_others(tmp_path):
    root = tmp_path / "flowers"
    make_image_folder(root, per_class={"daisy": 20, "rose": 12, "tulip": 7}, odd=False)

    def cut(seed):
        _, by_role = ImageFolder(str(root), seed=seed).files()
        return {role: [p.relative_to(root).as_posix() for p, _ in pairs]
                for role, pairs in by_role.items()}  # fmt: skip

    first = cut(0)
    assert first == cut(0) and first != cut(1)
    every = [p for role in first for p in first[role]]
    assert len(every) == len(set(every)) == 39
    assert [sum(p.startswith("daisy/") for p in first[r]) for r in first] == [16, 2, 2]
    make_image_folder(root, classes=["rose"], per_class=13, odd=False)  # adds rose_012
    grown = cut(0)
    for role in first:
        assert [p for p in grown[role] if not p.startswith("rose/")] == [
            p for p in first[role] if not p.startswith("rose/")
        ]


def test_every_mode_becomes_rgb_and_16_bit_is_scaled_not_clipped(tmp_path):
    root = tmp_path / "modes"
    train = root / "train" / "a"
    train.mkdir(parents=True)
    Image.fromarray(np.full((6, 9), 32768, dtype=np.uint16)).save(train / "1_grey16.png")
    Image.new("L", (5, 5), 100).save(train / "2_grey.png")
    Image.new("RGBA", (5, 7), (200, 10, 20, 0)).save(train / "3_rgba.png")  # alpha dropped
    Image.new("RGB", (8, 8), (10, 200, 30)).convert("CMYK").save(train / "4_cmyk.jpg")
    Image.new("RGB", (4, 4), (0, 0, 255)).convert("P").save(train / "5_palette.png")
    for role in ("train", "val", "test"):
        (root / role / "b").mkdir(parents=True)
        Image.new("RGB", (3, 3), (1, 2, 3)).save(root / role / "b" / "x.png")
    splits = ImageFolder(str(root), image_size=4).load(tmp_path / "cache")
    means = splits.train.images.float().mean(dim=(2, 3))
    expected = [(128, 128, 128), (100, 100, 100), (200, 10, 20), (10, 200, 30), (0, 0, 255)]
    assert torch.allclose(means[:5], torch.tensor(expected, dtype=torch.float), atol=4)
    assert splits.train.image_sizes[:5].tolist() == [[9, 6], [5, 5], [5, 7], [8, 8], [4, 4]]


def test_a_corrupt_file_is_named_with_the_setting_that_skips_it(tmp_path):
    root = tmp_path / "flowers"
    make_image_folder(root, per_class=10, corrupt=True)
    with pytest.raises(ImageDecodeError) as err:
        ImageFolder(str(root), image_size=16).load(tmp_path / "cache")
    message = str(err.value)
    assert str(root / "daisy" / CORRUPT_NAME) in message
    assert "dataset.skip_unreadable=true" in message and "\n" not in message


def test_skip_unreadable_leaves_it_out_with_a_warning_naming_it(tmp_path, caplog):
    root = tmp_path / "flowers"
    make_image_folder(root, per_class=10, corrupt=True)
    source = ImageFolder(str(root), image_size=16, skip_unreadable=True)
    for _ in range(2):  # built, then from the cache: the warning each time
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=imf.__name__):
            splits = source.load(tmp_path / "cache")
        assert sum(splits.counts().values()) == 30  # 31 listed, the corrupt one left out
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lines) == 1 and str(root / "daisy" / CORRUPT_NAME) in lines[0]


def test_cache_hit_decodes_nothing_and_changed_content_rebuilds(flat, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = ImageFolder(str(flat), image_size=16).load(cache)
    calls = counting_decodes(monkeypatch)
    again = ImageFolder(str(flat), image_size=16).load(cache)
    assert calls == [] and torch.equal(first.train.images, again.train.images)
    make_image_folder(flat, classes=["tulip"], per_class=11)  # rewrites, adds tulip_010
    grown = ImageFolder(str(flat), image_size=16).load(cache)
    assert calls == [31] and sum(grown.counts().values()) == 31
    victim = sorted((flat / "rose").glob("*.bmp"))[0]  # same size, same mtime, new pixels
    stat = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-10:] = bytes(255 - b for b in data[-10:])
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    ImageFolder(str(flat), image_size=16).load(cache)
    assert calls == [31, 31]
    ImageFolder(str(flat), image_size=16).load(cache)
    assert calls == [31, 31]


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"split": [0.8, 0.3]}, "split=[0.8, 0.3] is invalid: 3 fractions"),
        ({"split": [0.8, 0.3, -0.1]}, "split=[0.8, 0.3, -0.1] is invalid"),
        ({"split": [0.9, 0.1, 0.0]}, "split=[0.9, 0.1, 0.0] is invalid"),
        ({"image_size": 0}, "image_size=0 is invalid"),
        ({"seed": -1}, "seed=-1 is invalid"),
        ({"skip_unreadable": "yes"}, "skip_unreadable='yes' is invalid"),
        ({"extensions": ["jpg"]}, "extensions=['jpg'] is invalid"),
        ({"root": ""}, "root='' is invalid"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_key(kwargs, start):
    with pytest.raises(ValueError) as err:
        ImageFolder(**{"root": "somewhere", **kwargs})
    assert str(err.value).startswith(start) and "\n" not in str(err.value)


def test_missing_root_through_the_config(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"^dataset\.root is missing: add dataset"):
        open_source(make_cfg("dataset=image_folder").dataset)
    cfg = make_cfg("dataset=image_folder", f"dataset.root={tmp_path}", "dataset.split=[0.8,0.3]")
    with pytest.raises(ConfigError, match=r"^dataset\.split=\[0\.8, 0\.3\] is invalid: 3 frac"):
        open_source(cfg.dataset)


def folder_errors(tmp_path):
    file = tmp_path / "a_file"
    file.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    one = tmp_path / "one"
    make_image_folder(one, classes=["daisy"], per_class=2, odd=False)
    hollow = tmp_path / "hollow"
    make_image_folder(hollow, per_class=2, odd=False)
    (hollow / "zinnia").mkdir()
    (hollow / "zinnia" / "notes.txt").write_text("no images")
    partial = tmp_path / "partial"
    make_image_folder(partial, per_class=0, splits={"train": 2, "test": 1}, odd=False)
    return [
        (tmp_path / "nowhere", "does not exist", str(tmp_path / "nowhere")),
        (file, "is a file, not a folder", str(file)),
        (empty, "has 0 class folder", str(empty)),
        (one, "has 1 class folder (daisy)", str(one)),
        (hollow, "has no images", str(hollow / "zinnia")),
        (partial, "has test/, train/ but no val/", str(partial)),
    ]


def test_folder_problems_are_one_line_naming_the_path(tmp_path):
    for root, what, path in folder_errors(tmp_path):
        with pytest.raises(DatasetNotFoundError) as err:
            ImageFolder(str(root), image_size=8).load(tmp_path / "cache")
        message = str(err.value)
        assert what in message and path in message and "\n" not in message, message


def test_through_the_config_and_load_splits(flat, cache_dir):
    cfg = make_cfg("dataset=image_folder", f"dataset.root={flat}", "dataset.image_size=32")
    assert class_count(cfg.dataset) == 3
    splits = load_splits(cfg.dataset, workers=2)
    assert splits.counts() == {"train": 24, "val": 3, "test": 3}
    assert splits.train.images.shape[-2:] == (32, 32)
    assert cfg.dataset.mean == [0.485, 0.456, 0.406] and cfg.dataset.std == [0.229, 0.224, 0.225]


def test_file_and_folder_names_that_are_not_utf8_load(tmp_path, cache_dir):
    """Names unzipped from a Windows archive (Latin-1 bytes) are valid on Linux."""
    root = tmp_path / "photos"
    make_image_folder(root, classes=("a", "b"), per_class=4, odd=False)
    odd_folder = os.fsdecode(b"r\xf6se")
    (root / "b").rename(root / odd_folder)
    first = next((root / "a").iterdir())
    first.rename(root / "a" / os.fsdecode(b"caf\xe9.jpg"))
    source = ImageFolder(str(root), image_size=16)
    assert source.class_names() == ["a", odd_folder]
    splits = source.load(cache_dir)
    assert sum(splits.counts().values()) == 8


def test_an_unreadable_file_is_left_out_before_the_cut(tmp_path, caplog):
    """A class of 3 readable images and a corrupt one keeps one image in each split,
    whichever split the cut of all four would have given the corrupt one."""
    root = tmp_path / "flowers"
    make_image_folder(root, per_class=3, odd=False, corrupt=True)  # daisy: 3 + broken.jpg
    for seed in range(6):
        source = ImageFolder(str(root), image_size=8, seed=seed, skip_unreadable=True)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=imf.__name__):
            splits = source.load(tmp_path / "cache")
        for role, split in splits.items():
            assert sorted(split.labels.tolist()) == [0, 1, 2], (seed, role)
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lines) == 1 and str(root / "daisy" / CORRUPT_NAME) in lines[0]
    _, by_role = source.files(leave_out={root / "daisy" / CORRUPT_NAME})
    assert [len(by_role[role]) for role in ("train", "val", "test")] == [3, 3, 3]


def non_utf8_file(folder, name: bytes, data: bytes):
    """A file whose name's bytes are not UTF-8, as a str path (os.fsdecode: surrogates)."""
    raw = os.path.join(os.fsencode(folder), name)
    try:
        with open(raw, "wb") as f:
            f.write(data)
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8")
    return os.fsdecode(raw)


class StrictHandler(logging.StreamHandler):
    """A log file opened strict UTF-8, as Hydra's job log is: records what fails to write
    (logging's handleError would print `--- Logging error ---` and a stack instead)."""

    def __init__(self):
        super().__init__(io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict"))
        self.failures: list[BaseException] = []

    def handleError(self, record):
        self.failures.append(sys.exc_info()[1])


def test_path_text_escapes_bytes_that_are_not_utf8():
    assert path_text(os.fsdecode(b"/data/bad\xff.jpg")) == "/data/bad\\xff.jpg"
    assert path_text(Path(os.fsdecode(b"caf\xe9/x.png"))) == "caf\\xe9/x.png"
    assert path_text("/data/café ☀.jpg") == "/data/café ☀.jpg"  # valid UTF-8: unchanged
    assert path_text("lone \ud800 surrogate") == "lone \\ud800 surrogate"


def test_a_file_name_that_is_not_utf8_is_named_readably(tmp_path):
    root = tmp_path / "flowers"
    make_image_folder(root, per_class=3, odd=False)
    good = (root / "rose" / "rose_000.jpg").read_bytes()
    non_utf8_file(root / "rose", b"caf\xe9.jpg", good)  # decodes: trained on
    non_utf8_file(root / "daisy", b"bad\xff.jpg", b"\xff\xd8\xffnot a jpeg")
    handler = StrictHandler()
    logger = logging.getLogger(imf.__name__)
    logger.addHandler(handler)
    try:
        splits = ImageFolder(str(root), image_size=8, skip_unreadable=True).load(tmp_path / "c")
    finally:
        logger.removeHandler(handler)
    assert sum(splits.counts().values()) == 10  # 9 + café, not the broken one
    assert handler.failures == []
    handler.flush()
    written = handler.stream.buffer.getvalue().decode("utf-8")
    assert f"left out unreadable image {root / 'daisy'}/bad\\xff.jpg (" in written
    with pytest.raises(ImageDecodeError) as err:  # the strict setting's error names it too
        ImageFolder(str(root), image_size=8).load(tmp_path / "c")
    message = str(err.value)
    assert f"{root / 'daisy'}/bad\\xff.jpg" in message
    message.encode("utf-8")  # printable anywhere: no surrogate left
