"""The torchvision-style moves (horizontal flip, padded crop, resized crop) as affine maps.

Each move is drawn for a whole batch at once on the host, from the caller's generator,
with the distributions of torchvision's RandomHorizontalFlip, RandomCrop(size, padding=P)
and RandomResizedCrop. Its parameters are kept in torchvision's terms (a crop box
top, left, height, width) and turned into an inverse map: for each output pixel, where
in the input it reads, as a (N, 2, 3) float64 matrix acting on (x, y, 1) in pixels about
the image centre (x right, y down). The maps of a pipeline compose into one (`compose`),
so `augment.warp` applies every move with one sampling kernel.

A crop keeps the image's size: a padded crop is an integer translation with zero fill,
a resized crop enlarges a box of the image back to the full size (never a reduction,
so an antialiasing filter would change nothing and bilinear is torchvision's result).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib.resources import files
from typing import Any, NamedTuple

import torch
import yaml

from flowers_sweep.config import CONFIG_MODULE
from flowers_sweep.errors import ConfigError
from flowers_sweep.trainer.hardware import to_device

TRIES = 10  # torchvision's RandomResizedCrop.get_params tries this many boxes
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default range of aspect ratios (w / h)
PROBABILITY = "a probability in [0, 1]"
# torchvision's per-image policies (transforms.TrivialAugmentWide, RandAugment), whose
# magnitudes are one of 31 bins (their num_magnitude_bins default).
POLICIES = ("trivial_augment_wide", "rand_augment")
MIXES = (("MixUp", "mixup_alpha"), ("CutMix", "cutmix_alpha"))  # batch mixing, its keys
MAGNITUDE_BINS = 31


class Draws(NamedTuple):
    """One batch's random draws, in pipeline order. N images of H x W pixels."""

    vflips: torch.Tensor  # (N,) bool: the report's vertical flip
    angles: torch.Tensor  # (N,) float32 degrees, counter-clockwise: the report's rotation
    crops: torch.Tensor | None  # (N, 4) int64 top, left, height, width, on the padded image
    hflips: torch.Tensor | None  # (N,) bool: horizontal flip, after the crop
    policy: Any = None  # policies.PolicyDraws when augment.policy is set, after the flip


