"""Starting weights for a run (`model.weights`): a state_dict file, or torchvision's own.

A file may hold our weights (a run's `model.pt`, `model_best_val.pt`, or a checkpoint) or
torchvision's: the ResNets share torchvision's parameter names. A name such as
`IMAGENET1K_V1` means torchvision's weights enum for the model's name (`resnet18`,
`efficientnet_b0`: torchvision's `get_model_weights`), read from the
local torch hub cache, never downloaded here: runs are often offline, and a download in
every job of a sweep is the wrong place for it. The classifier is left as built when the
class count differs (102 flowers, not 1,000 ImageNet classes), and the log says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowers_sweep.errors import ConfigError
from flowers_sweep.paths import user_path
from flowers_sweep.record.runrecord import WEIGHT_FILES, WEIGHTS_FILE

log = logging.getLogger(__name__)
ENUM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_V\d+$")  # IMAGENET1K_V1, IMAGENET1K_V2


def resolve_weights_file(spec: str, model_name: str) -> Path:
    """The file behind `model.weights`: a path, or torchvision's weights `spec` for the
    model torchvision calls `model_name`; one-line ConfigErrors name what is missing and
    where."""
    if not ENUM_NAME.match(spec):
        path = user_path(spec)
        if path.is_dir():
            kept = [name for name in WEIGHT_FILES.values() if (path / name).is_file()]
            raise ConfigError(
                f"model.weights={spec!r} is a folder; give a weights file"
                + (f", e.g. {path / kept[0]}" if kept else f" (a run keeps {WEIGHTS_FILE})")
            )
        if not path.is_file():
            raise ConfigError(f"model.weights={spec!r} is invalid: no such file")
        return path
    import torchvision

    try:
        names = [w.name for w in torchvision.models.get_model_weights(model_name)]
    except (KeyError, ValueError, AttributeError):
        raise ConfigError(
            f"model.weights={spec!r} is invalid: no file of that name exists, and "
            f"{model_name} is not a torchvision model with named weights (give a "
            f"state_dict file)"
        ) from None
    if spec not in names:
        raise ConfigError(
            f"model.weights={spec!r} is invalid: no file of that name exists, and "
            f"torchvision's weights for {model_name} are {', '.join(names)}"
        )
    enum = torchvision.models.get_model_weights(model_name)[spec]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    if not path.is_file():
        raise ConfigError(
            f"model.weights={spec}: torchvision's file {path} is not here and nothing is "
            f"downloaded at run time; fetch {enum.url} into {path.parent} (or give the "
            f"file's path as model.weights)"
        )
    return path


# How other code saves a state_dict: in an outer dict (a checkpoint, Lightning), or with
# each key prefixed by a wrapper module (DataParallel/DDP, torch.compile).
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net")
WRAPPER_PREFIXES = {"module.": "DataParallel/DDP", "_orig_mod.": "torch.compile"}


def unwrap_state_dict(state: Any, own: Iterable[str]) -> tuple[Any, list[str]]:
    """The bare state_dict inside `state`, and what was taken off to reach it.

    Takes `state["state_dict"]` (Lightning, many repos), `state["model"]` (our
    checkpoint.pt) and the like while the outer dict holds no tensors itself; then the
    `module.` and `_orig_mod.` prefixes that every key shares. A key prefix that is
    neither (Lightning's `model.` attribute name, say) is dropped only when that makes
    every key one of the model's own (`own`). Anything else is returned as found, for
    the caller to report as another architecture.
    """
    done: list[str] = []
    while isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        inner = next((k for k in NESTED_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state, _ = state[inner], done.append(f"the nested {inner!r} entry")
    if not isinstance(state, dict) or not state:
        return state, done
    own = set(own)
    while True:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            first = next(iter(state)).split(".", 1)[0] + "."
            shared = all(k.startswith(first) for k in state)
            if not shared or not {k[len(first) :] for k in state} <= own or set(state) <= own:
                return state, done
            prefix, why = first, "a wrapper's attribute name"
        else:
            why = WRAPPER_PREFIXES[prefix]
        state = {k[len(prefix) :]: v for k, v in state.items()}
        done.append(f"the {prefix!r} key prefix ({why})")


def head_prefix(model: nn.Module) -> str:
    """The classifier's parameter prefix: the name of the last linear or convolution
    layer, and a dot (`fc.` for torchvision's ResNets, `classifier.4.` for the baseline
    CNN, `classifier.1.` for SqueezeNet, whose classifier is a 1x1 convolution)."""
    kinds = (nn.Linear, nn.Conv2d)
    names = [name for name, m in model.named_modules() if isinstance(m, kinds)]
    return f"{names[-1]}." if names else "fc."


def load_weights(model: nn.Module, spec: str, model_name: str) -> None:
    """Copy the file's tensors into the model; a classifier of another size stays as built.

    model_name is the architecture's name (`resnet18`), which picks torchvision's enum.

    Raises:
        ConfigError: the file is not a state_dict, or it is for another architecture:
            tensors the model lacks, tensors of the model's body the file lacks (another
            depth), or shapes that differ outside the classifier.
    """
    path = resolve_weights_file(spec, model_name)
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"model.weights={spec!r}: {path} is not a state_dict ({why})") from None
    own = model.state_dict()
    state, unwrapped = unwrap_state_dict(state, own.keys())
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"model.weights={spec!r}: {path} holds no state_dict of tensors")
    if unwrapped:
        log.info("model.weights=%s: unwrapped %s", spec, "; ".join(unwrapped))
    head = head_prefix(model)
    foreign = [k for k in state if k not in own]

    def in_body(key: str) -> bool:  # a tensor of the model's body that a file must hold
        return not key.startswith(head) and not key.endswith("num_batches_tracked")

    absent = [k for k in own if k not in state and in_body(k)]
    if foreign or absent:
        what = (
            f"{len(foreign)} tensors this {model_name} does not have, e.g. {foreign[0]}"
            if foreign
            else f"it lacks {len(absent)} tensors of this {model_name}, e.g. {absent[0]}"
        )
        raise ConfigError(f"model.weights={spec!r}: {path} is for another architecture ({what})")
    fits = {k: v for k, v in state.items() if v.shape == own[k].shape}
    misfits = [k for k in state if k not in fits]
    if any(not k.startswith(head) for k in misfits):
        raise ConfigError(
            f"model.weights={spec!r}: shapes differ beyond the classifier: "
            f"{', '.join(misfits[:3])}"
        )
    model.load_state_dict(fits, strict=False)
    new = [k for k in own if k not in fits]
    why = ""
    if f"{head}weight" in misfits:
        theirs, ours = state[f"{head}weight"].shape[0], own[f"{head}weight"].shape[0]
        why = f" (classifier replaced: the file has {theirs} classes, this run {ours})"
    log.info(
        "loaded %d of %d tensors from %s; new, as built: %s%s",
        len(fits),
        len(own),
        path,
        ", ".join(new) or "none",
        why,
    )
