"""`dataset=image_folder`: your own images, one folder per class.

Two layouts, told apart by the folders directly under `root` (hidden ones aside):

- **split** (layout A): exactly `train/`, `val/` and `test/`, each holding one folder per
  class. The classes are train/'s; a class may be missing from val/ or test/, but a class
  folder there with no namesake in train/ is an error.
- **flat** (layout B): anything else; `root`'s folders are the classes, cut into
  train/val/test by the seeded stratified fractions `split` (`data.stratified`). Files
  that do not decode (with skip_unreadable) are left out before the cut, so a class with
  3 readable images or more has one in each split whatever became of the others.

Only those exact names make layout A (no `valid/`, no `training/`); a root that has some
of the three names but not all, or others beside them, is an error rather than a guess.

As torchvision's `ImageFolder`: class names are the sorted folder names and a label is
the index of its name; the images are the files under a class folder, at any depth, whose
extension (any case) is in `IMG_EXTENSIONS`; hidden files and folders are skipped. Every
image, of any size and mode, becomes an RGB square of `image_size` px (`load_resized`),
its original size kept in `image_sizes`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowers_sweep.data.cache import cached
from flowers_sweep.data.flowers102 import decode_all
from flowers_sweep.data.images import load_rgb
from flowers_sweep.data.roles import ROLES
from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.data.stratified import check_fractions, stratified_split
from flowers_sweep.errors import DatasetNotFoundError, ImageDecodeError
from flowers_sweep.paths import path_text, user_path

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: unreadable files left out before the flat layout's cut
# torchvision.datasets.folder.IMG_EXTENSIONS, written out because importing torchvision
# takes about 2 s (tests/test_image_folder.py checks the two agree).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MISSING = "???"  # OmegaConf's mark for a mandatory value nobody gave
HELP = "a folder of class folders, or train/ val/ test/ of class folders"
SKIP_HINT = "add dataset.skip_unreadable=true to leave such files out"
Pair = tuple[Path, int]  # an image file and its label


def visible(path: Path) -> bool:
    return not path.name.startswith(".")


def subfolders(folder: Path) -> list[str]:
    """The sorted names of `folder`'s visible subfolders."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and visible(p))


def image_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """The images under `folder` at any depth, sorted; hidden files and folders skipped."""
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        hidden = any(p.startswith(".") for p in parts)
        if not hidden and path.suffix.lower() in extensions and path.is_file():
            found.append(path)
    return sorted(found)


def content_digest(root: Path, files: Sequence[Path], workers: int) -> str:
    """A sha256 over each file's path relative to root, size and content (sha256).

    Hashing reads each file once at about 1 GB/s, tens of times faster than decoding it,
    so a changed, added or removed image changes the digest whatever its timestamps say.
    """

    def one(path: Path) -> bytes:
        data = path.read_bytes()
        name = os.fsencode(path.relative_to(root).as_posix())  # any bytes a name may hold
        return name + f"\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n".encode()

    with ThreadPoolExecutor(max(1, workers)) as pool:  # hashlib releases the GIL
        lines = list(pool.map(one, files))
    return hashlib.sha256(b"".join(lines)).hexdigest()


def unreadable(files: Sequence[Path], workers: int) -> list[tuple[Path, str]]:
    """The files that do not decode, each with PIL's reason (one line)."""

    def check(path: Path) -> str | None:
        try:
            load_rgb(path)
        except ImageDecodeError as exc:
            return (str(exc.__cause__ or exc).strip().splitlines() or ["unreadable"])[0]
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(pool.map(check, files))
    return [(f, r) for f, r in zip(files, reasons, strict=True) if r is not None]


