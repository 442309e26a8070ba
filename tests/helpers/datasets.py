"""Datasets on disk in their real formats, drawn from synthetic flowers, for offline tests.

`make_image_folder` writes a folder of class folders (or train/ val/ test/ of them) with
the awkward files real folders hold: greyscale, RGBA, CMYK JPEG, 16-bit PNG, palette,
odd sizes, upper-case extensions, hidden and non-image files, optionally a corrupt one.
`make_cifar` writes CIFAR-10 or CIFAR-100 in the official python-pickle format, which
torchvision's loader reads once its md5 checks are off.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from flowers_sweep.data.synthetic import draw_flowers, flower_classes

CLASSES = ("daisy", "rose", "tulip")
# (PIL mode, file suffix, size (w, h)) cycled over each class's images when `odd`.
ODD = (
    ("RGB", ".jpg", (37, 53)),
    ("L", ".png", (48, 48)),
    ("RGBA", ".png", (64, 40)),
    ("CMYK", ".jpg", (41, 41)),
    ("I;16", ".png", (30, 45)),
    ("P", ".png", (52, 36)),
    ("RGB", ".JPEG", (80, 60)),
    ("RGB", ".bmp", (33, 33)),
)
CORRUPT_NAME = "broken.jpg"
CIFAR_FILES = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", "label_names"),
        "labels": "labels",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", "fine_label_names"),
        "labels": "fine_labels",
    },
}


def flower_pixels(labels: Sequence[int], size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) uint8 photo-like images, one flower of class labels[i] each."""
    labels = np.asarray(labels, dtype=np.int64)
    classes = flower_classes(max(2, int(labels.max(initial=0)) + 1))
    rng = np.random.default_rng(seed)
    return draw_flowers(labels, classes, size, 0.04, rng).transpose(0, 2, 3, 1)


def save_as(pixels: np.ndarray, path: Path, mode: str, size: tuple[int, int]) -> None:
    """Write an (h, w, 3) uint8 image at `size` (w, h) in PIL `mode` to `path`."""
    img = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
    if mode == "I;16":  # greyscale spread over 0..65535, as a 16-bit scan stores it
        grey = np.asarray(img.convert("L"), dtype=np.uint16) * 257
        img = Image.fromarray(grey)  # uint16: mode I;16
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    else:
        img = img.convert(mode)
    img.save(path)


def make_image_folder(
    root: Path,
    classes: Sequence[str] = CLASSES,
    per_class: int | Mapping[str, int] = 10,
    odd: bool = True,
    corrupt: bool = False,
    splits: Mapping[str, int] | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write images under `root`; returns the image files written, sorted.

    Args:
        classes: the class folder names.
        per_class: images per class (a mapping: per class name).
        odd: cycle through the modes, formats and sizes of `ODD`, and add a hidden file
            and a text file that are not images; False: 32 x 32 RGB JPEGs only.
        corrupt: also write `CORRUPT_NAME`, a JPEG cut short, in the first class (it is
            not in the returned list).
        splits: {"train": n, "val": n, "test": n} writes layout A, `root/<split>/<class>/`
            with n images a class; None writes layout B, `root/<class>/`.
    """
    root = Path(root)
    written = []
    jobs = [(split, n) for split, n in splits.items()] if splits else [(None, None)]
    for s, (split, n_split) in enumerate(jobs):
        for label, name in enumerate(classes):
            n = (
                n_split
                if n_split is not None
                else (per_class[name] if isinstance(per_class, Mapping) else per_class)
            )
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            pixels = flower_pixels([label] * n, 64, seed=seed + 1000 * s + label)
            for i in range(n):
                mode, suffix, size = ODD[i % len(ODD)] if odd else ("RGB", ".jpg", (32, 32))
                path = folder / f"{name}_{i:03d}{suffix}"
                save_as(pixels[i], path, mode, size)
                written.append(path)
            if odd:
                (folder / ".DS_Store").write_bytes(b"\0\1not an image")
                (folder / "notes.txt").write_text("not an image\n")
    if corrupt:
        first = root / (next(iter(splits)) if splits else "") / classes[0]
        good = (first / f"{classes[0]}_000.jpg").read_bytes() if odd else b""
        (first / CORRUPT_NAME).write_bytes(good[: len(good) // 3] or b"\xff\xd8\xffnot a jpeg")
    return sorted(written)


def make_cifar(
    root: Path,
    kind: str = "cifar10",
    train_per_class: int = 50,
    test_per_class: int = 10,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write CIFAR-10 or CIFAR-100 (`kind`) under `root` in the official pickle format:
    `cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}` or
    `cifar-100-python/{train, test, meta}`. Each batch is a dict with `data` (n, 3072)
    uint8 (channel planes, rows of 32) and `labels` (CIFAR-100: `fine_labels` and
    `coarse_labels`); the meta file names the classes. Returns the dataset's folder.

    The files are not the official ones, so torchvision's md5 checks refuse them.
    """
    files = CIFAR_FILES[kind]
    count = 10 if kind == "cifar10" else 100
    names = list(class_names or [f"class_{k:02d}" for k in range(count)])
    base = Path(root) / files["folder"]
    base.mkdir(parents=True, exist_ok=True)
    for part, per_class in (("train", train_per_class), ("test", test_per_class)):
        rng = np.random.default_rng([seed, part == "test"])
        labels = rng.permutation(np.repeat(np.arange(count), per_class))
        data = flower_pixels(labels, 32, seed=seed + (part == "test")).transpose(0, 3, 1, 2)
        data = data.reshape(len(labels), 3 * 32 * 32)
        batches = np.array_split(np.arange(len(labels)), len(files[part]))
        for name, rows in zip(files[part], batches, strict=True):
            batch = {
                "batch_label": f"generated {name}",
                files["labels"]: [int(y) for y in labels[rows]],
                "data": np.ascontiguousarray(data[rows]),
                "filenames": [f"generated_{int(i):05d}.png" for i in rows],
            }
            if kind == "cifar100":
                batch["coarse_labels"] = [int(y) // 5 for y in labels[rows]]
            with open(base / name, "wb") as f:
                pickle.dump(batch, f)
    meta_file, key = files["meta"]
    meta = {key: names}
    if kind == "cifar100":
        meta["coarse_label_names"] = [f"super_{k:02d}" for k in range(20)]
    with open(base / meta_file, "wb") as f:
        pickle.dump(meta, f)
    return base
