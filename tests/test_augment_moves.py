"""torchvision's moves (hflip, padded crop, resized crop) in the single batched warp.

Off, they change nothing: the report's runs keep their numbers bit for bit. On, each one
is torchvision's functional op with the parameters our batch draw produced.
"""

import math

import pytest
import torch
from omegaconf import OmegaConf
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from flowers_sweep.data import geometry
from flowers_sweep.data.augment import (
    BatchAugment,
    apply_geometry,
    augment_planes,
    check_augment,
    draw_geometry,
    normalize,
    rotate_by,
    warp,
)
from flowers_sweep.errors import ConfigError

from .helpers.cli import ROOT

MEAN, STD = [0.5] * 3, [0.25] * 3
IDENTITY = ([0.0] * 3, [1.0] * 3)  # normalisation that leaves 0-255 as it is
DEFAULTS = {"hflip_p": 0.0, "crop_padding": 0, "resized_crop_scale": None,
            "resized_crop_ratio": [0.75, 4 / 3]}  # fmt: skip
SIZES = torch.tensor([[667, 500], [500, 667], [640, 480], [320, 320], [500, 375], [375, 500]])


def images(n=6, h=24, w=24, seed=0):
    """(n, 3, h, w) uint8 noise: every pixel differs from its neighbours."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=gen)


def smooth(n=4, h=48, w=48):
    """(n, 3, h, w) uint8 gentle ramps, like a photo's neighbouring pixels."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ramp = torch.stack([xs * 2 + ys, ys * 3, 200 - xs - ys]).clamp(0, 255)
    return (ramp[None] + torch.arange(n).view(-1, 1, 1, 1) * 5).clamp(0, 255).to(torch.uint8)


def seeded(seed=1):
    return torch.Generator().manual_seed(seed)


# --- off: today's numbers ---------------------------------------------------------------


def test_defaults_give_todays_numbers_bit_for_bit_on_squashed_images():
    """Squashed cache: the same draws and the one bicubic warp of today's functions."""
    batch = images()
    old_cfg = OmegaConf.create({"vflip_p": 0.5, "rotation": 10, "grayscale": False})
    new_cfg = OmegaConf.merge(old_cfg, DEFAULTS)
    for aug in (BatchAugment(MEAN, STD, 0.5, 10), BatchAugment.from_config(new_cfg, MEAN, STD),
                BatchAugment.from_config(old_cfg, MEAN, STD)):  # fmt: skip
        gen, ref_gen = seeded(), seeded()
        flips, angles = draw_geometry(len(batch), 0.5, 10, ref_gen)
        expected = normalize(apply_geometry(batch, flips, angles, SIZES), MEAN, STD)
        assert torch.equal(aug.train_view(batch, gen, SIZES), expected)
        assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=ref_gen))


def test_defaults_give_todays_numbers_bit_for_bit_on_native_images():
    """Native size on the CPU: PIL plane by plane, as today."""
    batch = images(h=20, w=28)
    aug = BatchAugment.from_config(
        OmegaConf.create({"vflip_p": 0.5, "rotation": 10, "grayscale": True, **DEFAULTS}),
        MEAN, STD,
    )  # fmt: skip
    gen, ref_gen = seeded(), seeded()
    planes = augment_planes(batch, 0.5, 10, ref_gen)
    plain = BatchAugment(MEAN, STD, 0.5, 10, True)
    assert torch.equal(aug.train_view(batch, gen), plain.eval_view(planes))
    assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=ref_gen))


def test_new_moves_draw_after_the_reports_and_only_when_on():
    """The report's flips and angles are the same with or without a new move after them;
    a move that is off takes nothing from the generator."""
    batch = images()
    flips, angles = draw_geometry(len(batch), 0.5, 10, seeded())
    for kwargs in ({"hflip_p": 0.5}, {"crop_padding": 2}, {"resized_crop_scale": (0.5, 1)}):
        _, draws = BatchAugment(MEAN, STD, 0.5, 10, **kwargs).warp_view(batch, seeded(), SIZES)
        assert torch.equal(draws.vflips, flips) and torch.equal(draws.angles, angles)
    only_hflip = BatchAugment(MEAN, STD, hflip_p=0.5).draw(6, 24, 24, seeded())
    assert only_hflip.crops is None
    assert torch.equal(only_hflip.hflips, torch.rand(6, generator=seeded()) < 0.5)
    gen, ref_gen = seeded(), seeded()
    only_crop = BatchAugment(MEAN, STD, crop_padding=2).draw(6, 24, 24, gen)
    assert only_crop.hflips is None
    assert torch.equal(only_crop.crops[:, :2], torch.randint(0, 5, (6, 2), generator=ref_gen))
    assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=ref_gen))


