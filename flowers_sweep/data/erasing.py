"""Random erasing (Zhong et al. 2020, "Random Erasing Data Augmentation") for a batch:
torchvision.transforms.RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)
with its box draws for every image at once, applied after normalisation as torchvision's
classification reference applies it (value 0 is the mean colour there).
"""

from __future__ import annotations

import torch

from flowers_sweep.trainer.hardware import image_by_image, to_device

SCALE = (0.02, 0.33)  # RandomErasing's defaults: the box's share of the area
RATIO = (0.3, 3.3)  # and its aspect ratio h / w, log-uniform
TRIES = 10  # RandomErasing.get_params tries this many boxes


def draw_erasing(n: int, height: int, width: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 4) int64 boxes (top, left, height, width) to erase; 0 x 0 for images not erased.

    Drawn on the host from `gen`, in this order for the whole batch: whether each image is
    erased (probability p), 10 candidate boxes each (area a fraction of H*W uniform in
    SCALE, then the ratio log-uniform in RATIO, as float32, try after try), then a top
    and left. Of the candidates, h = round(sqrt(area * ratio)), w = round(sqrt(area /
    ratio)), the first with h < H and w < W is kept, at a uniform position (torchvision's
    randint(0, H - h + 1)); with none, the image is left as it is, as torchvision does.
    The sizes are those RandomErasing.get_params computes from the same uniforms.
    """
    erase = torch.rand(n, generator=gen) < p
    u = torch.rand(n, TRIES, 2, generator=gen)
    pos = torch.rand(n, 2, generator=gen).double()
    log_ratio = torch.log(torch.tensor(RATIO))  # float32, as torchvision
    lo = torch.stack([torch.tensor(SCALE[0]), log_ratio[0]])
    hi = torch.stack([torch.tensor(SCALE[1]), log_ratio[1]])
    # uniform_(lo, hi) on float32: x * (hi - lo) + lo in double, stored as float32
    v = (u.double() * (hi - lo).double() + lo.double()).float()
    area = height * width * v[..., 0].double()
    aspect = v[..., 1].exp().double()
    h = (area * aspect).sqrt().round().long()
    w = (area / aspect).sqrt().round().long()
    valid = (h < height) & (w < width)
    first = valid.int().argmax(1, keepdim=True)  # the first valid try
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    keep = erase & valid.any(1)
    h, w = torch.where(keep, h, 0), torch.where(keep, w, 0)
    top = (pos[:, 0] * (height - h + 1)).floor().long()
    left = (pos[:, 1] * (width - w + 1)).floor().long()
    return torch.stack([torch.where(keep, top, 0), torch.where(keep, left, 0), h, w], 1)


def erase(batch: torch.Tensor, boxes: torch.Tensor, per_box: bool | None = None) -> torch.Tensor:
    """batch (N, C, H, W) float, in place: each image's box (`draw_erasing`, on the host)
    set to 0 in every channel. Box by box when `per_box` (None: on the CPU), a slice
    each, so that only the boxes are written; else one mask for the batch, built on the
    batch's device: no host sync."""
    height, width = batch.shape[-2:]
    if image_by_image(per_box, batch):
        for i, (top, left, h, w) in enumerate(boxes.tolist()):
            if h > 0:
                batch[i, :, top : top + h, left : left + w] = 0.0
        return batch
    top, left, h, w = to_device(boxes, batch.device).unbind(1)
    rows = torch.arange(height, device=batch.device)
    cols = torch.arange(width, device=batch.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    return batch.masked_fill_(in_rows[:, None, :, None] & in_cols[:, None, None, :], 0.0)
