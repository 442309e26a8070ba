"""Starting weights for a run (`model.weights`): a state_dict file, or torchvision's own.

A file may hold our weights (a run's `model.pt`, `model_best_val.pt`, or a checkpoint) or
torchvision's: the ResNets share torchvision's parameter names. A name such as
`IMAGENET1K_V1` means torchvision's weights enum for the model's depth, read from the
local torch hub cache, never downloaded here: runs are often offline, and a download in
every job of a sweep is the wrong place for it. The classifier is left as built when the
class count differs (102 flowers, not 1,000 ImageNet classes), and the log says so.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowers_sweep.errors import ConfigError

log = logging.getLogger(__name__)
ENUM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_V\d+$")  # IMAGENET1K_V1, IMAGENET1K_V2


def resolve_weights_file(spec: str, model_name: str) -> Path:
    """The file behind `model.weights`; one-line errors name what is missing and where."""
    if not ENUM_NAME.match(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.weights={spec!r} is invalid: no such file")
        return path
    import torchvision

    try:
        enum = torchvision.models.get_weight(f"ResNet{model_name[6:]}_Weights.{spec}")
    except (KeyError, ValueError, AttributeError):
        raise ConfigError(
            f"model.weights={spec!r} is invalid: torchvision has no such weights for "
            f"{model_name} (e.g. IMAGENET1K_V1), and no file of that name exists"
        ) from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    if not path.is_file():
        raise ConfigError(
            f"model.weights={spec}: torchvision's file {path} is not here and nothing is "
            f"downloaded at run time; fetch {enum.url} into {path.parent} (or give the "
            f"file's path as model.weights)"
        )
    return path


def load_weights(model: nn.Module, spec: str, model_name: str) -> None:
    """Copy matching tensors into the model; a different classifier stays as built.

    model_name is the architecture's name (`resnet18`), which picks torchvision's enum.
    """
    path = resolve_weights_file(spec, model_name)
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"model.weights={spec!r}: {path} is not a state_dict ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint.pt
    own = model.state_dict()
    foreign = [k for k in state if k not in own]
    if foreign:
        raise ConfigError(
            f"model.weights={spec!r}: {path} is for another architecture ({len(foreign)} "
            f"tensors this {model_name} does not have, e.g. {foreign[0]})"
        )
    fits = {k: v for k, v in state.items() if v.shape == own[k].shape}
    misfits = [k for k in state if k not in fits]
    if any(not k.startswith("fc.") for k in misfits):
        raise ConfigError(f"model.weights={spec!r}: shapes differ beyond the classifier: "
                          f"{', '.join(misfits[:3])}")  # fmt: skip
    model.load_state_dict(fits, strict=False)
    new = [k for k in own if k not in fits]
    why = ""
    if "fc.weight" in misfits:
        why = (f" (classifier replaced: the file has {state['fc.weight'].shape[0]} classes, "
               f"this run {own['fc.weight'].shape[0]})")  # fmt: skip
    log.info("loaded %d of %d tensors from %s; new, as built: %s%s", len(fits), len(own), path,
             ", ".join(new) or "none", why)  # fmt: skip