def draw_hflips(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """(n,) bool: which images RandomHorizontalFlip(p) flips (one uniform draw each)."""
    return torch.rand(n, generator=gen) < p


def draw_padded_crops(
    n: int, height: int, width: int, padding: int, gen: torch.Generator
) -> torch.Tensor:
    """(n, 4) int64 boxes (top, left, height, width) of RandomCrop((H, W), padding=P).

    On the image padded by P on each side, top and left are uniform in [0, 2P] (torchvision
    draws randint(0, 2P + 1) each), so the image moves by -P..P pixels per axis.
    """
    corner = torch.randint(0, 2 * padding + 1, (n, 2), generator=gen)
    size = torch.tensor([height, width]).expand(n, 2)
    return torch.cat([corner, size], 1)


def draw_resized_crops(
    n: int,
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    gen: torch.Generator,
) -> torch.Tensor:
    """(n, 4) int64 boxes (top, left, height, width) of torchvision's RandomResizedCrop.

    Its get_params for every image at once: 10 candidate boxes each, of area a fraction
    of H*W uniform in `scale` and aspect ratio w/h log-uniform in `ratio`, w =
    round(sqrt(area * ratio)), h = round(sqrt(area / ratio)); the first with 0 < w <= W
    and 0 < h <= H is kept, at a uniform position; with none, the centred box of the
    whole image with its ratio clamped into `ratio`. The candidates are drawn as
    torchvision draws them (float32 uniforms, scale then ratio, try after try), so for
    one image and the same stream the box's size is torchvision's (Szegedy et al. 2015,
    "Going deeper with convolutions", the crops of their Inception training).
    """
    u = torch.rand(n, TRIES, 2, generator=gen)
    log_ratio = torch.log(torch.tensor([float(r) for r in ratio]))  # float32, as torchvision
    lo = torch.stack([torch.tensor(float(scale[0])), log_ratio[0]])
    hi = torch.stack([torch.tensor(float(scale[1])), log_ratio[1]])
    # uniform_(lo, hi): x * (hi - lo) + lo in double, stored as float32
    v = (u.double() * (hi - lo).double() + lo.double()).float().double()
    area = height * width * v[..., 0]
    aspect = v[..., 1].float().exp().double()
    w = (area * aspect).sqrt().round().long()
    h = (area / aspect).sqrt().round().long()
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.int().argmax(1, keepdim=True)  # the first valid try (argmax: first max)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    found = valid.any(1)
    fh, fw = fallback_box(height, width, ratio)
    h, w = torch.where(found, h, fh), torch.where(found, w, fw)
    pos = torch.rand(n, 2, generator=gen).double()  # uniform top and left, drawn for all
    top = torch.where(found, (pos[:, 0] * (height - h + 1)).floor().long(), (height - h) // 2)
    left = torch.where(found, (pos[:, 1] * (width - w + 1)).floor().long(), (width - w) // 2)
    return torch.stack([top, left, h, w], 1)


def fallback_box(height: int, width: int, ratio: Sequence[float]) -> tuple[int, int]:
    """(h, w) of RandomResizedCrop's fallback: the whole image, its ratio clamped."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return round(width / min(ratio)), width
    if in_ratio > max(ratio):
        return height, round(height * max(ratio))
    return height, width


def affine(linear: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 2, 3) float64 from (N, 2, 2) linear parts and (N, 2) shifts in pixels (x, y)."""
    if shift is None:
        shift = torch.zeros(len(linear), 2, dtype=torch.float64)
    return torch.cat([linear.double(), shift.double()[:, :, None]], 2)


def hflip_maps(flips: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3): a flipped image reads its input at (-x, y)."""
    linear = torch.eye(2, dtype=torch.float64).repeat(len(flips), 1, 1)
    linear[flips.bool(), 0, 0] = -1
    return affine(linear)


def crop_maps(boxes: torch.Tensor, height: int, width: int, padding: int = 0) -> torch.Tensor:
    """(N, 2, 3): each box (top, left, h, w) of the image padded by `padding` px, stretched
    back over the H x W output. Output pixel centre x (about the centre) reads the input
    at x * w/W + (left - padding + w/2 - W/2), likewise in y: F.interpolate's bilinear
    sampling (align_corners=False) of the box, as torchvision's resized_crop."""
    top, left, h, w = boxes.double().unbind(1)
    linear = torch.diag_embed(torch.stack([w / width, h / height], 1))
    shift = torch.stack([left - padding + (w - width) / 2, top - padding + (h - height) / 2], 1)
    return affine(linear, shift)


def compose(*maps: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3): the inverse map of a pipeline from those of its steps, in order.

    An output pixel of the last step reads its input through the last map, that point of
    the step before through its map, and so on: the product first @ ... @ last.
    """
    n = len(maps[0])
    last = torch.tensor([0, 0, 1], dtype=torch.float64).expand(n, 1, 3)
    out = torch.cat([affine(maps[0][:, :, :2], _shift(maps[0])), last], 1)
    for m in maps[1:]:
        out = out @ torch.cat([affine(m[:, :, :2], _shift(m)), last], 1)
    return out[:, :2]


def _shift(m: torch.Tensor) -> torch.Tensor | None:
    return m[:, :, 2] if m.shape[2] == 3 else None


def draw_moves(
    n: int,
    height: int,
    width: int,
    gen: torch.Generator,
    hflip_p: float = 0.0,
    crop_padding: int = 0,
    resized_crop_scale: Sequence[float] | None = None,
    resized_crop_ratio: Sequence[float] = RATIO,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(crops, hflips) of `Draws` for n H x W images: the crop's draws, then the flips';
    a move that is off draws nothing and is None."""
    crops = hflips = None
    if crop_padding > 0:
        crops = draw_padded_crops(n, height, width, crop_padding, gen)
    elif resized_crop_scale is not None:
        crops = draw_resized_crops(n, height, width, resized_crop_scale, resized_crop_ratio, gen)
    if hflip_p > 0:
        hflips = draw_hflips(n, hflip_p, gen)
    return crops, hflips


def moves_maps(
    base: torch.Tensor,
    draws: Draws,
    height: int,
    width: int,
    padding: int = 0,
    after: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    """(N, 2, 3): the map `base` (N, 2, 2 or 3: the report's moves, `squash_conjugated`),
    then the drawn crop (on the image padded by `padding` px), then the flip, then the
    (N, 2, 3) maps `after` (a policy's geometric ops), in order."""
    maps = [base]
    if draws.crops is not None:
        maps.append(crop_maps(draws.crops, height, width, padding))
    if draws.hflips is not None:
        maps.append(hflip_maps(draws.hflips))
    return compose(*maps, *after)


def frame_mask(
    draws: Draws, height: int, width: int, padding: int, device: torch.device
) -> torch.Tensor:
    """(N, 1, H, W) bool on `device`: the output pixels a padded crop takes from inside
    the image it crops, not from its zero padding.

    One map reads the original input even where the crop looks past the frame of the
    rotated image, into the photo beyond it: these pixels are set black after the warp,
    as RandomCrop's padding is. Built on the device from the (N, 4) boxes: no host sync.
    """
    top, left = (to_device(draws.crops[:, k] - padding, device) for k in (0, 1))
    ys, xs = (torch.arange(m, device=device) for m in (height, width))
    if draws.hflips is not None:  # the flip is last: column x shows column W-1-x
        xs = torch.where(to_device(draws.hflips, device)[:, None], width - 1 - xs, xs)
    rows, cols = ys + top[:, None], xs + left[:, None]
    rows_in, cols_in = (rows >= 0) & (rows < height), (cols >= 0) & (cols < width)
    return rows_in[:, None, :, None] & cols_in[:, None, None, :]


def sampling(
    squashed: bool, rotation: float, crop_padding: int, policy: bool = False, resized: bool = False
) -> tuple[str, str]:
    """grid_sample's (mode, padding_mode) for the composed warp.

    Bicubic for squashed images with a rotation (it stands in for the report's resize),
    nearest for native-size ones with a rotation (the report's own), else bilinear
    (RandomResizedCrop's; flips and integer shifts land on pixel centres in any mode),
    except nearest with a policy (torchvision's policies sample nearest) and no resized
    crop (`resized`) to enlarge. Zero fill where a rotation or a padded crop brings in
    black, else the edge pixel repeated, as F.interpolate reads past a resized crop's edge
    (a policy's own black comes from `policies.frame`).
    """
    rotated = rotation > 0
    mode = ("bicubic" if squashed else "nearest") if rotated else "bilinear"
    if policy and not rotated and not resized:
        mode = "nearest"
    return mode, "zeros" if rotated or crop_padding > 0 else "border"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pair(v: Any) -> bool:
    return (
        isinstance(v, Sequence)
        and not isinstance(v, str)
        and len(v) == 2
        and all(_number(x) for x in v)
    )


def check_augment(augment_cfg: Any) -> None:
    """ConfigError, one line naming the key, its value and what is allowed, on the first
    bad value of the `augment` group (a DictConfig or dict; absent keys are their default)."""
    get = augment_cfg.get
    checks = [
        ("vflip_p", get("vflip_p", 0.0), lambda v: _number(v) and 0 <= v <= 1, PROBABILITY),
        ("rotation", get("rotation", 0), lambda v: _number(v) and v >= 0, "degrees >= 0"),
        ("grayscale", get("grayscale", False), lambda v: isinstance(v, bool), "true or false"),
        ("hflip_p", get("hflip_p", 0.0), lambda v: _number(v) and 0 <= v <= 1, PROBABILITY),
        ("crop_padding", get("crop_padding", 0),
         lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
         "an integer >= 0 (pixels of zero padding on each side)"),
        ("resized_crop_scale", get("resized_crop_scale"),
         lambda v: v is None or (_pair(v) and 0 < v[0] <= v[1] <= 1),
         "null or [min, max] fractions of the area, 0 < min <= max <= 1"),
        ("resized_crop_ratio", get("resized_crop_ratio", list(RATIO)),
         lambda v: _pair(v) and 0 < v[0] <= v[1], "[min, max] aspect ratios w/h, 0 < min <= max"),
        ("policy", get("policy"), lambda v: v is None or v in POLICIES,
         f"null or one of {', '.join(POLICIES)}"),
        ("num_ops", get("num_ops", 2),
         lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
        ("magnitude", get("magnitude", 9),
         lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < MAGNITUDE_BINS,
         f"an integer bin in [0, {MAGNITUDE_BINS - 1}]"),
        ("erase_p", get("erase_p", 0.0), lambda v: _number(v) and 0 <= v <= 1, PROBABILITY),
        ("mixup_alpha", get("mixup_alpha", 0.0), lambda v: _number(v) and v >= 0,
         "a number >= 0 (0: off)"),
        ("cutmix_alpha", get("cutmix_alpha", 0.0), lambda v: _number(v) and v >= 0,
         "a number >= 0 (0: off)"),
        ("mix_prob", get("mix_prob", 1.0), lambda v: _number(v) and 0 <= v <= 1, PROBABILITY),
    ]  # fmt: skip
    for key, value, ok, allowed in checks:
        if not ok(value):
            raise ConfigError(f"augment.{key}={value!r} is invalid: {allowed}")
    padding, scale = get("crop_padding", 0), get("resized_crop_scale")
    if padding > 0 and scale is not None:
        raise ConfigError(
            f"augment.crop_padding={padding!r} and augment.resized_crop_scale={scale!r} "
            "both crop: choose one"
        )


# The augment group's keys and their defaults (a config saved before a key lacks it).
AUGMENT_DEFAULTS: dict[str, Any] = {
    "vflip_p": 0.0,
    "rotation": 0,
    "grayscale": False,
    "hflip_p": 0.0,
    "crop_padding": 0,
    "resized_crop_scale": None,
    "resized_crop_ratio": list(RATIO),
    "policy": None,
    "num_ops": 2,
    "magnitude": 9,
    "erase_p": 0.0,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "mix_prob": 1.0,
}


def augment_values(augment_cfg: Any) -> dict[str, Any]:
    """The `augment` node's values as plain Python, each absent key its default."""
    values = {}
    for key, default in AUGMENT_DEFAULTS.items():
        value = augment_cfg.get(key, default)
        is_list = isinstance(value, Sequence) and not isinstance(value, str)
        values[key] = [float(x) for x in value] if is_list else value
    return values


def shipped_augment(values: dict[str, Any]) -> str | None:
    """The name of the shipped conf/augment/ preset that has exactly these values."""
    folder = files(CONFIG_MODULE) / "augment"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            preset = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            if augment_values(preset) == values:
                return entry.name.removesuffix(".yaml")
    return None


def describe_augment(augment_cfg: Any) -> str:
    """The augmentation in one line, from the `augment` node itself (no Hydra state): the
    shipped preset its values are, if any, then its moves in the order they apply, e.g.
    `report (vertical flip p=0.5, rotation +-10 deg)`; `none` when nothing moves."""
    v = augment_values(augment_cfg)
    moves = ["greyscale input"] if v["grayscale"] else []
    if v["vflip_p"] > 0:
        moves.append(f"vertical flip p={v['vflip_p']:g}")
    if v["rotation"] > 0:
        moves.append(f"rotation +-{v['rotation']:g} deg")
    if v["crop_padding"] > 0:
        moves.append(f"random crop padded {v['crop_padding']} px")
    if v["resized_crop_scale"] is not None:
        (lo, hi), (r0, r1) = v["resized_crop_scale"], v["resized_crop_ratio"]
        moves.append(f"random resized crop, area {lo:g}-{hi:g}, ratio {r0:.3g}-{r1:.3g}")
    if v["hflip_p"] > 0:
        moves.append(f"horizontal flip p={v['hflip_p']:g}")
    if v["policy"] == "trivial_augment_wide":
        moves.append("TrivialAugmentWide")
    elif v["policy"] == "rand_augment":
        moves.append(f"RandAugment {v['num_ops']} ops, magnitude {v['magnitude']}/30")
    if v["erase_p"] > 0:
        moves.append(f"random erasing p={v['erase_p']:g}")
    mixes = [f"{name} alpha={v[key]:g}" for name, key in MIXES if v[key] > 0]
    if mixes:  # on the batch, in the training loop (trainer/mixing.py)
        p = f", p={v['mix_prob']:g}" if v["mix_prob"] < 1 else ""
        moves.append(f"batches mixed by {' or '.join(mixes)}{p}")
    text = ", ".join(moves) or "none"
    name = shipped_augment(v)
    return text if name in (None, text) else f"{name} ({text})"
