"""The report's output-size formula, used to size layers before any tensor exists."""

from __future__ import annotations

import math


def conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """out = floor((in + 2p - d(k-1) - 1) / s) + 1, as for nn.Conv2d and nn.MaxPool2d.

    With ceil_mode, PyTorch also drops a last window that would start in the right
    padding; we do the same so predictions match the real layer.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    rounding = math.ceil if ceil_mode else math.floor
    out = rounding(span / stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out
