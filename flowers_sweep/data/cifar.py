"""CIFAR-10 and CIFAR-100 through torchvision's loaders (the official python pickles).

torchvision's `CIFAR10`/`CIFAR100` keep the files' layout (`cifar-10-batches-py/`,
`cifar-100-python/`), md5 checks and download; on top of them, a validation split is
carved from the official training set by a seeded stratified fraction
(`data.stratified`; 0.1 gives 45,000 / 5,000 / 10,000 on CIFAR-10) and the three splits
are cached as uint8 tensors. The test split is the official one.

Source: https://www.cs.toronto.edu/~kriz/cifar.html (Krizhevsky, "Learning Multiple
Layers of Features from Tiny Images", 2009).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from flowers_sweep.data.cache import cached
from flowers_sweep.data.images import to_square
from flowers_sweep.data.roles import ROLES
from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.data.stratified import check_fractions, stratified_split
from flowers_sweep.errors import DatasetNotFoundError
from flowers_sweep.paths import path_text, user_path

log = logging.getLogger(__name__)
CACHE_VERSION = 1
NATIVE_SIZE = 32  # px: CIFAR's images are 32 x 32
# The official meta files' names, in label order (batches.meta `label_names`; meta
# `fine_label_names`, alphabetical), for before the files are there.
CIFAR10_WORDS = "airplane automobile bird cat deer dog frog horse ship truck"
CIFAR100_WORDS = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy
bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach
couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house
kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain
mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate
poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"""
CIFAR10_NAMES, CIFAR100_NAMES = CIFAR10_WORDS.split(), CIFAR100_WORDS.split()


@functools.cache
def checked(name: str) -> type:
    """torchvision's `CIFAR10` or `CIFAR100` (`name`), whose md5 checks can be switched off.

    With `verify_checksums=False` the instance's file lists (`train_list`, `test_list`,
    `meta`: public class attributes) carry md5 None, which torchvision's
    `check_integrity` reads as "the file exists": no private name is overridden.
    Built on first use: importing torchvision takes about 2 s.
    """
    from torchvision import datasets

    base = getattr(datasets, name)

    class Checked(base):
        def __init__(self, *args: Any, verify_checksums: bool = True, **kwargs: Any) -> None:
            if not verify_checksums:
                self.train_list = [[f, None] for f, _ in base.train_list]
                self.test_list = [[f, None] for f, _ in base.test_list]
                self.meta = {**base.meta, "md5": None}
            super().__init__(*args, **kwargs)

    Checked.__name__ = Checked.__qualname__ = f"Checked{name}"
    return Checked


