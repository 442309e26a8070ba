"""Oxford Flowers102 through torchvision's loader, with the report's split swap.

torchvision's `Flowers102` keeps the dataset's layout, integrity checks and download;
on top of it we decode each image once into a uint8 cache (`pipeline=cached`), or keep
the report's per-image transform pipeline (`pipeline=reference`) for comparison.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowers_sweep.data.cache import cached
from flowers_sweep.data.images import load_resized, load_rgb
from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.errors import DatasetNotFoundError
from flowers_sweep.paths import path_text, user_path

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: full decode, and each image's original size
OFFICIAL_SPLITS = ("train", "val", "test")
# One process can run many jobs of a sweep (Hydra's basic launcher): keep each decoded
# split, one image size at a time, so later jobs skip even the disk read.
_MEMORY: dict[tuple[str, str], tuple[tuple, Split]] = {}


@functools.cache
def checked_flowers102() -> type:
    """torchvision's Flowers102, whose md5 checks can be switched off.

    A tree with other label or split files (a test's miniature, a curated subset) then
    loads as long as the files exist. Built on first use: importing torchvision takes
    about 2 s, which every run on the synthetic data would otherwise pay at start-up.
    """
    from torchvision.datasets import Flowers102

    class CheckedFlowers102(Flowers102):
        def __init__(self, *args: Any, verify_checksums: bool = True, **kwargs: Any) -> None:
            self._verify_checksums = verify_checksums
            super().__init__(*args, **kwargs)

        def _check_integrity(self) -> bool:
            if self._verify_checksums:
                return super()._check_integrity()
            files = [self._base_folder / name for name, _ in self._file_dict.values()][1:]
            return self._images_folder.is_dir() and all(f.is_file() for f in files)

    return CheckedFlowers102


def open_split(cfg: Any, official: str, **kwargs: Any) -> Any:
    """torchvision's dataset for one official split, or an error saying how to get it."""
    root = user_path(cfg.root)
    base = root / "flowers-102"
    made = next((p for p in reversed([base, *base.parents]) if not p.exists()), None)
    try:
        return checked_flowers102()(
            root,
            split=official,
            download=cfg.download,
            verify_checksums=cfg.verify_checksums,
            loader=load_rgb,
            **kwargs,
        )
    except OSError as exc:  # the download failed: offline, a proxy, a full disk
        if made is not None:  # leave no empty or half-filled folder that looks like data
            shutil.rmtree(made, ignore_errors=True)
        url = getattr(checked_flowers102(), "_download_url_prefix", "")
        raise DatasetNotFoundError(
            f"dataset.download=true could not fetch Flowers102 ({type(exc).__name__}: "
            f"{getattr(exc, 'reason', None) or exc}); on a machine that can, download "
            f"102flowers.tgz, imagelabels.mat and setid.mat from {url} into {path_text(base)}/ "
            f"and unpack the .tgz there, then run without dataset.download"
        ) from None
    except RuntimeError as exc:
        raise DatasetNotFoundError(
            f"Flowers102 not found or incomplete at {path_text(base)} (expected jpg/, "
            f"imagelabels.mat, setid.mat; {path_text(str(exc))}): run once with "
            f"dataset.download=true, or put the files there, or point dataset.root at the "
            f"folder that holds flowers-102/"
        ) from exc


def split_files_digest(dataset: Any) -> str:
    """A hash of the label and split files' content: a changed split with the same image
    counts must not be served the images and labels of the old one."""
    digest = hashlib.sha256()
    for name in ("imagelabels.mat", "setid.mat"):
        digest.update((dataset._base_folder / name).read_bytes())
    return digest.hexdigest()[:16]


def decode_all(files: list[Path], size: int, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode and resize every file once; PIL releases the GIL, so threads scale.

    Returns the images and each one's original (width, height), which the augmentation
    needs to apply the report's rotation of the full-size photo to the squashed square.
    """
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    sizes = np.empty((len(files), 2), dtype=np.int64)

    def work(i: int) -> None:
        out[i], sizes[i] = load_resized(files[i], size)

    if workers <= 1:
        for i in range(len(files)):
            work(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(len(files))))
    return torch.from_numpy(out), torch.from_numpy(sizes)


def load_split(cfg: Any, role: str, workers: int, cache_dir: Path) -> Split:
    """The cached uint8 form of the official split mapped to `role` (train/val/test)."""
    official = cfg.splits[role]
    dataset = open_split(cfg, official)
    files = [Path(f) for f in dataset._image_files]
    root = str(user_path(cfg.root).resolve())
    key = (cfg.image_size, len(files), split_files_digest(dataset))
    held = _MEMORY.get((root, official))
    if held is not None and held[0] == key:
        return held[1]
    spec = {
        "version": CACHE_VERSION,
        "root": root,
        "split": official,
        "size": cfg.image_size,
        "files": len(files),
        "split_files": key[2],
    }

    def build() -> dict:
        log.info("decoding %d images of split %r at %d px", len(files), official, cfg.image_size)
        images, sizes = decode_all(files, cfg.image_size, workers)
        labels = torch.tensor(dataset._labels, dtype=torch.int64)
        return {"images": images, "labels": labels, "sizes": sizes}

    entry = cached(cache_dir, f"flowers102-{official}-{cfg.image_size}", spec, build)
    split = Split(entry["images"], entry["labels"], entry["sizes"])
    _MEMORY[(root, official)] = (key, split)
    return split


def class_names() -> list[str]:
    return list(checked_flowers102().classes)


class Flowers102:
    """`dataset=flowers102`: a data source (`data.sources`) over torchvision's loader.

    Args:
        root: the folder that holds flowers-102/ (torchvision's layout).
        download: fetch the ~330 MB archive into root once (needs internet).
        verify_checksums: False accepts label/split files other than the official ones.
        splits: which official split serves each role ({"train": "test", ...}: the
            report's swap); default the official roles.
        image_size: side of the cached squares, px.

    Raises:
        ValueError: a role mapped to something that is not an official split.
    """

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        verify_checksums: bool = True,
        splits: dict[str, str] | None = None,
        image_size: int = 224,
    ) -> None:
        self.splits = dict(splits or {r: r for r in OFFICIAL_SPLITS})
        for role in OFFICIAL_SPLITS:
            if self.splits.get(role) not in OFFICIAL_SPLITS:
                raise ValueError(
                    f"splits.{role}={self.splits.get(role)!r} is invalid: it must name an "
                    f"official split: train, val or test"
                )
        if not isinstance(root, str) or not root:
            raise ValueError(f"root={root!r} is invalid: it must be a path")
        self.root, self.download, self.verify_checksums = root, download, verify_checksums
        self.image_size = image_size

    def class_names(self) -> list[str]:
        return class_names()

    def load(self, cache_dir: Path, workers: int = 1) -> Splits:
        """The three roles' official splits, decoded once into the cache."""
        parts = [load_split(self, role, workers, cache_dir) for role in OFFICIAL_SPLITS]
        return Splits(*parts, class_names=class_names())


def reference_transform(cfg: Any, augment: Any, train: bool) -> Any:
    """The report's per-image pipeline, in its order: augment, ToTensor, Normalize, Resize;
    then the moves added since (a padded or resized crop, a horizontal flip) on the square
    the report's pipeline ends with, as the cached pipeline applies them."""
    from torchvision import transforms as T

    steps: list[Any] = [T.Grayscale(num_output_channels=3)] if augment.grayscale else []
    if train:
        steps += [T.RandomVerticalFlip(augment.vflip_p), T.RandomRotation(augment.rotation)]
    steps += [
        T.ToTensor(),
        T.Normalize(list(cfg.mean), list(cfg.std)),
        T.Resize((cfg.image_size, cfg.image_size)),
    ]
    if train:  # the moves added since the report, on the square, in the cached order
        size, scale = cfg.image_size, augment.get("resized_crop_scale")
        if augment.get("crop_padding", 0) > 0:
            steps.append(T.RandomCrop(size, padding=augment.crop_padding))
        elif scale is not None:
            ratio = tuple(augment.get("resized_crop_ratio", (3 / 4, 4 / 3)))
            steps.append(T.RandomResizedCrop(size, scale=tuple(scale), ratio=ratio))
        if augment.get("hflip_p", 0) > 0:
            steps.append(T.RandomHorizontalFlip(augment.hflip_p))
    return T.Compose(steps)
