import logging

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from flowers_sweep.data import load_splits
from flowers_sweep.data.augment import (
    BatchAugment,
    augment_planes,
    normalize,
    rotate,
    rotate_by,
    to_grayscale,
    vertical_flip,
)
from flowers_sweep.data.synthetic import flower_classes, generate_split

from .helpers.cli import CONF, make_cfg


def test_synthetic_is_deterministic_per_seed():
    a = generate_split(40, 10, 32, seed=3, split="train")
    b = generate_split(40, 10, 32, seed=3, split="train")
    c = generate_split(40, 10, 32, seed=4, split="train")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_splits_differ_and_labels_are_balanced():
    train, train_y = generate_split(100, 10, 32, seed=0, split="train")
    val, _ = generate_split(100, 10, 32, seed=0, split="val")
    assert train.shape == (100, 3, 32, 32) and train.dtype == np.uint8
    assert not np.array_equal(train, val)
    assert np.bincount(train_y, minlength=10).tolist() == [10] * 10


def test_classes_share_attributes_but_are_unique():
    classes = flower_classes(10)
    assert len({c.name for c in classes}) == 10
    assert len({c.colour for c in classes}) < 10
    assert len({c.petals for c in classes}) < 10
    with pytest.raises(ValueError, match="num_classes=1"):
        flower_classes(1)


def test_load_splits_uses_cache(cache_dir, monkeypatch):
    from flowers_sweep.data import synthetic

    cfg = make_cfg("dataset.train_size=30", "dataset.val_size=10", "dataset.test_size=10")
    first = load_splits(cfg.dataset)
    assert list(cache_dir.glob("synthetic-*.pt"))
    monkeypatch.setattr(synthetic, "generate_split", lambda *a, **k: pytest.fail("generated"))
    again = load_splits(cfg.dataset)  # from the cache file: generating again would fail
    assert torch.equal(first.train.images, again.train.images)
    assert first.counts() == {"train": 30, "val": 10, "test": 10}
    assert first.num_classes == 10 and len(first.class_names) == 10


def test_vertical_flip_flips_each_image_whole_or_not_at_all():
    batch = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    out = vertical_flip(batch, 0.5, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, b.flip(-2)) for o, b in zip(out, batch, strict=True)]
    kept = [torch.equal(o, b) for o, b in zip(out, batch, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # one or the other
    assert 0 < sum(flipped) < 16


def test_rotation_by_zero_degrees_is_identity_and_keeps_dtype():
    """Through the gather itself (rotate() returns early when rotation is off)."""
    batch = torch.randint(0, 255, (4, 3, 16, 12), dtype=torch.uint8)
    out = rotate_by(batch, torch.zeros(4))
    assert out.dtype == torch.uint8 and torch.equal(out, batch)


@pytest.mark.parametrize("angle", [10.0, -7.5, 30.0, 90.0])
def test_rotation_matches_torchvision_nearest(angle):
    img = torch.randint(0, 255, (1, 3, 48, 40), dtype=torch.uint8)
    reference = TF.rotate(img, angle, interpolation=InterpolationMode.NEAREST)
    assert torch.equal(rotate_by(img, torch.tensor([angle])), reference)


def test_normalize_matches_torchvision():
    mean, std = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
    batch = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8)
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    assert torch.allclose(normalize(batch, mean, std), reference(batch), atol=1e-5)


def test_augment_is_seeded():
    batch = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)
    aug = BatchAugment([0.5] * 3, [0.25] * 3, vflip_p=0.5, rotation=10)
    a = aug.train_view(batch, torch.Generator().manual_seed(1))
    b = aug.train_view(batch, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, aug.eval_view(batch))


def test_grayscale_matches_pil_and_applies_to_eval():
    from PIL import Image

    # Enough pixels that every rounding case of PIL's fixed-point luma comes up.
    batch = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    gray = to_grayscale(batch)
    pil = np.asarray(Image.fromarray(batch[0].permute(1, 2, 0).numpy()).convert("L"))
    assert torch.equal(gray[0, 0], torch.from_numpy(pil.copy()))
    assert torch.equal(gray[:, 0], gray[:, 2])
    aug = BatchAugment([0.5] * 3, [0.25] * 3, grayscale=True)
    out = aug.eval_view(batch)
    assert torch.allclose(out[:, 0], out[:, 1])


