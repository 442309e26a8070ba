"""The short names that label a run in result.json, folders, logs and report tables.

Computed from the config alone (no torch, no import of the model), so the aggregator can
label runs copied from a cluster. A preset's name stays its label: `resnet18` however it
was reached, `gelu` for the activation, `adamw` for the optimizer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The ResNet's class, under the names a config may give it.
RESNET_TARGETS = ("flowers_sweep.models.ResNet", "flowers_sweep.models.resnet.ResNet")
BLOCKS_PER_UNIT = {"basic": 2, "bottleneck": 3}  # weighted layers in one residual block


def snake_case(name: str) -> str:
    """`BaselineCNN` -> `baseline_cnn`, `TinyNet` -> `tiny_net`, `AdamW` -> `adamw`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2,})", "_", name)
    return spaced.lower()


def target_name(target: Any) -> str:
    """The last part of a `_target_` path, snake_cased: the label of a node without a name."""
    return snake_case(str(target).rsplit(".", 1)[-1])


def model_label(model: Mapping[str, Any], choice: str | None = None) -> str:
    """`model.name` where the node has one (torchvision, timm); else the preset it was
    chosen by (`choice`: Hydra's choice for the group, `tiny_net`); else a ResNet's depth
    from its blocks (`resnet18`; He et al., 2016: 2 or 3 weighted layers a block, plus
    the stem and the classifier); else the target's name (`flowers_sweep.models.BaselineCNN`
    -> `baseline_cnn`). Without `choice` a ResNet's label is torchvision's name for it."""
    if model.get("name") is not None:
        return str(model["name"])
    if choice:
        return str(choice)
    if model.get("_target_") in RESNET_TARGETS:
        depth = BLOCKS_PER_UNIT[model["block"]] * sum(model["layers"]) + 2
        return f"resnet{depth}"
    return target_name(model.get("_target_", "model"))


def activation_label(activation: Any) -> str | None:
    """A short name as itself; a `_target_` node by its target (`my_act.ScaledTanh` ->
    `scaled_tanh`); None for a model without an activation setting."""
    if isinstance(activation, Mapping) or hasattr(activation, "keys"):
        return target_name(activation.get("_target_"))
    return None if activation is None else str(activation)


def case_label(case: str | None, model: str | None, activation: str | None) -> str:
    """A run's name in the report's tables before anything else varies: its `case`
    (`relu`), else its model and activation (`resnet18-gelu`)."""
    return case or "-".join(x for x in (model, activation) if x is not None)


def fold_of(settings: Mapping[str, Any], prefix: str = "dataset.") -> Any:
    """A run's cross-validation fold (`dataset.fold`, an int in 0..K-1) where
    `dataset.folds` is set, else None: like its seed, what tells it from the other runs
    of its case. `settings`: flattened (`prefix` "dataset.") or the dataset node itself
    (`prefix` "")."""
    if settings.get(f"{prefix}folds") is None:
        return None
    return settings.get(f"{prefix}fold", 0)


def with_fold(record: Mapping[str, Any], fold: Any) -> dict[str, Any]:
    """A result.json record with the run's `fold` right after its `seed` (fold_of's);
    a run without folds has no `fold` key, so its record keeps its earlier shape."""
    if fold is None:
        return dict(record)
    out: dict[str, Any] = {}
    for key, value in record.items():
        out[key] = value
        if key == "seed":
            out["fold"] = fold
    out.setdefault("fold", fold)
    return out


def study_name(model: Mapping[str, Any], choice: str | None = None) -> str:
    """A search's default study name: the model's label and its activation's
    (`resnet18-relu`, `resnet18-scaled_tanh` for a `_target_` activation)."""
    activation = activation_label(model.get("activation"))
    return model_label(model, choice) + (f"-{activation}" if activation else "")


def optimizer_label(optimizer: Mapping[str, Any] | None) -> str | None:
    """torch.optim.AdamW -> `adamw`, torch.optim.SGD -> `sgd`."""
    if not optimizer or optimizer.get("_target_") is None:
        return None
    return str(optimizer["_target_"]).rsplit(".", 1)[-1].lower()


def section(flat: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The nested node at `key` from a flattened config ({"model.block": ...} -> {"block": ...}),
    so labels work on run records as on composed configs."""
    prefix, node = f"{key}.", {}
    for path, value in flat.items():
        if path.startswith(prefix):
            where, *rest = path[len(prefix) :].split(".")
            if rest:
                node.setdefault(where, {})[".".join(rest)] = value
            else:
                node[where] = value
    return node
