"""One pass over a split: `train_one_epoch` and `eval_one_epoch`, with no host sync.

On a GPU, reading a number (`.item()`, `if loss.isnan()`) waits for every queued
kernel, so the passes keep their sums on the device and are read once, at the end;
a NaN loss is still caught within a few batches by `FiniteCheck`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from flowers_sweep.data.loaders import BatchSource
from flowers_sweep.errors import DivergedError
from flowers_sweep.trainer.mixing import BatchMix

if TYPE_CHECKING:  # only a type here: the loop needs none of the set-up's imports
    from flowers_sweep.trainer.runstate import RunState


def progress_bar(it: Any, total: int, desc: str) -> Any:
    """A bar on a terminal; silent otherwise (an epoch line is logged instead)."""
    return tqdm(it, total=total, desc=desc, leave=False, disable=None)  # None: a TTY only


class FiniteCheck:
    """Stops training at the first NaN or infinite loss, without stalling a GPU.

    On the CPU each loss is looked at as it comes. On a GPU each batch instead queues a
    copy of its loss into page-locked host memory, and the copies are read once they
    have landed (an event says so): a NaN stops the run a few batches late, with no
    host sync.

    `stream` is the one the losses are computed on (default: the current stream of
    `device`, the run's GPU, which need not be the current device). The copy is queued
    and the event recorded on it, so the event cannot complete before the copy has.
    """

    def __init__(self, device: torch.device, stream: Any = None) -> None:
        self.device = device
        self.stream = stream
        if device.type == "cuda" and stream is None:
            self.stream = torch.cuda.current_stream(device)
        self.pending: deque[tuple[torch.Tensor, Any, str]] = deque()

    def __call__(self, loss: torch.Tensor, where: str) -> None:
        if self.device.type != "cuda":
            self._check(loss, where)
            return
        with torch.cuda.stream(self.stream):  # also makes the stream's GPU current
            host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            host.copy_(loss.detach(), non_blocking=True)
            landed = self.stream.record_event()
        self.pending.append((host, landed, where))
        while self.pending and self.pending[0][1].query():
            host, _, at = self.pending.popleft()
            self._check(host, at)

    @staticmethod
    def _check(loss: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss):
            raise DivergedError(f"training loss became {loss.item()} in {where}")


@dataclass
class Tally:
    """A pass's summed loss and number correct, still on the device, and its image count."""

    loss_sum: torch.Tensor  # () float32
    correct: torch.Tensor  # () int64
    seen: int

    def means(self) -> tuple[float, float]:
        """Mean loss and accuracy (in [0, 1]): the pass's one host sync."""
        return self.loss_sum.item() / self.seen, self.correct.item() / self.seen


def train_one_epoch(
    run: RunState, batches: BatchSource | None = None, desc: str = "train"
) -> Tally:
    """One pass of `run.step_model` over the shuffled, augmented training split (or
    `batches`), drawing from `run.gen`, stepping `run.optimizer` once per batch, or once
    per `trainer.accumulate` batches (`Stepper`). With augment's MixUp or CutMix on
    (mixing.BatchMix) batches are mixed first, the loss taken on soft targets and
    accuracy counted against each mixed image's larger share.

    Raises DivergedError at a NaN or infinite loss.
    """
    batches = run.data.train if batches is None else batches
    model, optimizer, device = run.step_model, run.optimizer, run.device
    trainer = run.cfg.trainer if run.cfg is not None else {}
    smoothing = float(trainer.get("label_smoothing", 0.0))
    stepper = Stepper(run, trainer.get("accumulate", 1), trainer.get("clip_grad_norm"))
    model.train()
    tally = Tally(torch.zeros((), device=device), torch.zeros((), device=device).long(), 0)
    finite = FiniteCheck(device)
    mix = BatchMix.for_run(run)  # MixUp/CutMix (mixing.py); None: off, nothing drawn
    compiled = hasattr(model, "_orig_mod")  # torch.compile's OptimizedModule
    for i, (x, y) in enumerate(progress_bar(batches(run.gen), len(batches), desc)):
        if len(y) < batches.batch_size and (len(y) == 1 or compiled) and len(batches) > 1:
            # A short last batch is left out (its images were still drawn, so the
            # generator stays in step): batch norm cannot train on one image, and a
            # compiled model would compile a second graph for another batch size.
            continue
        x, target, label = mix(x, y, run.gen) if mix is not None else (x, y, y)
        with run.cast():
            logits = model(x)
            loss = F.cross_entropy(logits, target, label_smoothing=smoothing)
        finite(loss, f"{desc}, batch {i + 1}")
        if stepper.plain:  # today's step, bit for bit
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if stepper.ema is not None:  # the model's moving average (ema.py)
                stepper.ema.step()
        else:
            stepper.backward(loss, len(y), batches.batch_size)
        tally.loss_sum += loss.detach() * len(y)
        tally.correct += (logits.argmax(1) == label).sum()  # label: y, or a mix's major class
        tally.seen += len(y)
    stepper.finish()
    return tally


class Stepper:
    """Optimizer steps with gradient accumulation, clipping and fp16's gradient scaler.

    Accumulation (timm train.py's `--grad-accum-steps`): `every` batches of B images
    each add their mean loss times len(y) / (every * B) to the gradients, and the
    optimizer steps once they are in, so a step's gradient is that of the mean loss
    over its every * B images: in exact arithmetic 2 x 16 is one step of 32 (the only
    difference is the order float32 sums in). The batches left at the epoch's end (fewer
    than `every`, or a short last batch) make one last step, its gradient rescaled to the
    mean over the images it saw. The schedule still steps once per epoch.

    Clipping (torch.nn.utils.clip_grad_norm_, torchvision's `--clip-grad-norm`): the
    gradients' global L2 norm is scaled down to at most `clip` before each step; the
    gradients are fp32 (autocast casts only the forward's operations); under fp16 they
    are unscaled first (`GradScaler.unscale_`), so the bound is on the true norm.

    fp16 (`run.scaler`, hardware.grad_scaler): the loss is scaled before each backward
    and the step goes through the scaler, which skips a step whose gradients overflowed.
    Accumulation and clipping read nothing on the host; the scaler's step does (once per
    step, to learn whether to skip), except with an optimizer that takes the scaling
    into its own kernels (torch's fused Adam, AdamW and SGD, `fused=True`).
    """

    def __init__(self, run: RunState, every: int, clip: float | None) -> None:
        self.model, self.optimizer = run.model, run.optimizer
        self.every, self.clip = int(every), clip
        self.scaler = run.scaler
        self.plain = self.every == 1 and clip is None and self.scaler is None
        self.ema = run.ema  # updated after each step (ema.py)
        self.batches = 0  # accumulated since the last step
        self.images = 0  # in those batches
        self.full = 0  # images in a whole group: every * B

    def backward(self, loss: torch.Tensor, images: int, batch_size: int) -> None:
        """Add `loss`'s (a batch's mean) share of the step's gradient; step when due."""
        if self.batches == 0:
            self.optimizer.zero_grad(set_to_none=True)
        self.full = self.every * batch_size
        share = loss * (images / self.full) if self.every > 1 else loss
        (share if self.scaler is None else self.scaler.scale(share)).backward()
        self.batches += 1
        self.images += images
        if self.batches == self.every:
            self.step()

    def step(self) -> None:
        """Clip and step; a partial group's gradients first rescaled to its mean."""
        if self.scaler is not None and self.clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
        if self.every > 1 and self.images != self.full:
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.mul_(self.full / self.images)
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.ema is not None:
            self.ema.step()
        self.batches, self.images = 0, 0

    def finish(self) -> None:
        """Step on what the epoch's last batches accumulated, if any."""
        if self.batches:
            self.step()


def padded(x: torch.Tensor, size: int) -> torch.Tensor:
    """`x` (N, C, H, W) with zero images appended up to `size`, in x's memory layout.
    In eval mode each image's output depends on that image alone, so slicing the first
    N outputs gives what the short batch would have."""
    if len(x) >= size:
        return x
    layout = (
        torch.channels_last
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        else torch.contiguous_format
    )
    zeros = x.new_zeros((size - len(x), *x.shape[1:]))
    return torch.cat([x, zeros]).contiguous(memory_format=layout)


@torch.no_grad()
def eval_one_epoch(run: RunState, batches: BatchSource) -> tuple[float, float]:
    """Mean cross-entropy loss (fp32) and top-1 accuracy in [0, 1] over `batches`, with
    the run's model, device and number format, in eval mode."""
    model = run.step_model
    model.eval()
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.long)
    compiled = hasattr(model, "_orig_mod")
    for x, y in batches():
        if compiled:  # one graph: the short last batch is padded to the full size
            x = padded(x, batches.batch_size)
        with run.cast():
            logits = model(x)[: len(y)]
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / batches.num_samples, correct.item() / batches.num_samples
