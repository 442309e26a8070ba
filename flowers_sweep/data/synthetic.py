"""Synthetic flowers: a learnable, offline stand-in for Flowers102.

Each class is a rule (petal count, petal shape, petal colour); each image draws that
flower with its own pose, scale, position, colour jitter, background and noise. Classes
share attributes pairwise (two classes with five petals, two that are crimson), so no
single cue gives the label away and a model has to combine them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowers_sweep.data.cache import cached
from flowers_sweep.data.roles import ROLES
from flowers_sweep.data.splits import Split, Splits

GENERATOR_VERSION = 1
PETAL_COUNTS = (5, 3, 8, 4, 6, 7)
PETAL_SHAPES = ("round", "pointed", "notched", "slender")
PETAL_COLOURS = {
    "crimson": (200, 30, 50),
    "sun": (245, 200, 40),
    "violet": (140, 60, 200),
    "white": (235, 235, 225),
    "coral": (250, 120, 90),
    "sky": (90, 150, 240),
    "pink": (240, 130, 190),
    "orange": (240, 140, 20),
}
CENTRE_COLOURS = ((110, 70, 20), (250, 220, 60), (60, 40, 30))
CHUNK = 256  # images drawn per vectorised step; fixed so output never depends on it
MAX_CLASSES = len(PETAL_COUNTS) * len(PETAL_SHAPES) * len(PETAL_COLOURS)  # one per rule


@dataclass(frozen=True)
class FlowerClass:
    petals: int
    shape: str
    colour: str

    @property
    def name(self) -> str:
        return f"{self.colour}-{self.shape}-{self.petals}"


def flower_classes(num_classes: int) -> list[FlowerClass]:
    """A fixed, attribute-balanced ordering of the (petals, shape, colour) rules.

    The first rules walk the grid diagonally, so consecutive classes differ in every
    attribute yet each attribute value recurs; further classes come in grid order.
    """
    colours = list(PETAL_COLOURS)
    grid = list(itertools.product(PETAL_COUNTS, PETAL_SHAPES, colours))
    if not 2 <= num_classes <= len(grid):
        raise ValueError(f"num_classes={num_classes} must be in 2..{len(grid)}")
    diagonal = [
        (
            PETAL_COUNTS[k % len(PETAL_COUNTS)],
            PETAL_SHAPES[k % len(PETAL_SHAPES)],
            colours[(k // 2) % len(colours)],
        )
        for k in range(48)
    ]
    ordered = list(dict.fromkeys(diagonal + grid))
    return [FlowerClass(*rule) for rule in ordered[:num_classes]]


def _petal_profile(shape: str, u: np.ndarray) -> np.ndarray:
    """Petal radius (0..1) across one petal's angular sector, u in [-1, 1]."""
    if shape == "round":
        return np.sqrt(np.clip(1 - u**2, 0, 1))
    if shape == "pointed":
        return np.clip(1 - np.abs(u), 0, 1) ** 0.6
    if shape == "notched":
        return np.sqrt(np.clip(1 - u**2, 0, 1)) * (1 - 0.45 * np.exp(-((u / 0.18) ** 2)))
    return np.clip(1 - u**2, 0, 1) ** 4  # slender


