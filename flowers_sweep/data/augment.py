"""Batch augmentation and normalisation of uint8 image batches.

The report augments one full-size PIL photo at a time (vertical flip, then rotation
within +-10 degrees, nearest neighbour, black fill), then resizes it to a square with
antialiasing. We draw the same per-image randomness for a whole batch and stay in uint8
until normalisation.

The cache holds each photo already squashed to the square. A rotation applied after an
anisotropic squash is a rotation plus a shear, so the geometry is carried over instead:
the report's flip and rotation, conjugated by that image's own squash (its original
width and height are cached), is one affine map of the square. One bicubic sampling
kernel applies it to the whole batch, on the CPU or an accelerator alike: bicubic
stands in for the report's final antialiased resize best (measured by
benchmarks/augment_fidelity.py; bilinear, nearest, PIL's and OpenCV's cubic all came
out further from the report).

Images cached at their native size (the synthetic dataset) have no resize to smooth
them: there the report's operation is the plain nearest-neighbour rotation, kept as is.

torchvision's horizontal flip, padded crop and resized crop (`geometry`) join the same
single warp when on, and so do the geometric ops of a per-image policy (`policies`:
TrivialAugmentWide, RandAugment), whose colour ops follow the warp; random erasing
(`erasing`) follows the normalisation. Off, nothing of theirs is drawn or computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from flowers_sweep.data import erasing, geometry, policies
from flowers_sweep.data.geometry import RATIO, Draws, check_augment
from flowers_sweep.trainer.hardware import to_device


def vertical_flip(batch: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Flip each image upside down with probability p."""
    if p <= 0:
        return batch
    flip = torch.rand(len(batch), generator=gen) < p
    # A select over the whole batch, not an index of the chosen few: no host sync on a GPU.
    mask = to_device(flip, batch.device).view(-1, 1, 1, 1)
    return torch.where(mask, batch.flip(-2), batch)


def rotate(batch: torch.Tensor, degrees: float, gen: torch.Generator) -> torch.Tensor:
    """Rotate each image by its own angle in [-degrees, degrees] about the centre.

    Nearest-neighbour with zero fill, like torchvision's RandomRotation defaults.
    """
    if degrees <= 0:
        return batch
    angles = (torch.rand(len(batch), generator=gen) * 2 - 1) * degrees
    return rotate_by(batch, angles)