# --- on: torchvision's ops with our draws -------------------------------------------------


@pytest.mark.parametrize("shape", [(24, 24), (21, 30)])
def test_hflip_matches_torchvision(shape):
    batch = images(8, *shape)
    out, draws = BatchAugment(*IDENTITY, hflip_p=0.5).warp_view(batch, seeded())
    ref = torch.where(draws.hflips.view(-1, 1, 1, 1), TF.hflip(batch), batch).float()
    assert 0 < draws.hflips.sum() < len(batch)
    assert torch.allclose(out, ref, atol=0.01, rtol=0)  # grid rounding: ~1e-5 px


@pytest.mark.parametrize("shape", [(24, 24), (21, 30)])
def test_padded_crop_matches_torchvision(shape):
    """RandomCrop(size, padding=P): zero padding, then the drawn box of the padded image."""
    batch, p = images(8, *shape), 3
    out, draws = BatchAugment(*IDENTITY, crop_padding=p).warp_view(batch, seeded())
    ref = torch.stack(
        [TF.crop(TF.pad(x, [p]), *box) for x, box in zip(batch, draws.crops.tolist(), strict=True)]
    )
    assert torch.allclose(out, ref.float(), atol=0.01, rtol=0)
    many = geometry.draw_padded_crops(2000, *shape, p, seeded())
    assert set(many[:, 0].tolist()) == set(many[:, 1].tolist()) == set(range(2 * p + 1))
    assert (many[:, 2:] == torch.tensor(shape)).all()


def test_resized_crop_matches_torchvision_inside_the_box():
    """Bilinear enlargement of the box, as F.interpolate: the same away from the box's
    edges (where torchvision repeats the box's last pixel and the warp reads past it)."""
    batch = images(8, 30, 26)
    aug = BatchAugment(*IDENTITY, resized_crop_scale=(0.08, 1.0))
    out, draws = aug.warp_view(batch, seeded())
    for x, y, (top, left, h, w) in zip(batch, out, draws.crops.tolist(), strict=True):
        ref = TF.resized_crop(x.float(), top, left, h, w, [30, 26],
                              InterpolationMode.BILINEAR, antialias=True)  # fmt: skip
        my, mx = math.ceil(30 / h), math.ceil(26 / w)  # output px per input px
        assert torch.allclose(y[:, my:-my, mx:-mx], ref[:, my:-my, mx:-mx], atol=0.01, rtol=0)


def test_a_resized_crop_at_the_image_edge_repeats_the_edge_as_torchvision():
    """Where the box meets the image's edge, both read the edge pixel (no black)."""
    batch = images(1, 24, 24)
    box = torch.tensor([[0, 0, 10, 7]])
    mode, fill = geometry.sampling(False, 0, 0)
    out = warp(batch, geometry.compose(geometry.crop_maps(box, 24, 24)), mode, fill)[0]
    ref = TF.resized_crop(batch[0].float(), 0, 0, 10, 7, [24, 24], antialias=True)
    assert torch.allclose(out[:, :20, :20], ref[:, :20, :20], atol=0.01, rtol=0)