def file_digest(paths: list[Path]) -> str:
    """A sha256 over the files' names and contents (CIFAR-10: 180 MB, about 0.2 s)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


class CIFAR10:
    """`dataset=cifar10`: a data source (`data.sources`) over torchvision's `CIFAR10`.

    Args:
        root: the folder that holds `cifar-10-batches-py/` (torchvision's layout).
        download: fetch the archive (~170 MB) into root when its files are missing
            (needs internet); files already there are never replaced.
        verify_checksums: False accepts files other than the official ones (their
            md5 sums are not checked, only that they exist).
        val_fraction: the share of each class of the official training set held out
            for validation, in (0, 1).
        seed: the seed of that cut (a non-negative integer).
        image_size: side of the cached squares, px; 32 keeps the native images (no
            `image_sizes`), any other size is an antialiased bilinear resize (PIL).

    Raises:
        ValueError: an argument out of range, one line starting `key=value`.
    """

    TORCHVISION = "CIFAR10"  # the class of torchvision.datasets
    LABEL = "CIFAR-10"
    OFFICIAL_NAMES = CIFAR10_NAMES

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        verify_checksums: bool = True,
        val_fraction: float = 0.1,
        seed: int = 0,
        image_size: int = NATIVE_SIZE,
    ) -> None:
        if not isinstance(root, (str, Path)) or not str(root) or str(root) == "???":
            raise ValueError(f"root={root!r} is invalid: it must be a folder")
        for key, value in (("download", download), ("verify_checksums", verify_checksums)):
            if not isinstance(value, bool):
                raise ValueError(f"{key}={value!r} is invalid: true or false")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
            raise ValueError(f"val_fraction={val_fraction!r} is invalid: a number in (0, 1)")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction={val_fraction!r} is invalid: a number in (0, 1)")
        self.fractions = check_fractions("val_fraction", [1 - val_fraction, val_fraction], 2)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} is invalid: an integer >= 0")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size={image_size!r} is invalid: an integer >= 1 (px)")
        self.root, self.download, self.verify_checksums = str(root), download, verify_checksums
        self.val_fraction, self.seed, self.image_size = float(val_fraction), seed, image_size

    # --- the files -------------------------------------------------------------------

    @property
    def torchvision_class(self) -> type:
        return checked(self.TORCHVISION)

    def base(self) -> Path:
        """The dataset's own folder, `root/cifar-10-batches-py` (or cifar-100-python)."""
        return user_path(self.root) / self.torchvision_class.base_folder

    def paths(self) -> list[Path]:
        """Every file torchvision reads: training batches, test batch, meta file."""
        cls, base = self.torchvision_class, self.base()
        names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [base / name for name in names]

    def missing_error(self, detail: str) -> DatasetNotFoundError:
        cls = self.torchvision_class
        return DatasetNotFoundError(
            f"{self.LABEL} {detail} at {path_text(self.base())} (expected "
            f"{', '.join(p.name for p in self.paths())}): run once with dataset.download=true "
            f"(needs internet), or unpack {cls.url} into {path_text(user_path(self.root))}/, or "
            f"point dataset.root at the folder that holds {cls.base_folder}/"
        )

    def open(self, train: bool, download: bool = False) -> Any:
        """torchvision's dataset of the official training (or test) set.

        Raises:
            DatasetNotFoundError: files missing, not the official ones (with checks
                on), or a download that failed (what it made is removed).
        """
        root = user_path(self.root)
        archive = root / self.torchvision_class.filename
        first_made = next((p for p in reversed([root, *root.parents]) if not p.exists()), None)
        made = [p for p in (first_made, self.base(), archive) if p is not None and not p.exists()]
        try:
            return self.torchvision_class(
                root, train=train, download=download, verify_checksums=self.verify_checksums
            )
        except (OSError, RuntimeError) as exc:
            if download:  # offline, a proxy, a full disk, a damaged archive
                for path in made:  # leave no empty or half-filled folder that looks like data
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    elif path.exists():
                        path.unlink()
                raise DatasetNotFoundError(
                    f"dataset.download=true could not fetch {self.LABEL} "
                    f"({type(exc).__name__}: {getattr(exc, 'reason', None) or exc}); on a "
                    f"machine that can, download {self.torchvision_class.url} and unpack it "
                    f"into {path_text(root)}/, then run without dataset.download"
                ) from None
            if isinstance(exc, RuntimeError) and all(p.is_file() for p in self.paths()):
                raise DatasetNotFoundError(
                    f"{self.LABEL} at {path_text(self.base())} is not the official files (their "
                    f"md5 sums differ from torchvision's): set dataset.verify_checksums=false "
                    f"to use them, or remove them and run with dataset.download=true"
                ) from None
            raise self.missing_error(f"not found or incomplete ({exc})") from None
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
            raise DatasetNotFoundError(
                f"{self.LABEL} at {self.base()} cannot be read as the python version's "
                f"pickled batches ({type(exc).__name__}: {exc})"
            ) from None

    def ensure_files(self) -> None:
        """Download the files where they are missing and `download` is set.

        Raises:
            DatasetNotFoundError: a file is missing (without download, or after one).
        """
        if all(p.is_file() for p in self.paths()):
            return
        if not self.download:
            lacking = [p.name for p in self.paths() if not p.is_file()]
            raise self.missing_error(f"not found or incomplete (no {lacking[0]})")
        self.open(train=False, download=True)

    def class_names(self) -> list[str]:
        """The class names of the meta file (torchvision's `.classes`), in label order.

        Reads only that small file. Before the files are there (a config being checked,
        a download still to come) the official release's names stand in: nothing is
        fetched here, and `load` names the missing files.
        """
        meta = self.torchvision_class.meta
        if not (self.base() / meta["filename"]).is_file():
            return list(self.OFFICIAL_NAMES)
        try:
            with open(self.base() / meta["filename"], "rb") as f:
                names = pickle.load(f, encoding="latin1")[meta["key"]]
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as exc:
            raise DatasetNotFoundError(
                f"{self.LABEL} meta file {path_text(self.base() / meta['filename'])} has no "
                f"class names under {meta['key']!r} ({type(exc).__name__}: {exc})"
            ) from None
        return [str(n) for n in names]

    # --- loading ---------------------------------------------------------------------

    def load(self, cache_dir: Path, workers: int = 1) -> Splits:
        """train / val (carved from the official training set) / the official test set.

        Returns Splits of (N, 3, image_size, image_size) uint8 images, (N,) int64 labels,
        and image_sizes None at 32 px, else (N, 2) int64 (32, 32).

        Raises:
            DatasetNotFoundError: as `open`.
        """
        self.ensure_files()
        spec = {
            "version": CACHE_VERSION,
            "files": file_digest(self.paths()),
            "verify_checksums": self.verify_checksums,  # a check on must see the files
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "image_size": self.image_size,
        }

        def build() -> dict:
            official = {part: self.open(train=part == "train") for part in ("train", "test")}
            labels = np.asarray(official["train"].targets, dtype=np.int64)
            cut = stratified_split(labels, self.fractions, self.seed)
            rows = {"train": cut[0], "val": cut[1], "test": None}
            entry = {}
            for role in ROLES:
                source = official["test" if role == "test" else "train"]
                data, targets = source.data, np.asarray(source.targets, dtype=np.int64)
                if rows[role] is not None:
                    data, targets = data[rows[role]], targets[rows[role]]
                log.info("caching %d %s images of %s", len(data), role, self.LABEL)
                images, sizes = self.squares(data)
                entry[role] = (images, torch.from_numpy(targets), sizes)
            return entry

        prefix = f"{self.TORCHVISION.lower()}-{self.image_size}"
        entry = cached(cache_dir, prefix, spec, build)
        parts = [Split(*entry[role]) for role in ROLES]
        return Splits(*parts, class_names=self.class_names())

    def squares(self, data: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, 32, 32, 3) uint8 as (N, 3, S, S) uint8, and (N, 2) original sizes (None
        at the native size)."""
        if self.image_size == NATIVE_SIZE:
            return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2))), None
        out = np.empty((len(data), 3, self.image_size, self.image_size), dtype=np.uint8)
        for i, pixels in enumerate(data):
            out[i], _ = to_square(Image.fromarray(pixels), self.image_size)
        sizes = torch.full((len(data), 2), NATIVE_SIZE, dtype=torch.int64)
        return torch.from_numpy(out), sizes


class CIFAR100(CIFAR10):
    """`dataset=cifar100`: as `CIFAR10`, over torchvision's `CIFAR100` (the 100 fine
    labels; files in `root/cifar-100-python/`)."""

    TORCHVISION = "CIFAR100"
    LABEL = "CIFAR-100"
    OFFICIAL_NAMES = CIFAR100_NAMES