class ImageFolder:
    """`dataset=image_folder`: a data source (`data.sources`) over folders of images.

    Args:
        root: the folder (module docstring: layout A or B).
        image_size: side of the cached RGB squares, px.
        split: train/val/test fractions for layout B, each > 0, summing to 1 (ignored
            by layout A); the rule is `data.stratified`'s.
        seed: the seed of layout B's cut (a non-negative integer).
        skip_unreadable: False: a file that does not decode stops the load, naming it;
            True: it is left out with one warning line naming it.
        extensions: the image extensions (with the dot, any case); None: torchvision's.

    Raises:
        ValueError: an argument out of range, one line starting `key=value`.
        DatasetNotFoundError: no root (the config's `???`): `dataset.root is missing:
            add dataset.root=DIR (...)`, a line of its own (a ValueError would be
            reworded as the constructor refusing the config's values).
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 224,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        skip_unreadable: bool = False,
        extensions: Sequence[str] | None = None,
    ) -> None:
        if root is None or root == MISSING:  # Hydra leaves a `???` root out altogether
            raise DatasetNotFoundError(f"dataset.root is missing: add dataset.root=DIR ({HELP})")
        if isinstance(root, bool) or not isinstance(root, (str, Path, int)) or root == "":
            raise ValueError(f"root={root!r} is invalid: it must be a folder ({HELP})")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size={image_size!r} is invalid: an integer >= 1 (px)")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} is invalid: an integer >= 0")
        if not isinstance(skip_unreadable, bool):
            raise ValueError(f"skip_unreadable={skip_unreadable!r} is invalid: true or false")
        if extensions is not None and (
            isinstance(extensions, str)
            or not extensions
            or not all(isinstance(e, str) and len(e) > 1 and e[0] == "." for e in extensions)
        ):
            shown = list(extensions) if isinstance(extensions, (list, tuple)) else extensions
            raise ValueError(
                f"extensions={shown!r} is invalid: a list of file extensions with the dot "
                f"([.jpg, .png]), or null for torchvision's"
            )
        self.root = str(root)
        self.image_size = image_size
        self.split = check_fractions("split", split, 3)
        self.seed = seed
        self.skip_unreadable = skip_unreadable
        self.extensions = tuple(e.lower() for e in extensions or IMG_EXTENSIONS)

    # --- listing -----------------------------------------------------------------------

    def folder(self) -> Path:
        """The root, checked to be a folder.

        Raises:
            DatasetNotFoundError: it does not exist or is a file.
        """
        path = user_path(self.root)
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "does not exist"
            raise DatasetNotFoundError(
                f"image folder {path_text(path)} {what}: point dataset.root at {HELP}"
            )
        return path

    def layout(self) -> tuple[Path, dict[str, Path]]:
        """The root and, for layout A, each split's folder ({} for layout B).

        Raises:
            DatasetNotFoundError: the root has some of train/ val/ test/ but not just them.
        """
        root = self.folder()
        names = subfolders(root)
        roles = [n for n in names if n in ROLES]
        if roles and names != sorted(ROLES):
            lacking = [f"{r}/" for r in ROLES if r not in names]
            others = [f"{n}/" for n in names if n not in ROLES]
            why = f"no {', '.join(lacking)}" if lacking else f"also {', '.join(others)}"
            raise DatasetNotFoundError(
                f"image folder {path_text(root)} has {', '.join(r + '/' for r in roles)} but "
                f"{path_text(why)}: give exactly train/ val/ test/ (each of class folders), "
                f"or point dataset.root at one folder of class folders to cut by dataset.split"
            )
        return root, ({r: root / r for r in ROLES} if roles else {})

    def class_names(self) -> list[str]:
        """Sorted class folder names (a folder listing; no image is read).

        Raises:
            DatasetNotFoundError: no root, fewer than 2 class folders, or (layout A) a
                class folder in val/ or test/ that train/ lacks.
        """
        root, splits = self.layout()
        where = splits.get("train", root)
        names = subfolders(where)
        if len(names) < 2:
            listed = f" ({', '.join(names)})" if names else ""
            raise DatasetNotFoundError(
                f"image folder {path_text(where)} has {len(names)} class folder"
                f"{path_text(listed)}: a classifier needs at least 2 (expected {HELP})"
            )
        for role in ("val", "test"):
            if role in splits:
                extra = [n for n in subfolders(splits[role]) if n not in names]
                if extra:
                    raise DatasetNotFoundError(
                        f"image folder {path_text(splits[role] / extra[0])} is a class that "
                        f"{path_text(splits['train'])} lacks: every val/ and test/ class "
                        f"folder needs a train/ folder of the same name"
                    )
        return names

    def listing(self) -> tuple[Path, dict[str, list[Pair]] | list[Pair]]:
        """The root and its (file, label) pairs in path order: layout A's by split (a
        dict), layout B's all together, before its cut (a list).

        Raises:
            DatasetNotFoundError: as `class_names`, or a train class (layout B: any
                class) folder with no image.
        """
        names = self.class_names()
        root, splits = self.layout()

        def listed(folder: Path, role: str) -> list[Pair]:
            found = []
            for label, name in enumerate(names):
                here = folder / name
                files = image_files(here, self.extensions) if here.is_dir() else []
                if not files and role == "train":
                    raise DatasetNotFoundError(
                        f"class folder {path_text(here)} has no images (files ending "
                        f"{', '.join(self.extensions)}, any case): add some or remove it"
                    )
                found += [(f, label) for f in files]
            return found

        if splits:
            return root, {role: listed(splits[role], role) for role in ROLES}
        return root, listed(root, "train")

    def assign(
        self, listed: dict[str, list[Pair]] | list[Pair], leave_out: Collection[Path] = ()
    ) -> dict[str, list[Pair]]:
        """Each split's pairs from `listing`'s, without the files in `leave_out`: layout
        A's as they are, layout B's cut (`stratified_split`) after they are left out."""
        if isinstance(listed, dict):
            return {role: [p for p in listed[role] if p[0] not in leave_out] for role in ROLES}
        pairs = [p for p in listed if p[0] not in leave_out]
        labels = np.array([label for _, label in pairs], dtype=np.int64)
        parts = stratified_split(labels, self.split, self.seed)
        return {role: [pairs[i] for i in part] for role, part in zip(ROLES, parts, strict=True)}

    def files(self, leave_out: Collection[Path] = ()) -> tuple[Path, dict[str, list[Pair]]]:
        """The root and each split's (file, label) pairs, in path order, the files in
        `leave_out` (unreadable ones) left out before layout B's cut.

        Raises:
            DatasetNotFoundError: as `listing`.
        """
        root, listed = self.listing()
        return root, self.assign(listed, leave_out)

    # --- loading -----------------------------------------------------------------------

    def load(self, cache_dir: Path, workers: int = 1) -> Splits:
        """The three splits, decoded once into the cache (keyed by the files' content).

        Returns Splits of (N, 3, image_size, image_size) uint8 images, (N,) int64 labels
        and (N, 2) int64 original (width, height).

        Raises:
            DatasetNotFoundError: as `files`.
            ImageDecodeError: a file does not decode and skip_unreadable is false (names
                the file and the setting that leaves it out).
        """
        names = self.class_names()
        root, listed = self.listing()
        flat = not isinstance(listed, dict)
        pairs = listed if flat else [p for role in ROLES for p in listed[role]]
        every = [f for f, _ in pairs]
        spec = {
            "version": CACHE_VERSION,
            "files": content_digest(root, every, workers),  # paths, sizes and contents
            "layout": "flat" if flat else "split",
            "image_size": self.image_size,
            "split": list(self.split) if flat else None,  # layout A ignores them
            "seed": self.seed if flat else None,
            "skip_unreadable": self.skip_unreadable,
            "extensions": list(self.extensions),
        }

        def build() -> dict:
            log.info(
                "decoding %d images of %s at %d px", len(every), path_text(root), self.image_size
            )
            return self.decode(root, listed, workers)

        entry = cached(cache_dir, f"image_folder-{self.image_size}", spec, build)
        for path, reason in entry["skipped"]:  # on every load, not only the first
            log.warning(
                "left out unreadable image %s (%s)", path_text(root / path), path_text(reason)
            )
        parts = [Split(*entry[role]) for role in ROLES]
        return Splits(*parts, class_names=names)

    def decode(self, root: Path, listed: dict[str, list[Pair]] | list[Pair], workers: int) -> dict:
        """Each role's (images, labels, sizes), and the [relative path, reason] pairs left out.

        One threaded pass (`decode_all`) in the common case. When a file fails and
        skip_unreadable is set, every file is tried once more to find all that fail, and
        the rest are cut (layout B) and decoded again: up to three passes, once, when the
        cache is built.
        """
        by_role = self.assign(listed)
        every = [f for role in ROLES for f, _ in by_role[role]]
        bad: dict[Path, str] = {}
        try:
            images, sizes = decode_all(every, self.image_size, workers)
        except ImageDecodeError as exc:
            if not self.skip_unreadable:
                raise ImageDecodeError(f"{str(exc).splitlines()[0]}; {SKIP_HINT}") from None
            bad = dict(unreadable(every, workers))
            by_role = self.assign(listed, leave_out=bad)
            every = [f for role in ROLES for f, _ in by_role[role]]
            images, sizes = decode_all(every, self.image_size, workers)
        skipped = sorted([p.relative_to(root).as_posix(), why] for p, why in bad.items())
        entry: dict[str, Any] = {"skipped": skipped}
        start = 0
        for role in ROLES:
            n = len(by_role[role])
            labels = torch.tensor([y for _, y in by_role[role]], dtype=torch.int64)
            entry[role] = (images[start : start + n], labels, sizes[start : start + n])
            start += n
        return entry