def test_resized_crop_boxes_keep_to_scale_and_ratio_and_fall_back_as_torchvision():
    h, w, scale, ratio = 40, 30, (0.2, 0.6), (0.5, 1.5)
    boxes = geometry.draw_resized_crops(3000, h, w, scale, ratio, seeded())
    top, left, bh, bw = boxes.T
    assert ((top >= 0) & (left >= 0) & (top + bh <= h) & (left + bw <= w)).all()
    area = bh * bw / (h * w)  # rounding w and h moves the area by up to ~1/sqrt(area) px
    assert area.min() >= 0.2 * 0.8 and area.max() <= 0.6 * 1.2
    assert (bw / bh).min() >= 0.5 * 0.85 and (bw / bh).max() <= 1.5 * 1.15
    assert len(set(top.tolist())) > 10 and len(set(left.tolist())) > 10
    # The sizes torchvision's own get_params picks from the same random stream.
    for seed in range(100):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            _, _, th, tw = T.RandomResizedCrop.get_params(torch.zeros(1, h, w), scale, ratio)
        box = geometry.draw_resized_crops(1, h, w, scale, ratio, seeded(seed))[0]
        assert box[2:].tolist() == [th, tw]
    # No try fits: torchvision's centred fallback, the whole image's ratio clamped.
    for fit_ratio in ((2.0, 3.0), (0.2, 0.3), (0.75, 4 / 3)):
        box = geometry.draw_resized_crops(5, 24, 24, (1.0, 1.0), fit_ratio, seeded())
        ref = T.RandomResizedCrop.get_params(torch.zeros(1, 24, 24), (1.0, 1.0), fit_ratio)
        assert (box == torch.tensor(ref)).all() or fit_ratio == (0.75, 4 / 3)
    whole = geometry.draw_resized_crops(50, 24, 24, (1.0, 1.0), (0.75, 4 / 3), seeded())
    assert (whole == torch.tensor([0, 0, 24, 24])).all(dim=1).sum() >= 45  # ratio 1 is rare


@pytest.mark.parametrize(
    "kwargs", [{"hflip_p": 0.5}, {"crop_padding": 4}, {"resized_crop_scale": (0.08, 1.0)}]
)
def test_moves_are_seeded(kwargs):
    batch = images()
    aug = BatchAugment(MEAN, STD, 0.5, 10, **kwargs)
    for sizes in (None, SIZES):
        a = aug.train_view(batch, seeded(3), sizes)
        assert torch.equal(a, aug.train_view(batch, seeded(3), sizes))
        assert not torch.equal(a, aug.train_view(batch, seeded(4), sizes))


# --- the pipeline's order -----------------------------------------------------------------


def test_vflip_then_hflip_is_a_half_turn_pixel_for_pixel():
    batch = images(4, 32, 32)  # power-of-two sizes: the grid's arithmetic is exact
    out, _ = BatchAugment(*IDENTITY, vflip_p=1.0, hflip_p=1.0).warp_view(batch, seeded())
    assert torch.equal(out, rotate_by(batch, torch.full((4,), 180.0)).float())
    assert torch.equal(out, batch.flip(-1, -2).float())


def test_the_flip_comes_after_the_rotation():
    """Native size, nearest: rotate by t then mirror, not mirror then rotate (which
    would be the mirror of a rotation by -t)."""
    batch = images(6, 33, 33)
    aug = BatchAugment(*IDENTITY, rotation=30, hflip_p=1.0)
    out, draws = aug.warp_view(batch, seeded())
    assert geometry.sampling(False, 30, 0)[0] == "nearest"
    rotated = rotate_by(batch, draws.angles).flip(-1).float()
    assert (out == rotated).float().mean() > 0.99  # rounding ties of nearest may differ
    assert (out == rotate_by(batch.flip(-1), draws.angles).float()).float().mean() < 0.5


def test_the_crop_comes_after_the_report_moves_on_the_square():
    """Squashed images: the report's moves (one bicubic warp, today's), then the padded
    crop and the flip of that square, at the same sampling points."""
    batch = smooth(6, 32, 32)
    aug = BatchAugment(*IDENTITY, vflip_p=0.5, rotation=10, crop_padding=3, hflip_p=0.5)
    out, draws = aug.warp_view(batch, seeded(), SIZES)
    report = apply_geometry(batch, draws.vflips, draws.angles, SIZES)
    moved = torch.stack(
        [
            TF.crop(TF.pad(x, [3]), *box)
            for x, box in zip(report, draws.crops.tolist(), strict=True)
        ]
    )
    moved = torch.where(draws.hflips.view(-1, 1, 1, 1), moved.flip(-1), moved)
    assert torch.allclose(out, moved, atol=0.05, rtol=0)
    assert 0 < draws.hflips.sum() < 6 and 0 < draws.vflips.sum() < 6


# --- the config -----------------------------------------------------------------------------


