"""torchvision's per-image augmentation policies, TrivialAugmentWide and RandAugment,
for a whole batch: each image draws its own ops and magnitudes.

The ops and their magnitude ranges are torchvision's (transforms/autoaugment.py,
`_augmentation_space`, 31 bins): TrivialAugmentWide (Müller & Hutter 2021,
"TrivialAugment: Tuning-free Yet State-of-the-Art Data Augmentation") picks one op and
one bin uniformly per image; RandAugment (Cubuk et al. 2020, "RandAugment: Practical
automated data augmentation with a reduced search space") picks `num_ops` ops uniformly,
all at the fixed bin `magnitude`. A signed op's magnitude is negated with probability
1/2, as torchvision's `torch.randint(2, (1,))`.

The geometric ops (ShearX/Y, TranslateX/Y, Rotate) become inverse affine maps in
`geometry`'s convention (pixels about the image centre, x right, y down), composed after
the crop and flip so that the batch still takes one warp; the pixels they bring in from
outside the frame are black (`frame`), as torchvision's fill None. The colour ops run
after the warp (`colour_step`), the images that drew each op taken together: the draws
are on the host, so picking them costs no host sync, and each image pays for its own op
only (the alternative, every op for every image and a select, measured 9x the warp's
time instead of 1.6x on the CPU). Within one image's RandAugment ops, the
geometric ones therefore all come first: where torchvision draws a colour op before a
geometric one, the colour op sees the moved image. Brightness, Color, Posterize and
Identity act pixel by pixel and keep black black, so for them the order changes nothing
(up to the warp's interpolation); Solarize at threshold 0 turns the black fill white,
and Contrast, Sharpness, AutoContrast and Equalize, which look at the whole image or a
pixel's neighbours, see the black fill (and miss what the move pushed out of the frame).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from flowers_sweep.data import colour
from flowers_sweep.data.geometry import MAGNITUDE_BINS, affine, compose
from flowers_sweep.trainer.hardware import to_device

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")
LOOKUPS = ("Posterize", "Solarize", "AutoContrast", "Equalize")
OPS = ("Identity", *GEOMETRIC, *BLENDS, *LOOKUPS)  # torchvision's order, both policies
SIGNED = (*GEOMETRIC, *BLENDS)
CODE = {name: i for i, name in enumerate(OPS)}


class PolicyDraws(NamedTuple):
    """A batch's policy draws: K ops per image (K = 1 for TrivialAugmentWide)."""

    ops: torch.Tensor  # (N, K) int64 index into OPS
    bins: torch.Tensor  # (N, K) int64 magnitude bin, 0..30
    negative: torch.Tensor  # (N, K) bool: the sign draw (a signed op is negated)
    values: torch.Tensor  # (N, K) float64: the op's magnitude as torchvision applies it


