"""MixUp and CutMix of a training batch, with soft targets (`augment.mixup_alpha`,
`augment.cutmix_alpha`, `augment.mix_prob`; docs/recipes.md, "MixUp and CutMix").

The operations are torchvision.transforms.v2's, composed as its classification reference
composes them: RandomApply([RandomChoice([MixUp(a), CutMix(b)])], p=mix_prob), the
choice only when both alphas are above 0. Each batch is paired with itself rolled by one
(image i with image i - 1; the batch is shuffled), and one lambda serves the whole batch:

- MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"): lambda ~
  Beta(a, a); images lam * x_i + (1 - lam) * x_(i-1), targets likewise.
- CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers
  with Localizable Features", Algorithm A1): lambda ~ Beta(b, b), a box of half sides
  int(0.5 sqrt(1 - lam) W) and int(0.5 sqrt(1 - lam) H) about a uniform centre, clipped
  to the image, pasted from x_(i-1); the targets use lambda corrected to the share of the
  image left unpasted, 1 - box area / (W H).

Every number is drawn on the host from the run's generator, in torchvision's order
(`rand` for mix_prob, `multinomial` for the choice, the Beta sample, then the box centre
x, y), so a seed gives torchvision's own draws, and resuming from a checkpoint's generator
replays them. What reaches the device is Python numbers (lambda, the box's corners),
arguments of the kernels: no copy, no host sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from flowers_sweep.data.geometry import check_augment
from flowers_sweep.data.sources import class_count

if TYPE_CHECKING:  # only a type here
    from flowers_sweep.trainer.runstate import RunState

Box = tuple[int, int, int, int]  # x1, y1, x2, y2: columns x1..x2-1, rows y1..y2-1


def draw_lambda(alpha: float, gen: torch.Generator) -> float:
    """One sample of Beta(alpha, alpha) from `gen`, in [0, 1].

    torch.distributions.Beta(alpha, alpha).sample() (what torchvision's MixUp and CutMix
    draw) is the first component of a Dirichlet([alpha, alpha]) sample, drawn by
    torch._sample_dirichlet; torch.distributions takes no generator, so the same kernel is
    called here with one: from equal generator states the two give the same float32.
    """
    concentration = torch.tensor([[alpha, alpha]], dtype=torch.float32)
    return float(torch._sample_dirichlet(concentration, generator=gen)[0, 0])


def draw_box(lam: float, height: int, width: int, gen: torch.Generator) -> tuple[Box, float]:
    """CutMix's box for `lam` on H x W images, and lambda corrected by its area.

    The centre (x, y) is uniform over the pixels (x drawn first, as torchvision does);
    the half sides are int(r W) and int(r H) with r = 0.5 sqrt(1 - lam), so the unclipped
    box covers about 1 - lam of the image; clipping at the edges makes it smaller, and
    the returned lambda, 1 - (x2 - x1)(y2 - y1) / (W H), is the share actually kept.
    """
    cx = int(torch.randint(width, (1,), generator=gen))
    cy = int(torch.randint(height, (1,), generator=gen))
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * width), int(r * height)
    x1, y1 = max(cx - half_w, 0), max(cy - half_h, 0)
    x2, y2 = min(cx + half_w, width), min(cy + half_h, height)
    return (x1, y1, x2, y2), 1.0 - (x2 - x1) * (y2 - y1) / (width * height)


def mixup(x: torch.Tensor, lam: float) -> torch.Tensor:
    """(N, ...) float: lam * x_i + (1 - lam) * x_(i-1), a new tensor in x's layout."""
    return lam * x + (1.0 - lam) * x.roll(1, 0)


def cutmix(x: torch.Tensor, box: Box) -> torch.Tensor:
    """(N, C, H, W): a copy of x with each image's `box` taken from image i - 1."""
    x1, y1, x2, y2 = box
    out = x.clone()
    out[..., y1:y2, x1:x2] = x[..., y1:y2, x1:x2].roll(1, 0)
    return out


def soft_targets(y: torch.Tensor, lam: float, num_classes: int) -> torch.Tensor:
    """(N, num_classes) float32 class probabilities: lam on y_i, 1 - lam on y_(i-1)
    (adding where they are the same class). y: (N,) int64 labels, on any device."""
    one = F.one_hot(y, num_classes).float()  # no host check of y's range on a GPU
    return lam * one + (1.0 - lam) * one.roll(1, 0)


@dataclass(frozen=True)
class BatchMix:
    """MixUp and/or CutMix, applied to a batch with probability `prob` (module doc)."""

    mixup_alpha: float
    cutmix_alpha: float
    prob: float
    num_classes: int

    @classmethod
    def from_config(cls, augment_cfg: Any, num_classes: int | None) -> BatchMix | None:
        """From the `augment` group (None or absent keys: off); None when both alphas are
        0, so an unmixed run draws nothing.

        Raises ConfigError on a bad value, ValueError when on without `num_classes`.
        """
        if augment_cfg is None:
            return None
        check_augment(augment_cfg)
        mixup_alpha = float(augment_cfg.get("mixup_alpha", 0.0))
        cutmix_alpha = float(augment_cfg.get("cutmix_alpha", 0.0))
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            return None
        if num_classes is None:
            raise ValueError("MixUp and CutMix need the class count for their soft targets")
        prob = float(augment_cfg.get("mix_prob", 1.0))
        return cls(mixup_alpha, cutmix_alpha, prob, int(num_classes))

    @classmethod
    def for_run(cls, run: RunState) -> BatchMix | None:
        """The run's mixing (its cfg.augment, its data's class count, or its dataset
        node's where the run has no data loaded: a benchmark's state); None: off."""
        augment = run.cfg.get("augment") if run.cfg is not None else None
        if run.data is not None:
            count = run.data.num_classes
        elif run.cfg is not None and "dataset" in run.cfg:
            count = class_count(run.cfg.dataset)
        else:
            count = None
        return cls.from_config(augment, count)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch, mixed or not, its loss target and the label accuracy counts against.

        x: (N, C, H, W) float images (normalised: mixing is affine, so it commutes with
        normalisation); y: (N,) int64 labels. Mixed: (new images, (N, K) float32
        probabilities, (N,) their argmax); else (x, y, y) untouched. The argmax is the
        class with the larger share, the label torchvision's reference counts training
        accuracy against (references/classification/utils.py, `accuracy`).
        """
        if bool(torch.rand(1, generator=gen) >= self.prob):  # RandomApply's draw
            return x, y, y
        use_cutmix = self.mixup_alpha <= 0
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:  # RandomChoice's draw
            use_cutmix = int(torch.multinomial(torch.tensor([0.5, 0.5]), 1, generator=gen)) == 1
        if use_cutmix:
            box, lam = draw_box(draw_lambda(self.cutmix_alpha, gen), *x.shape[-2:], gen)
            x = cutmix(x, box)
        else:
            lam = draw_lambda(self.mixup_alpha, gen)
            x = mixup(x, lam)
        target = soft_targets(y, lam, self.num_classes)
        return x, target, target.argmax(1)