def test_every_preset_passes_and_so_does_a_config_from_before_the_new_keys():
    for path in sorted((ROOT / "conf" / "augment").glob("*.yaml")):
        check_augment(OmegaConf.load(path))
    check_augment(OmegaConf.create({"vflip_p": 0.5, "rotation": 10, "grayscale": False}))
    cifar = BatchAugment.from_config(OmegaConf.load(ROOT / "conf/augment/cifar.yaml"), MEAN, STD)
    assert (cifar.crop_padding, cifar.hflip_p, cifar.vflip_p, cifar.rotation) == (4, 0.5, 0, 0)
    imagenet = OmegaConf.load(ROOT / "conf/augment/imagenet_style.yaml")
    aug = BatchAugment.from_config(imagenet, MEAN, STD, torch.channels_last)
    assert aug.resized_crop_scale == (0.08, 1.0) and aug.resized_crop_ratio == (0.75, 4 / 3)
    assert aug.train_view(images(), seeded()).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"hflip_p": 2}, r"^augment\.hflip_p=2 is invalid: a probability in \[0, 1\]$"),
        ({"vflip_p": -0.1}, r"^augment\.vflip_p=-0\.1 is invalid: a probability in \[0, 1\]$"),
        ({"rotation": -5}, r"^augment\.rotation=-5 is invalid: degrees >= 0$"),
        ({"crop_padding": 2.5}, r"^augment\.crop_padding=2\.5 is invalid: an integer >= 0"),
        ({"crop_padding": -1}, r"^augment\.crop_padding=-1 is invalid"),
        ({"resized_crop_scale": [0.5, 0.1]}, r"^augment\.resized_crop_scale=\[0\.5, 0\.1\] is "
         r"invalid: null or \[min, max\] fractions of the area, 0 < min <= max <= 1$"),
        ({"resized_crop_scale": [0, 1]}, r"^augment\.resized_crop_scale=\[0, 1\] is invalid"),
        ({"resized_crop_scale": [0.5, 1.5]}, r"^augment\.resized_crop_scale=\[0\.5, 1\.5\]"),
        ({"resized_crop_scale": 0.5}, r"^augment\.resized_crop_scale=0\.5 is invalid"),
        ({"resized_crop_ratio": [2, 1]}, r"^augment\.resized_crop_ratio=\[2, 1\] is invalid: "
         r"\[min, max\] aspect ratios w/h, 0 < min <= max$"),
        ({"resized_crop_ratio": [1]}, r"^augment\.resized_crop_ratio=\[1\] is invalid"),
        ({"crop_padding": 4, "resized_crop_scale": [0.08, 1.0]},
         r"^augment\.crop_padding=4 and augment\.resized_crop_scale=\[0\.08, 1\.0\] both "
         r"crop: choose one$"),
    ],
)  # fmt: skip
def test_check_augment_names_the_key_the_value_and_what_is_allowed(override, message):
    cfg = OmegaConf.merge(OmegaConf.load(ROOT / "conf/augment/report.yaml"), override)
    with pytest.raises(ConfigError, match=message) as info:
        check_augment(cfg)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=message):
        BatchAugment.from_config(cfg, MEAN, STD)


# --- on a GPU (skipped without one; bash benchmarks/gpu_check.sh runs `gpu` tests) -------


@pytest.mark.gpu
@pytest.mark.parametrize("squashed", [False, True], ids=["native", "squashed"])
@pytest.mark.parametrize(
    "kwargs",
    [{"hflip_p": 0.5, "crop_padding": 4}, {"hflip_p": 0.5, "resized_crop_scale": (0.08, 1)}],
)
def test_the_moves_on_cuda_match_the_cpu_without_a_host_sync(squashed, kwargs):
    """The same host draws, queued to the GPU: the same images (up to float rounding and
    nearest's rounding ties), and no blocking copy or read on the way."""
    cuda, sizes = torch.device("cuda"), SIZES if squashed else None
    aug = BatchAugment(MEAN, STD, 0.5, 10, memory_format=torch.channels_last, **kwargs)
    batch = images(6, 32, 32)
    cpu = aug.train_view(batch, seeded(), sizes)
    on_gpu = batch.to(cuda)
    aug.train_view(on_gpu, seeded(), sizes)  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        dev = aug.train_view(on_gpu, seeded(), sizes)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert dev.is_cuda and dev.is_contiguous(memory_format=torch.channels_last)
    assert ((dev.cpu() - cpu).abs() <= 1e-3).float().mean() > 0.99