def draw_flowers(
    labels: np.ndarray, classes: list[FlowerClass], size: int, noise: float, rng
) -> np.ndarray:
    """(n, 3, size, size) uint8 images, one flower of class labels[i] each."""
    n = len(labels)
    grid = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    # Background: a random two-colour gradient, greenish-brown like foliage and soil.
    base = rng.uniform([20, 50, 10], [120, 160, 90], size=(n, 2, 3))
    angle = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    t = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5) + 0.5).clip(0, 1)
    img = base[:, 0, None, None, :] * (1 - t[..., None]) + base[:, 1, None, None, :] * t[..., None]
    # Pose: centre, radius and rotation differ per image.
    cx = rng.uniform(0.32, 0.68, n)[:, None, None]
    cy = rng.uniform(0.32, 0.68, n)[:, None, None]
    radius = rng.uniform(0.22, 0.4, n)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    dx, dy = xx - cx, yy - cy
    r = np.sqrt(dx**2 + dy**2) / radius
    theta = np.arctan2(dy, dx) - phase
    petals = np.array([classes[k].petals for k in labels])[:, None, None]
    sector = (theta * petals / (2 * np.pi)) % 1.0
    u = 2 * sector - 1
    profile = np.empty_like(u)
    for shape in PETAL_SHAPES:
        rows = np.array([classes[k].shape == shape for k in labels])
        if rows.any():
            profile[rows] = _petal_profile(shape, u[rows])
    edge = 0.25 + 0.75 * profile
    soft = 1.5 / (radius * size)  # about one pixel of anti-aliasing
    petal_mask = 1 / (1 + np.exp((r - edge) / soft))
    colour = np.array([PETAL_COLOURS[classes[k].colour] for k in labels], dtype=float)
    colour = colour + rng.normal(0, 14, size=(n, 3))
    colour = colour * rng.uniform(0.8, 1.1, size=(n, 1))
    shade = (0.7 + 0.3 * np.clip(r, 0, 1))[..., None]  # darker towards the heart
    petal_rgb = colour[:, None, None, :] * shade
    img = img * (1 - petal_mask[..., None]) + petal_rgb * petal_mask[..., None]
    centre = np.array(CENTRE_COLOURS, dtype=float)[rng.integers(0, len(CENTRE_COLOURS), n)]
    centre_mask = 1 / (1 + np.exp((r - 0.22) / soft))
    img = img * (1 - centre_mask[..., None]) + centre[:, None, None, :] * centre_mask[..., None]
    img = img + rng.normal(0, 255 * noise, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)


def generate_split(
    n: int, num_classes: int, size: int, seed: int, split: str, noise: float = 0.08
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, size, size) uint8 and balanced labels (n,) int64, fixed by seed."""
    classes = flower_classes(num_classes)
    split_id = {"train": 0, "val": 1, "test": 2}[split]
    root = np.random.SeedSequence([seed, split_id, GENERATOR_VERSION])
    label_rng = np.random.default_rng(root.spawn(1)[0])
    labels = label_rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    n_chunks = (n + CHUNK - 1) // CHUNK
    for i, chunk_seed in enumerate(root.spawn(n_chunks + 1)[1:]):
        lo, hi = i * CHUNK, min(n, (i + 1) * CHUNK)
        rng = np.random.default_rng(chunk_seed)
        images[lo:hi] = draw_flowers(labels[lo:hi], classes, size, noise, rng)
    return images, labels


class SyntheticFlowers:
    """`dataset=synthetic`: the generated flowers, a data source (`data.sources`).

    Args:
        num_classes: 2 to MAX_CLASSES (192) flower rules.
        image_size: side of the square images, px.
        train_size, val_size, test_size: images per split (classes balanced).
        seed: the data's seed, separate from the training seed.
        noise: std of the per-pixel Gaussian noise, as a fraction of 255.

    Raises:
        ValueError: a count or size out of range (`num_classes=500 ...`).
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        train_size: int = 1000,
        val_size: int = 300,
        test_size: int = 300,
        seed: int = 102,
        noise: float = 0.08,
    ) -> None:
        if not 2 <= num_classes <= MAX_CLASSES:
            raise ValueError(
                f"num_classes={num_classes} is out of range: the synthetic dataset draws "
                f"2 to {MAX_CLASSES} classes"
            )
        for name, n in (
            ("train_size", train_size),
            ("val_size", val_size),
            ("test_size", test_size),
        ):
            if n < 1:
                raise ValueError(f"{name}={n} is out of range: at least 1 image")
        self.num_classes, self.image_size, self.seed, self.noise = (
            num_classes,
            image_size,
            seed,
            noise,
        )
        self.counts = {"train": train_size, "val": val_size, "test": test_size}

    def class_names(self) -> list[str]:
        return [c.name for c in flower_classes(self.num_classes)]

    def load(self, cache_dir: Path, workers: int = 1) -> Splits:
        """The three splits, generated once per setting and cached on disk."""
        spec = {
            "version": GENERATOR_VERSION,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "seed": self.seed,
            "noise": self.noise,
            "sizes": self.counts,  # the cache key's name, kept so existing caches still match
        }

        def build() -> dict:
            entry = {}
            for split, n in self.counts.items():
                images, labels = generate_split(
                    n, self.num_classes, self.image_size, self.seed, split, self.noise
                )
                entry[split] = (torch.from_numpy(images), torch.from_numpy(labels))
            return entry

        entry = cached(cache_dir, "synthetic", spec, build)
        return Splits(*(Split(*entry[role]) for role in ROLES), class_names=self.class_names())
