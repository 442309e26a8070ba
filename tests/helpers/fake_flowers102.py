"""A Flowers102 tree in torchvision's layout, drawn from synthetic flowers.

For tests and benchmarks that must run offline: the real loader, checks and cache run
over it unchanged. With the official `imagelabels.mat` and `setid.mat` it has the real
split sizes; without them it writes small label and split files of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import loadmat, savemat

from flowers_sweep.data.synthetic import draw_flowers, flower_classes

CLASSES = 102


def write_mats(base: Path, per_split: int) -> None:
    """Label and split files for `per_split` images a split, ids 1..3*per_split."""
    n = 3 * per_split
    labels = (np.arange(n) % CLASSES) + 1
    ids = np.random.default_rng(0).permutation(np.arange(1, n + 1))
    savemat(base / "imagelabels.mat", {"labels": labels[None, :]})
    savemat(
        base / "setid.mat",
        {
            "trnid": np.sort(ids[:per_split])[None, :],
            "valid": np.sort(ids[per_split : 2 * per_split])[None, :],
            "tstid": np.sort(ids[2 * per_split :])[None, :],
        },
    )


def write_tree(
    root: Path,
    official_mats: Path | None = None,
    per_split: int = 10,
    size: int = 24,
    upscale_to: tuple[int, int] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> Path:
    """Write <root>/flowers-102/{jpg/, imagelabels.mat, setid.mat}; returns the base folder.

    Images are drawn at `size` and, with `upscale_to` (w, h), enlarged with a little
    noise so they weigh about as much as the real JPEGs. `limit` writes only the first
    ids, for a partial tree.
    """
    base = Path(root) / "flowers-102"
    (base / "jpg").mkdir(parents=True, exist_ok=True)
    if official_mats is not None:
        for name in ("imagelabels.mat", "setid.mat"):
            shutil.copyfile(Path(official_mats) / name, base / name)
    else:
        write_mats(base, per_split)
    labels = loadmat(base / "imagelabels.mat", squeeze_me=True)["labels"] - 1
    n = len(labels) if limit is None else min(limit, len(labels))
    classes = flower_classes(CLASSES)
    rng = np.random.default_rng(seed)
    for lo in range(0, n, 256):
        chunk = draw_flowers(labels[lo : min(lo + 256, n)], classes, size, 0.04, rng)
        for i, img in enumerate(chunk.transpose(0, 2, 3, 1)):
            pil = Image.fromarray(img)
            if upscale_to is not None:
                big = np.asarray(pil.resize(upscale_to, Image.Resampling.BICUBIC), dtype=float)
                big += rng.normal(0, 3, size=big.shape)
                pil = Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))
            pil.save(base / "jpg" / f"image_{lo + i + 1:05d}.jpg", quality=90)
    return base