def test_batches_carry_each_shuffled_image_its_own_size():
    """The augmentation needs the original size of exactly the images in the batch."""
    from flowers_sweep.data.loaders import TensorBatches
    from flowers_sweep.data.splits import Split

    n = 10
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).clone()
    sizes = torch.stack([torch.arange(n) + 100, torch.arange(n) + 200], 1)
    seen = []

    def prepare(batch, gen, batch_sizes):
        seen.append((batch[:, 0, 0, 0].long(), batch_sizes))
        return batch

    batches = TensorBatches(Split(images, torch.arange(n), sizes), 4, torch.device("cpu"), prepare)
    list(batches(torch.Generator().manual_seed(0)))
    ids = torch.cat([i for i, _ in seen])
    assert not torch.equal(ids, torch.arange(n))  # shuffled
    assert torch.equal(torch.cat([s for _, s in seen]), sizes[ids])


def test_squashed_images_are_augmented_with_the_report_order_and_seed():
    """With sizes (a squashed cache): greyscale first, then one seeded warp, as float."""
    batch = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    sizes = torch.tensor([[667, 500], [500, 667], [640, 480], [320, 320]])
    aug = BatchAugment([0.5] * 3, [0.25] * 3, vflip_p=0.5, rotation=10, grayscale=True)
    a = aug.train_view(batch, torch.Generator().manual_seed(1), sizes)
    b = aug.train_view(batch, torch.Generator().manual_seed(1), sizes)
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert torch.equal(a[:, 0], a[:, 2])  # greyscale before the warp: channels stay equal
    plain = BatchAugment([0.5] * 3, [0.25] * 3, vflip_p=0.5, rotation=10, grayscale=True)
    assert not torch.equal(a, plain.train_view(batch, torch.Generator().manual_seed(1)))


def test_cpu_planes_path_matches_device_gather_path():
    """Same seed, same draws: PIL per plane (CPU) and the gather (GPU) agree."""
    batch = torch.randint(0, 255, (6, 3, 40, 32), dtype=torch.uint8)
    pil = augment_planes(batch, 0.5, 10, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    gather = rotate(vertical_flip(batch, 0.5, g), 10, g)
    assert (pil == gather).float().mean() > 0.99


def test_describe_augment_names_the_preset_and_its_moves():
    from omegaconf import OmegaConf

    from flowers_sweep.data import describe_augment

    def preset(name):
        return OmegaConf.load(CONF / "augment" / f"{name}.yaml")

    assert describe_augment(preset("report")) == "report (vertical flip p=0.5, rotation +-10 deg)"
    assert describe_augment(preset("cifar")) == (
        "cifar (random crop padded 4 px, horizontal flip p=0.5)"
    )
    assert describe_augment(preset("none")) == "none"
    changed = preset("report")
    changed.rotation = 20  # no preset's values: the moves alone
    assert describe_augment(changed) == "vertical flip p=0.5, rotation +-20 deg"
    # a config saved before the newer keys is the report's as it was
    assert describe_augment({"vflip_p": 0.5, "rotation": 10, "grayscale": False}).startswith(
        "report ("
    )
    mixed = preset("none")
    mixed.mixup_alpha, mixed.cutmix_alpha, mixed.mix_prob = 0.2, 1.0, 0.8
    assert describe_augment(mixed) == "batches mixed by MixUp alpha=0.2 or CutMix alpha=1, p=0.8"


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ([], "augmentation: report (vertical flip p=0.5, rotation +-10 deg)"),
        (
            ["augment=cifar"],
            "augmentation: cifar (random crop padded 4 px, horizontal flip p=0.5)",
        ),
    ],
)
def test_building_the_loaders_logs_the_augmentation_in_one_line(
    overrides, line, cache_dir, caplog
):
    from flowers_sweep.data import build_loaders

    sizes = ["dataset.train_size=30", "dataset.val_size=10", "dataset.test_size=10"]
    cfg = make_cfg(*sizes, *overrides)
    with caplog.at_level(logging.INFO, logger="flowers_sweep.data"):
        build_loaders(cfg, torch.device("cpu"))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("augmentation")]
    assert said == [line]
