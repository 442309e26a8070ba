"""Model EMA (`trainer.ema_decay`, `ema_every`, `ema_warmup`): an exponential moving
average of the model's weights, validated and tested beside the model (Polyak and
Juditsky, SIAM J. Control Optim. 30(4), 1992, averaged iterates; torchvision's reference
`--model-ema`, timm's `--model-ema`).

After every `every`-th optimizer step of the run, each parameter and buffer of the copy
moves towards the model's: `ema = decay * ema + (1 - decay) * model`, the update of
`torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
use_buffers=True)`, op for op: floating tensors by `torch._foreach_lerp_(ema, model,
1 - decay)`, integer ones (batch norm's `num_batches_tracked`) by
`ema.copy_(ema * decay + model * (1 - decay))`, truncated, as AveragedModel does; the
first update copies the model. Unlike AveragedModel it counts updates in Python ints,
so no update reads a number on the host (AveragedModel's `n_averaged == 0` does).

`decay` is per update, as given: torchvision's reference instead scales its
`--model-ema-decay` d by the run's length, `alpha = min(1, (1 - d) * world_size *
batch_size * model_ema_steps / epochs)`, decay `1 - alpha` (references/classification/
train.py). To reproduce one of its recipes, give that `1 - alpha` as `ema_decay`.
Warm-up (torchvision's `if epoch < args.lr_warmup_epochs: model_ema.n_averaged.fill_(0)`
after each update): during the run's first `warmup` epochs every update copies the
model, and so does the first update after them, from which the average starts.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["ModelEma", "build_ema"]


class ModelEma:
    """The moving average of `model`'s parameters and buffers, on the model's device
    and in its dtypes and memory layout (a deep copy, in eval mode, without gradients).

    `decay` in (0, 1): the old average's weight per update; `every` >= 1: optimizer
    steps between updates; `warmup` >= 0: epochs at the start whose updates copy the
    model. `module` is the average, ready to evaluate; `steps` counts the run's
    optimizer steps, `updates` the averaging updates since the last copy (Python ints,
    saved in the checkpoint with the weights: `state_dict`).
    """

    def __init__(self, model: nn.Module, decay: float, every: int = 1, warmup: int = 0) -> None:
        self.decay, self.every, self.warmup = float(decay), int(every), int(warmup)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.steps = 0
        self.updates = 0
        self.warming = warmup > 0  # set per epoch by `start_epoch`
        pairs = list(zip(tensors(self.module), tensors(model), strict=True))
        self.floats = [(e, m) for e, m in pairs if e.is_floating_point() or e.is_complex()]
        self.ints = [(e, m) for e, m in pairs if not (e.is_floating_point() or e.is_complex())]

    def start_epoch(self, epoch: int) -> None:
        """Epoch `epoch` (1-based) begins: its updates copy the model while
        epoch <= warmup (torchvision's 0-based `epoch < lr_warmup_epochs`)."""
        self.warming = epoch <= self.warmup

    @torch.no_grad()
    def step(self) -> None:
        """One optimizer step of the model was taken: update the average when it is
        the `every`-th. No host sync (the count is a Python int)."""
        self.steps += 1
        if self.steps % self.every:
            return
        if self.updates == 0:
            for e, m in self.floats + self.ints:
                e.copy_(m)
        else:
            if self.floats:
                ema, model = zip(*self.floats, strict=True)
                torch._foreach_lerp_(list(ema), list(model), 1 - self.decay)
            for e, m in self.ints:  # AveragedModel's non-float path, truncated
                e.copy_(e * self.decay + m * (1 - self.decay))
        self.updates = 0 if self.warming else self.updates + 1

    def state_dict(self) -> dict[str, Any]:
        """The average's weights and its counts: tensors and ints, for checkpoint.pt."""
        return {"weights": self.module.state_dict(), "steps": self.steps, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` saved (copied into the average's own tensors)."""
        self.module.load_state_dict(state["weights"])
        self.steps, self.updates = int(state["steps"]), int(state["updates"])


def tensors(model: nn.Module) -> list[torch.Tensor]:
    """The model's parameters then its buffers, detached, in module order (the order
    AveragedModel pairs them in)."""
    return [t.detach() for t in (*model.parameters(), *model.buffers())]


def build_ema(model: nn.Module, trainer: Any) -> ModelEma | None:
    """The run's EMA from the `trainer` node's ema_decay, ema_every and ema_warmup;
    None when ema_decay is null (no copy is made, nothing changes). Warns of settings
    that leave the EMA nothing to do: ema_every or ema_warmup without ema_decay (no EMA
    is kept), a warm-up over every epoch (the EMA is the model's copy)."""
    if trainer is None:
        return None
    decay, epochs = trainer.get("ema_decay"), trainer.get("epochs")
    every, warmup = trainer.get("ema_every", 1), trainer.get("ema_warmup", 0)
    if decay is None:
        if (every, warmup) != (1, 0):
            log.warning(
                "trainer.ema_every=%s, trainer.ema_warmup=%s set without trainer.ema_decay: "
                "no EMA is kept",
                every,
                warmup,
            )
        return None
    if epochs is not None and warmup >= epochs:
        log.warning(
            "trainer.ema_warmup=%d covers all %d epochs: the EMA is the model's copy",
            warmup,
            epochs,
        )
    return ModelEma(model, decay, every, warmup)
