"""Models from torchvision's and timm's registries, by name, with the head sized to the data.

`model=torchvision model.name=efficientnet_b0` and `model=timm model.name=resnet18d`
build through the libraries' own registries (torchvision's `get_model`, timm's
`create_model`), so every classification model they list is one override away and the
allowed names are theirs. `activation` is `native` (the model's own) or a short name /
factory: timm takes it as `act_layer`; in a torchvision model each activation module is
replaced, and a model that applies its activation as a function, where no module can be
swapped, is refused in one line rather than left as it was.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from flowers_sweep.errors import ConfigError
from flowers_sweep.models.activations import ACTIVATIONS, ActLayer, act_layer

log = logging.getLogger(__name__)
NATIVE = "native"  # keep the model's own activation
# Sigmoid-type modules inside a model are gates (squeeze-and-excitation), not its
# activation: swapping them would change what the block computes, not its nonlinearity.
GATES = (nn.Sigmoid, nn.Hardsigmoid)
SWAPPABLE = tuple(cls for cls in ACTIVATIONS.values() if not issubclass(cls, GATES))


def _no_such(kind: str, name: str, names: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return ConfigError(
        f"model.name={name!r} is invalid: {kind} has no such classification model; {hint}"
        f"{len(names)} are listed by {kind}'s list_models()"
    )


def torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)  # classification only


def swap_activations(model: nn.Module, layer: ActLayer) -> int:
    """Replace every activation module (not the gates) by a fresh `layer()`; the count."""
    swapped = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, SWAPPABLE):
                setattr(parent, child_name, layer())
                swapped += 1
    return swapped


class _FunctionalCalls(TorchFunctionMode):
    """Records activation functions called outside any activation module."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.calls = 0, set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "").rstrip("_")
        if not self.inside and name in ACTIVATIONS and issubclass(ACTIVATIONS[name], SWAPPABLE):
            self.calls.add(name)  # a sigmoid scaling (Swin V2's attention bias) is no activation
        return func(*args, **(kwargs or {}))


def functional_activations(
    model: nn.Module, image_size: int, swapped_in: type[nn.Module] | None = None
) -> set[str]:
    """Names of activations the model applies as functions (F.relu in its forward), found
    by one pass of a meta-device image through `model` (on the meta device: shapes only,
    no memory, no arithmetic; it is left in eval mode). What runs inside an activation
    module, or inside the `swapped_in` class (a user's own), is the module's business."""
    probe = _FunctionalCalls()

    def enter(*_: Any) -> None:
        probe.inside += 1

    def leave(*_: Any) -> None:
        probe.inside -= 1

    model.eval()  # one image: batch norm in training mode would refuse it
    hooks = []
    for m in model.modules():
        if isinstance(m, (*SWAPPABLE, *GATES)) or (swapped_in and isinstance(m, swapped_in)):
            hooks += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    try:
        with torch.no_grad(), probe:
            model(torch.zeros(1, 3, image_size, image_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return probe.calls


def torchvision_model(
    name: str,
    num_classes: int,
    image_size: int | None = None,
    activation: str | ActLayer = NATIVE,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's `name` (`efficientnet_b0`), its classifier sized to num_classes.

    image_size is passed to models whose constructor takes it (the ViTs, which are
    built for one size); kwargs go to torchvision's builder (`dropout`, say). Weights
    are loaded by the framework afterwards (`model.weights`), never downloaded here.

    Raises ConfigError for a name torchvision does not list, or an activation the model
    applies as a function (model.activation=native keeps it).
    """
    import torchvision

    names = torchvision_names()
    if name not in names:
        raise _no_such("torchvision", name, names)
    builder = torchvision.models.get_model_builder(name)
    built = inspect.signature(builder).return_annotation
    if image_size is not None and "image_size" in inspect.signature(built).parameters:
        kwargs["image_size"] = image_size
    model = builder(weights=None, num_classes=num_classes, **kwargs)
    if activation == NATIVE:
        return model
    layer = act_layer(activation)
    swapped = swap_activations(model, layer)
    probe = copy.deepcopy(model).to("meta")
    functional = functional_activations(probe, image_size or 224, type(layer()))
    if not swapped or functional:
        what = ", ".join(sorted(functional)) or "its activations"
        raise ConfigError(
            f"model.activation={_label(activation)!r} cannot apply to model.name={name!r}: "
            f"it applies {what} as a function in forward(), which no module swap reaches; "
            f"use model.activation={NATIVE}"
        )
    return model


def timm_names() -> list[str]:
    import timm

    return timm.list_models()


def timm_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    image_size: int | None = None,
    activation: str | ActLayer = NATIVE,
    **kwargs: Any,
) -> nn.Module:
    """timm's `name` (`resnet18d`) through `timm.create_model`, no pretrained download;
    activation goes in as timm's `act_layer` (kwargs too: `drop_rate`, say), image_size
    as `img_size` to the models built for one size (the ViTs), not to the others.

    Raises ConfigError when timm is not installed, does not list the name, or the model
    takes no `act_layer`.
    """
    try:
        import timm
    except ImportError:
        raise ConfigError(
            "model=timm needs the timm package: pip install timm (or pip install -e '.[dev]')"
        ) from None
    if not timm.is_model(name):
        raise _no_such("timm", name, timm_names())
    if activation != NATIVE:
        kwargs["act_layer"] = _ignoring_inplace(act_layer(activation))
    if image_size is not None and "img_size" not in kwargs:
        kwargs["img_size"] = image_size
    try:
        try:
            model = timm.create_model(
                name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs
            )
        except TypeError as exc:  # a convnet takes any size, and no img_size
            if "img_size" not in str(exc) or image_size is None:
                raise
            kwargs.pop("img_size")
            model = timm.create_model(
                name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs
            )
    except TypeError as exc:
        if "act_layer" not in str(exc):
            raise
        raise ConfigError(
            f"model.activation={_label(activation)!r} cannot apply to model.name={name!r}: "
            f"timm's {name} takes no act_layer; use model.activation={NATIVE}"
        ) from None
    if activation != NATIVE:
        # Some timm models pass act_layer to part of the network only (DPN: its stem);
        # squeeze-excitation layers keep their own on purpose. Said, not refused.
        new = type(kwargs["act_layer"]())
        kept = [m for m in model.modules() if isinstance(m, SWAPPABLE) and type(m) is not new]
        if kept:
            log.warning(
                "model.activation=%s reached only part of timm's %s: %d activation modules "
                "keep timm's choice (%s)",
                _label(activation),
                name,
                len(kept),
                ", ".join(sorted({type(m).__name__ for m in kept})),
            )
    return model


def _ignoring_inplace(layer: ActLayer) -> Callable[..., nn.Module]:
    # timm's blocks call act_layer(inplace=True); ours decide in-place themselves.
    def make(inplace: bool = False) -> nn.Module:
        return layer()

    return make


def _label(activation: Any) -> str:
    """A short name as itself; a factory (a partial of a user's class) by its class."""
    if isinstance(activation, str):
        return activation
    return getattr(getattr(activation, "func", activation), "__name__", str(activation))