def op_table(policy: str, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(14, 31) float64 magnitudes (rows in OPS order, the float32 values torchvision's
    linspace gives; 0 for ops without one) and (14,) bool: which ops are signed.

    torchvision's `_augmentation_space`: TrivialAugmentWide shears up to 0.99, translates
    up to 32 px, rotates up to 135 deg, enhances by up to 0.99 and posterizes to 8..2
    bits; RandAugment 0.3, 150/331 of the image's width (height), 30 deg, 0.9 and 8..4
    bits. Solarize's threshold runs from 255 down to 0 in both. ValueError: any other
    policy name.
    """
    bins = MAGNITUDE_BINS

    def lin(top: float) -> torch.Tensor:
        return torch.linspace(0.0, top, bins)

    if policy == "trivial_augment_wide":
        shear, tx, ty, rot, enhance, parts = (
            lin(0.99),
            lin(32.0),
            lin(32.0),
            lin(135.0),
            lin(0.99),
            6,
        )
    elif policy == "rand_augment":
        shear, rot, enhance, parts = lin(0.3), lin(30.0), lin(0.9), 4
        tx, ty = lin(150.0 / 331.0 * width), lin(150.0 / 331.0 * height)
    else:
        raise ValueError(f"policy={policy!r}: not one of trivial_augment_wide, rand_augment")
    zero = torch.zeros(bins)
    posterize = 8 - (torch.arange(bins) / ((bins - 1) / parts)).round().int()
    rows = {"Identity": zero, "AutoContrast": zero, "Equalize": zero, "Rotate": rot}
    rows.update(ShearX=shear, ShearY=shear, TranslateX=tx, TranslateY=ty)
    rows.update({name: enhance for name in BLENDS})
    rows.update(Posterize=posterize.float(), Solarize=torch.linspace(255.0, 0.0, bins))
    table = torch.stack([rows[name].double() for name in OPS])
    return table, torch.tensor([name in SIGNED for name in OPS])


def draw_policy(
    n: int,
    height: int,
    width: int,
    policy: str,
    num_ops: int,
    magnitude: int,
    gen: torch.Generator,
) -> PolicyDraws:
    """n H x W images' policy draws, on the host from `gen`, in this order: the ops
    (uniform over the 14), for TrivialAugmentWide the bins (uniform over 31; RandAugment's
    is `magnitude`), then the signs (1/2 each). Drawn for every (image, op) slot at once,
    whether or not its op uses a bin or a sign: the same distribution as torchvision's
    draw-as-needed, not its random stream."""
    k = 1 if policy == "trivial_augment_wide" else num_ops
    ops = torch.randint(0, len(OPS), (n, k), generator=gen)
    if policy == "trivial_augment_wide":
        bins = torch.randint(0, MAGNITUDE_BINS, (n, k), generator=gen)
    else:
        bins = torch.full((n, k), magnitude, dtype=torch.int64)
    negative = torch.randint(0, 2, (n, k), generator=gen).bool()
    table, signed = op_table(policy, height, width)
    values = table[ops, bins]
    return PolicyDraws(ops, bins, negative, torch.where(signed[ops] & negative, -values, values))


def step_map(ops: torch.Tensor, values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) float64: each image's inverse map for one policy step (identity for a
    colour op), as torchvision's F.affine / F.rotate compute it on tensors.

    ShearX(m): F.affine(shear=(deg(atan m), 0), center=[0, 0]), a shear about the top-left
    corner: the output pixel at (x, y) reads the input at (x + m (y + H/2), y). ShearY
    likewise in y. TranslateX(m): translate=[int(m), 0], reads x - int(m). Rotate(a):
    F.rotate(a), counter-clockwise about the centre, reads [[cos a, -sin a], [sin a,
    cos a]] (x, y).
    """
    n = len(ops)
    linear = torch.eye(2, dtype=torch.float64).repeat(n, 1, 1)
    shift = torch.zeros(n, 2, dtype=torch.float64)
    v = values.double()
    pick = {name: ops == CODE[name] for name in GEOMETRIC}
    linear[:, 0, 1] = torch.where(pick["ShearX"], v, 0.0)
    linear[:, 1, 0] = torch.where(pick["ShearY"], v, 0.0)
    shift[:, 0] = torch.where(pick["ShearX"], v * height / 2, 0.0)
    shift[:, 1] = torch.where(pick["ShearY"], v * width / 2, 0.0)
    shift[:, 0] -= torch.where(pick["TranslateX"], v.trunc(), 0.0)
    shift[:, 1] -= torch.where(pick["TranslateY"], v.trunc(), 0.0)
    a = torch.where(pick["Rotate"], v, 0.0) * (math.pi / 180)
    rot = pick["Rotate"]
    linear[rot] = torch.stack(
        [torch.stack([a.cos(), -a.sin()], -1), torch.stack([a.sin(), a.cos()], -1)], -2
    )[rot]
    return affine(linear, shift)


def policy_maps(draws: PolicyDraws, height: int, width: int) -> list[torch.Tensor]:
    """The K steps' (N, 2, 3) inverse maps, in order (for `geometry.compose`)."""
    return [
        step_map(draws.ops[:, k], draws.values[:, k], height, width)
        for k in range(draws.ops.shape[1])
    ]


def frame(
    maps: list[torch.Tensor],
    height: int,
    width: int,
    device: torch.device,
    before: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, 1, H, W) bool on `device`: output pixels whose source, through the policy's
    steps, lies inside the frame of the image before them (elsewhere torchvision fills
    black); `before` (N, 1, H, W) bool, a mask of that earlier image (a padded crop's),
    is carried along to the nearest pixel. Built on the device: no host sync."""
    m = to_device(compose(*maps).float(), device)[..., None, None]
    xs = (torch.arange(width, device=device) + 0.5 - width / 2).view(1, 1, width)
    ys = (torch.arange(height, device=device) + 0.5 - height / 2).view(1, height, 1)
    # source x, y of each output pixel centre, each a row term plus a column term
    sx = (m[:, 0, 0] * xs) + (m[:, 0, 1] * ys + m[:, 0, 2])
    sy = (m[:, 1, 0] * xs) + (m[:, 1, 1] * ys + m[:, 1, 2])
    inside = (sx >= -width / 2) & (sx < width / 2) & (sy >= -height / 2) & (sy < height / 2)
    if before is not None:
        col = (sx + width / 2).floor_().long().clamp_(0, width - 1)
        row = (sy + height / 2).floor_().long().clamp_(0, height - 1)
        at = (row * width + col).view(len(inside), -1)
        inside &= before.reshape(len(at), -1).gather(1, at).view_as(inside)
    return inside[:, None]


def black_outside(
    out: torch.Tensor, draws: PolicyDraws, steps: list[torch.Tensor], before: torch.Tensor | None
) -> torch.Tensor:
    """The warped batch (N, C, H, W), in place, black where `frame` says, and where the
    (N, 1, H, W) mask `before` of the moves before the policy (a padded crop's) says for
    the images without a geometric op. The frame is computed only for the images that
    drew a geometric op (known on the host: no host sync)."""
    height, width = out.shape[-2:]
    moved = torch.zeros(len(draws.ops), dtype=torch.bool)
    for name in GEOMETRIC:
        moved |= (draws.ops == CODE[name]).any(1)
    chosen = moved.nonzero()[:, 0]
    if len(chosen) == 0:
        return out if before is None else out.mul_(before)
    index = to_device(chosen, out.device)
    sub_before = None if before is None else before[index]
    mask = frame([m[chosen] for m in steps], height, width, out.device, sub_before)
    if before is not None:
        out.mul_(before.index_copy(0, index, mask))
    else:
        out.index_copy_(0, index, out[index].mul_(mask))
    return out


def colour_step(x: torch.Tensor, draws: PolicyDraws, step: int) -> torch.Tensor:
    """One policy step's colour ops on float32 (N, C, H, W) whole levels 0..255, in place:
    the images that drew each op taken together (which ones, and their magnitudes, are
    known on the host, where the draws are: no host sync), each at its own magnitude.
    Geometric ops and Identity leave their images as they are. A blend's factor is
    torchvision's `1.0 + magnitude`, and 1 - factor is computed in float64 as Python does."""
    height, width = x.shape[-2:]
    ops, values = draws.ops[:, step], draws.values[:, step]
    for name in BLENDS + LOOKUPS:
        chosen = (ops == CODE[name]).nonzero()[:, 0]
        if len(chosen) == 0 or (name == "Sharpness" and min(height, width) <= 2):
            continue  # torchvision leaves images of 2 px or less unsharpened
        v = values[chosen]
        factor = torch.stack([1.0 + v, 1.0 - (1.0 + v)], 1)
        params = to_device(torch.cat([chosen.double()[:, None], factor, v[:, None]], 1), x.device)
        index = params[:, 0].long()
        sub, factor, v = x[index], params[:, 1:3].float(), params[:, 3].float()
        if name == "Brightness":
            sub = colour.blend(sub, 0.0, factor)
        elif name == "Color":
            sub = colour.blend(sub, colour.grayscale(sub), factor)
        elif name == "Contrast":
            mean = colour.grayscale(sub).mean((1, 2, 3), keepdim=True)
            sub = colour.blend(sub, mean, factor)
        elif name == "Sharpness":
            sub = colour.blend(sub, colour.blurred(sub), factor)
        elif name == "Posterize":
            sub = colour.posterize(sub, v)
        elif name == "Solarize":
            sub = colour.solarize(sub, v)
        elif name == "AutoContrast":
            sub = colour.autocontrast(sub)
        else:
            sub = colour.equalize(sub)
        x.index_copy_(0, index, sub)
    return x