def rotate_by(batch: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image i counter-clockwise by degrees[i] (torchvision's convention)."""
    n, c, h, w = batch.shape
    angles = to_device(degrees.float(), batch.device) * (math.pi / 180)
    cos, sin = angles.cos(), angles.sin()
    ys = torch.arange(h, device=batch.device, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=batch.device, dtype=torch.float32) - (w - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    # Inverse map: each output pixel takes the input pixel it came from, or black
    # when that lies outside the image.
    sx = cos[:, None, None] * gx - sin[:, None, None] * gy + (w - 1) / 2
    sy = sin[:, None, None] * gx + cos[:, None, None] * gy + (h - 1) / 2
    sx, sy = sx.round().long(), sy.round().long()
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    src = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)).view(n, 1, h * w)
    out = batch.reshape(n, c, h * w).gather(2, src.expand(n, c, h * w))
    return (out * inside.view(n, 1, h * w)).view(n, c, h, w)


def squash_conjugated(
    flips: torch.Tensor, degrees: torch.Tensor, sizes: torch.Tensor
) -> torch.Tensor:
    """(N, 2, 2): for each image, where each output pixel of the square takes its input.

    In the photo's own coordinates (about its centre, y down) the report's rotation by t
    reads its input at M p, M = [[cos t, -sin t], [sin t, cos t]] (PIL's convention), and
    its earlier flip negates y. Squashing W x H to S x S is D = diag(S/W, S/H), so on the
    square the same geometry is D M D^-1: the off-diagonal terms scaled by H/W and W/H.
    """
    t = degrees.double() * (math.pi / 180)
    cos, sin = t.cos(), t.sin()
    ratio = sizes[:, 1].double() / sizes[:, 0].double()  # H / W
    m = torch.stack(
        [torch.stack([cos, -sin * ratio], -1), torch.stack([sin / ratio, cos], -1)], -2
    )
    m[flips.bool(), 1, :] *= -1  # the flip comes first: it negates the input's y
    return m


def warp(
    batch: torch.Tensor, maps: torch.Tensor, mode: str = "bicubic", padding_mode: str = "zeros"
) -> torch.Tensor:
    """Float (0-255) images warped by each one's map (`squash_conjugated`), black fill.

    maps: (N, 2, 2), or (N, 2, 3) with a shift in pixels (`geometry.compose`). One
    sampling kernel for the batch, on whatever device holds it, with no host sync
    (the maps are built on the host and queued with the batch). Bicubic, because it
    comes closest to the report's rotate-then-resize: on generated 667x500 JPEGs the
    mean absolute difference is 0.90 (bilinear 1.17, nearest 2.05; benchmarks/
    augment_fidelity.py). The result stays float: normalisation comes next anyway.
    padding_mode "border" repeats the edge pixels, as F.interpolate does at a crop's edge.
    """
    h, w = batch.shape[-2:]
    # grid_sample reads its input at coordinates running from -1 to 1 over the pixel
    # edges of each axis; the maps work in pixels about the centre
    scale = torch.tensor([[2 / w, 0], [0, 2 / h]], dtype=torch.float64)
    shift = None
    if maps.shape[-1] == 3:  # one copy to the device: the shift rides with the linear part
        maps, shift = maps[..., :2], maps[..., 2:]
        both = torch.cat([scale @ maps @ scale.inverse(), scale @ shift], 2).float()
        linear, shift = to_device(both, batch.device).split([2, 1], 2)
    else:
        linear = to_device((scale @ maps @ scale.inverse()).float(), batch.device)
    xs = (torch.arange(w, device=batch.device) * 2 + 1) / w - 1  # output pixel centres
    ys = (torch.arange(h, device=batch.device) * 2 + 1) / h - 1
    # (n, h, w, 2): input x, y of each output pixel (affine_grid's result, 3x faster here),
    # a column term plus a row term: the shift joins the small row term, so the one
    # full-size tensor is the sum
    rows = ys.view(1, h, 1, 1) * linear[:, None, None, :, 1]
    if shift is not None:
        rows = rows + shift[:, None, None, :, 0]
    grid = xs.view(1, 1, w, 1) * linear[:, None, None, :, 0] + rows
    out = F.grid_sample(
        batch.float(), grid, mode=mode, padding_mode=padding_mode, align_corners=False
    )
    return out.clamp_(0, 255)  # bicubic overshoots at edges; the report's pixels cannot


def draw_geometry(
    n: int, vflip_p: float, degrees: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's flip and angle, drawn as `vertical_flip` then `rotate` draw them."""
    flips = (
        torch.rand(n, generator=gen) < vflip_p if vflip_p > 0 else torch.zeros(n, dtype=torch.bool)
    )
    angles = (torch.rand(n, generator=gen) * 2 - 1) * degrees if degrees > 0 else torch.zeros(n)
    return flips, angles


def apply_geometry(
    batch: torch.Tensor, flips: torch.Tensor, degrees: torch.Tensor, sizes: torch.Tensor
) -> torch.Tensor:
    """The report's flip and rotation of the photos behind a batch of squashed squares,
    as float images on the 0-255 scale."""
    return warp(batch, squash_conjugated(flips, degrees, sizes))


Affine = tuple[torch.Tensor, torch.Tensor]


def channel_affine(
    mean: Sequence[float], std: Sequence[float], device: torch.device, dtype: torch.dtype
) -> Affine:
    """(x/255 - m) / s  ==  x * (1 / (255 s)) + (-m / s): the scale and shift, per channel.

    Built on the host and queued to the device, once per run rather than once per batch.
    """
    mean_t = torch.tensor(mean, dtype=dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=dtype).view(1, -1, 1, 1)
    return to_device(1 / (255 * std_t), device), to_device(-mean_t / std_t, device)


def normalize(
    batch: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format,
    affine: Affine | None = None,
) -> torch.Tensor:
    """uint8 (0..255) to float, then per-channel (x - mean) / std as ToTensor+Normalize.

    The float batch is laid out as the model wants it (channels_last or not), so the
    layout change costs nothing extra: it happens in the conversion copy.
    """
    scale, shift = affine or channel_affine(mean, std, batch.device, dtype)
    out = batch.to(dtype=dtype, memory_format=memory_format)
    return out.mul_(scale).add_(shift)  # two in-place passes, one buffer


def augment_planes(
    batch: torch.Tensor, vflip_p: float, degrees: float, gen: torch.Generator
) -> torch.Tensor:
    """Flip and rotate a CPU uint8 batch image by image with PIL, as the report did.

    Draws its random numbers exactly as `vertical_flip` then `rotate` do, so a seed
    gives the same augmentation on CPU and GPU (up to rounding ties of the rotation).
    """
    n = len(batch)
    flips = (torch.rand(n, generator=gen) < vflip_p).tolist() if vflip_p > 0 else [False] * n
    angles = ((torch.rand(n, generator=gen) * 2 - 1) * degrees).tolist() if degrees > 0 else None
    src = batch.numpy()
    out = np.empty_like(src)
    for i in range(n):
        for c in range(src.shape[1]):
            plane = Image.fromarray(src[i, c])
            if flips[i]:
                plane = plane.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
            if angles is not None:
                plane = plane.rotate(angles[i], Image.Resampling.NEAREST)
            out[i, c] = np.asarray(plane)
    return torch.from_numpy(out)


def to_grayscale(batch: torch.Tensor) -> torch.Tensor:
    """PIL's "L" conversion bit for bit (ITU-R 601-2 luma in 16-bit fixed point),
    repeated into three identical channels."""
    wide = batch.to(torch.int32)  # scalar weights: no tensor to copy to the device
    luma = wide[:, 0:1] * 19595 + wide[:, 1:2] * 38470 + wide[:, 2:3] * 7471 + 0x8000
    return (luma >> 16).to(torch.uint8).expand_as(batch).contiguous()


class BatchAugment:
    """The `augment` config group as batch functions: train and eval views of uint8 data.

    Greyscale is a property of the input, not an augmentation: it applies to every
    split, so a greyscale-trained model is also evaluated on greyscale images.

    The report's moves (vflip_p, rotation) run as they always have unless a torchvision
    move is on: hflip_p (RandomHorizontalFlip), crop_padding (RandomCrop(size, padding=P))
    or resized_crop_scale with resized_crop_ratio (RandomResizedCrop(size, scale, ratio)).
    Then the pipeline vflip, rotation, crop, hflip is one affine map per image applied by
    one `warp` (`warp_view`); the new moves draw after the report's, only when on.
    A policy (TrivialAugmentWide or RandAugment, `policies`) adds its geometric ops to
    that map and its colour ops after it, drawn after the moves; random erasing with
    probability erase_p (`erasing`) acts on the normalised batch, drawn last.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        vflip_p: float = 0.0,
        rotation: float = 0.0,
        grayscale: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
        hflip_p: float = 0.0,
        crop_padding: int = 0,
        resized_crop_scale: Sequence[float] | None = None,
        resized_crop_ratio: Sequence[float] = RATIO,
        policy: str | None = None,
        num_ops: int = 2,
        magnitude: int = 9,
        erase_p: float = 0.0,
    ) -> None:
        self.mean, self.std = list(mean), list(std)
        self.memory_format = memory_format
        self.vflip_p, self.rotation, self.grayscale = vflip_p, rotation, grayscale
        self.hflip_p, self.crop_padding = hflip_p, crop_padding
        scale = resized_crop_scale
        self.resized_crop_scale = None if scale is None else (float(scale[0]), float(scale[1]))
        self.resized_crop_ratio = (float(resized_crop_ratio[0]), float(resized_crop_ratio[1]))
        self.policy, self.num_ops, self.magnitude = policy, num_ops, magnitude
        self.erase_p = erase_p
        self.moves = hflip_p > 0 or crop_padding > 0 or scale is not None or policy is not None
        self._affine: dict[torch.device, Affine] = {}

    @classmethod
    def from_config(
        cls,
        augment_cfg: Any,
        mean: Sequence[float],
        std: Sequence[float],
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> BatchAugment:
        """From the `augment` group (checked by `check_augment`); saved configs older than
        a key get its default, which leaves their augmentation as it was."""
        check_augment(augment_cfg)
        get = augment_cfg.get
        return cls(
            mean, std, get("vflip_p", 0.0), get("rotation", 0.0), bool(get("grayscale", False)),
            memory_format, hflip_p=get("hflip_p", 0.0), crop_padding=get("crop_padding", 0),
            resized_crop_scale=get("resized_crop_scale"),
            resized_crop_ratio=get("resized_crop_ratio", RATIO), policy=get("policy"),
            num_ops=get("num_ops", 2), magnitude=get("magnitude", 9),
            erase_p=get("erase_p", 0.0),
        )  # fmt: skip

    def train_view(
        self, batch: torch.Tensor, gen: torch.Generator | None, sizes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """sizes: each image's original (width, height) when the cache squashed it."""
        out = self._train_view(batch, gen, sizes)
        if gen is not None and self.erase_p > 0:  # after normalisation, as torchvision's
            boxes = erasing.draw_erasing(len(out), *out.shape[-2:], self.erase_p, gen)
            out = erasing.erase(out, boxes)
        return out

    def _train_view(
        self, batch: torch.Tensor, gen: torch.Generator | None, sizes: torch.Tensor | None
    ) -> torch.Tensor:
        if gen is not None and self.moves:
            return self._normalize(self.warp_view(batch, gen, sizes)[0])
        if gen is not None and (self.vflip_p > 0 or self.rotation > 0):
            if sizes is not None:
                if self.grayscale:  # first, as the report's transform: exact on uint8
                    batch = to_grayscale(batch)
                flips, angles = draw_geometry(len(batch), self.vflip_p, self.rotation, gen)
                return self._normalize(apply_geometry(batch, flips, angles, sizes))
            if batch.device.type == "cpu":
                batch = augment_planes(batch, self.vflip_p, self.rotation, gen)
            else:
                batch = rotate(vertical_flip(batch, self.vflip_p, gen), self.rotation, gen)
        return self.eval_view(batch, None)

    def draw(self, n: int, height: int, width: int, gen: torch.Generator) -> Draws:
        """n images' moves: the report's as `draw_geometry`, then the crop, then hflip,
        then the policy's ops (`policies.draw_policy`)."""
        vflips, angles = draw_geometry(n, self.vflip_p, self.rotation, gen)
        crops, hflips = geometry.draw_moves(
            n, height, width, gen, self.hflip_p, self.crop_padding,
            self.resized_crop_scale, self.resized_crop_ratio,
        )  # fmt: skip
        if self.policy is None:
            return Draws(vflips, angles, crops, hflips)
        ops = policies.draw_policy(
            n, height, width, self.policy, self.num_ops, self.magnitude, gen
        )
        return Draws(vflips, angles, crops, hflips, ops)

    def warp_view(
        self, batch: torch.Tensor, gen: torch.Generator, sizes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Draws]:
        """All the moves as one warp: float32 (N, C, H, W) on 0-255, and what was drawn.

        batch: (N, C, H, W) uint8; sizes: (N, 2) photo (width, height) on the host when
        the cache squashed them (the report's moves then act on the photo), else None.
        Sampling: bicubic for squashed images with a rotation (stands in for the report's
        resize), nearest for native ones with a rotation (the report's), else bilinear
        (RandomResizedCrop's), with the edge repeated as F.interpolate does unless a
        rotation or a padded crop brings in black.

        With a policy: its geometric ops join the map, sampled nearest unless a rotation
        or a resized crop sets the mode; black outside their frame; the result rounded
        to whole levels (the uint8 image torchvision's policy receives), then each
        policy step's colour ops (`policies.colour_step`).
        """
        if self.grayscale:  # first, as the report's transform: exact on uint8
            batch = to_grayscale(batch)
        n, _, h, w = batch.shape
        d = self.draw(n, h, w, gen)
        return self.apply_draws(batch, d, sizes), d

    def apply_draws(
        self, batch: torch.Tensor, d: Draws, sizes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`warp_view`'s result for given draws (`draw`): float32 (N, C, H, W) on 0-255."""
        n, _, h, w = batch.shape
        photo = sizes if sizes is not None else torch.ones(n, 2)  # ones: no squash
        steps = [] if d.policy is None else policies.policy_maps(d.policy, h, w)
        maps = geometry.moves_maps(
            squash_conjugated(d.vflips, d.angles, photo), d, h, w, self.crop_padding, steps
        )
        resized = self.resized_crop_scale is not None
        policy = d.policy is not None
        mode, fill = geometry.sampling(
            sizes is not None, self.rotation, self.crop_padding, policy, resized
        )
        out = warp(batch, maps, mode, fill)
        mask = None
        if self.crop_padding > 0:  # the padding is black even where the map sees beyond
            mask = geometry.frame_mask(d, h, w, self.crop_padding, out.device)
        if d.policy is not None:
            out = policies.black_outside(out, d.policy, steps, mask)
        elif mask is not None:
            out.mul_(mask)
        if d.policy is not None:
            if mode != "nearest":  # nearest samples of whole levels are whole already
                out.round_()
            for k in range(d.policy.ops.shape[1]):
                out = policies.colour_step(out, d.policy, k)
        return out

    def eval_view(
        self, batch: torch.Tensor, gen: torch.Generator | None = None, sizes: Any = None
    ) -> torch.Tensor:
        if self.grayscale:
            batch = to_grayscale(batch)
        return self._normalize(batch)

    def _normalize(self, batch: torch.Tensor) -> torch.Tensor:
        affine = self._affine.get(batch.device)
        if affine is None:
            affine = channel_affine(self.mean, self.std, batch.device, torch.float32)
            self._affine[batch.device] = affine
        return normalize(
            batch, self.mean, self.std, memory_format=self.memory_format, affine=affine
        )
