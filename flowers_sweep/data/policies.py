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
after the warp (`colour_step`). The draws are on the host, so picking an op's images
costs no host sync, and each image pays for its own op only (the alternative, every op
for every image and a select, measured 9x the warp's time on the CPU). On an
accelerator the images that drew an op are gathered and take it in one kernel each; on
the CPU (`per_image`) each image takes it in place, its magnitude a number: there a
gathered copy costs more than the op (fresh memory, two more passes), and one image
stays in cache from pass to pass (benchmarks/augment_policy.py).

Within one image's RandAugment ops, the geometric ones all come first (they are one
warp): where torchvision draws a colour op before a
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
from flowers_sweep.trainer.hardware import image_by_image, to_device

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


def row_spans(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, H, 2) int64 [first, end) columns per output row whose pixel centre the (N, 2, 3)
    float64 map (a policy's composed steps) sends inside the frame of the image before
    it, -W/2 <= x < W/2 and -H/2 <= y < H/2 (about the centre): `frame`'s test solved
    for the columns, row by row, on the host. An affine map sends a row to a line, and a
    line meets the frame in one interval."""
    n = len(maps)
    u = torch.arange(height, dtype=torch.float64) + 0.5 - height / 2  # row centres
    first = torch.zeros(n, height, dtype=torch.float64)
    end = torch.full((n, height), float(width), dtype=torch.float64)
    for axis, half in ((0, width / 2), (1, height / 2)):
        # source coordinate along `axis` at column c: a * (c + 0.5 - W/2) + b, b per row
        a = maps[:, axis, 0, None].expand(n, height)
        b = maps[:, axis, 1, None] * u + maps[:, axis, 2, None]
        low, high = (-half - b) / a, (half - b) / a  # the x where it crosses each side
        to_col = width / 2 - 0.5
        rising = (torch.ceil(low + to_col), torch.ceil(high + to_col))
        falling = (torch.floor(high + to_col) + 1, torch.floor(low + to_col) + 1)
        flat_in = (-half <= b) & (b < half)  # a = 0: the whole row or none of it
        flat = (torch.where(flat_in, 0.0, float(width)), torch.where(flat_in, float(width), 0.0))
        lo = torch.where(a > 0, rising[0], torch.where(a < 0, falling[0], flat[0]))
        hi = torch.where(a > 0, rising[1], torch.where(a < 0, falling[1], flat[1]))
        first, end = torch.maximum(first, lo), torch.minimum(end, hi)
    first = first.clamp(0, width)
    return torch.stack([first, torch.maximum(first, end.clamp(0, width))], 2).long()


def black_outside(
    out: torch.Tensor,
    draws: PolicyDraws,
    steps: list[torch.Tensor],
    before: torch.Tensor | None,
    per_image: bool | None = None,
) -> torch.Tensor:
    """The warped batch (N, C, H, W), in place, black where `frame` says, and where the
    (N, 1, H, W) mask `before` of the moves before the policy (a padded crop's) says for
    the images without a geometric op. The frame is computed only for the images that
    drew a geometric op (known on the host: no host sync); without `before`, as row spans
    (`row_spans`): two comparisons a pixel, image by image in place when `per_image`
    (None: on the CPU), else one mask for the batch."""
    height, width = out.shape[-2:]
    moved = torch.zeros(len(draws.ops), dtype=torch.bool)
    for name in GEOMETRIC:
        moved |= (draws.ops == CODE[name]).any(1)
    chosen = moved.nonzero()[:, 0]
    if len(chosen) == 0:
        return out if before is None else out.mul_(before)
    if before is None:
        spans = row_spans(compose(*[m[chosen] for m in steps]), height, width)
        cols = torch.arange(width, device=out.device)
        if image_by_image(per_image, out):
            masks = ((cols >= spans[..., :1]) & (cols < spans[..., 1:])).to(out.dtype)
            for mask, i in zip(masks, chosen.tolist(), strict=True):
                out[i].mul_(mask)
            return out
        whole = torch.tensor([0, width]).repeat(len(out), height, 1)
        whole[chosen] = spans
        whole = to_device(whole, out.device)
        return out.mul_(((cols >= whole[..., :1]) & (cols < whole[..., 1:]))[:, None])
    index = to_device(chosen, out.device)
    mask = frame([m[chosen] for m in steps], height, width, out.device, before[index])
    return out.mul_(before.index_copy(0, index, mask))


def colour_step(
    x: torch.Tensor, draws: PolicyDraws, step: int, per_image: bool | None = None
) -> torch.Tensor:
    """One policy step's colour ops on contiguous float32 (N, C, H, W) whole levels
    0..255, in place, each image at its own magnitude: image by image when `per_image`
    (None: on the CPU), else the images that drew each op taken together (which ones,
    and their magnitudes, are known on the host, where the draws are: no host sync).
    Geometric ops and Identity leave their images as they are. A blend's factor is
    torchvision's `1.0 + magnitude`, and 1 - factor is computed in float64 as Python does."""
    height, width = x.shape[-2:]
    ops, values = draws.ops[:, step], draws.values[:, step]
    for name in BLENDS + LOOKUPS:
        chosen = (ops == CODE[name]).nonzero()[:, 0]
        if len(chosen) == 0 or (name == "Sharpness" and min(height, width) <= 2):
            continue  # torchvision leaves images of 2 px or less unsharpened
        if image_by_image(per_image, x):
            for i, v in zip(chosen.tolist(), values[chosen].tolist(), strict=True):
                _colour_op(name, x[i : i + 1], 1.0 + v, 1.0 - (1.0 + v), v)
            continue
        v = values[chosen]  # one kernel an op for the images that drew it
        params = torch.stack([1.0 + v, 1.0 - (1.0 + v), v], 1).float().view(-1, 3, 1, 1, 1)
        f, g, m = to_device(params, x.device).unbind(1)
        index = to_device(chosen, x.device)
        x.index_copy_(0, index, _colour_op(name, x.index_select(0, index), f, g, m))
    return x


def _colour_op(
    name: str,
    x: torch.Tensor,
    f: torch.Tensor | float,
    g: torch.Tensor | float,
    v: torch.Tensor | float,
) -> torch.Tensor:
    """Colour op `name` on (K, C, H, W) whole levels, in place: f = 1 + magnitude (a
    blend's factor), g = 1 - f, v the magnitude; numbers, or (K, 1, 1, 1) tensors."""
    if name == "Brightness":
        return colour.blend(x, None, f, g)
    if name == "Color":
        return colour.blend(x, colour.grayscale(x), f, g)
    if name == "Contrast":
        return colour.blend(x, colour.grayscale(x).mean((1, 2, 3), keepdim=True), f, g)
    if name == "Sharpness":
        return colour.blend(x, colour.blurred(x), f, g)
    if name == "Posterize":
        return colour.posterize(x, v)
    if name == "Solarize":
        return colour.solarize(x, v)
    if name == "AutoContrast":
        return colour.autocontrast(x)
    return colour.equalize(x)
