"""The activation: the knob the report's experiment turns, as a layer factory.

`model.activation` is a short name or a `_target_` node. The short names are torch's
own: every elementwise activation module in `torch.nn` under the name of its function in
`torch.nn.functional` (`nn.LeakyReLU` is `leaky_relu`, `nn.SiLU` is `silu`), so the table
grows with torch rather than by hand. A model takes the choice the way timm's models
take `act_layer`: a name, or a callable that returns a fresh module at each call.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable

import torch.nn.functional as F
from torch import nn
from torch.nn.modules import activation as torch_activations

from flowers_sweep.errors import ConfigError

ActLayer = Callable[[], nn.Module]

# torch.nn's activation modules that are not an elementwise nonlinearity to put after a
# convolution: attention, normalisations over a dimension, a gate that halves the
# channels, and Threshold, which has no default threshold.
NOT_ELEMENTWISE = {"MultiheadAttention", "Softmax", "Softmin", "Softmax2d", "LogSoftmax"}
NOT_ELEMENTWISE |= {"GLU", "Threshold"}
# In place, as torchvision's ResNet does: saves a copy of every activation map. Only
# where the backward pass reads the output, not the input the op overwrites.
IN_PLACE = ("relu", "leaky_relu")


def _short_names() -> dict[str, type[nn.Module]]:
    functional = {n.replace("_", ""): n for n in dir(F) if n[0] != "_" and n[-1] != "_"}
    table = {}
    for cls_name in torch_activations.__all__:
        cls = getattr(torch_activations, cls_name)
        name = functional.get(cls_name.lower())
        if name is not None and cls_name not in NOT_ELEMENTWISE:
            table[name] = cls
    return dict(sorted(table.items()))


ACTIVATIONS: dict[str, type[nn.Module]] = _short_names()
"""Short name -> torch.nn class: relu, leaky_relu, sigmoid, tanh, gelu, silu, mish, elu,
selu, celu, hardswish, softplus, prelu, ..."""


def unknown(name: object, allowed: list[str], key: str = "model.activation") -> ConfigError:
    """The one-line error for a short name that is not in `allowed`."""
    close = difflib.get_close_matches(str(name), allowed, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return ConfigError(
        f"{key}={name!r} is invalid: {hint}allowed short names are {', '.join(allowed)}, "
        f"or a _target_ node for any other (docs/extending.md)"
    )


def act_layer(spec: str | ActLayer) -> ActLayer:
    """A factory of fresh activation modules, from a short name or a callable.

    A fresh module per call, so that no two layers share one. Raises ConfigError for an
    unknown short name, naming the closest ones.
    """
    if callable(spec):
        return spec
    cls = ACTIVATIONS.get(spec)
    if cls is None:
        raise unknown(spec, list(ACTIVATIONS))
    return functools.partial(cls, inplace=True) if spec in IN_PLACE else cls


def make_activation(spec: str | ActLayer) -> nn.Module:
    """One fresh activation module (see act_layer)."""
    return act_layer(spec)()
