import random

import pytest
import torch
from torch import nn

from flowers_sweep.models.shapes import conv_output_size


@pytest.mark.parametrize("seed", range(5))
def test_formula_matches_real_layers(seed):
    rng = random.Random(seed)
    for _ in range(40):
        size, k = rng.randint(8, 70), rng.randint(1, 7)
        s, d = rng.randint(1, 4), rng.randint(1, 2)
        p = rng.randint(0, k // 2)
        if size + 2 * p < d * (k - 1) + 1:
            continue
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
        out = conv(torch.zeros(1, 1, size, size)).shape[-1]
        assert conv_output_size(size, k, s, p, d) == out
        ceil = rng.random() < 0.5
        pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        out = pool(torch.zeros(1, 1, size, size)).shape[-1]
        assert conv_output_size(size, k, s, p, d, ceil_mode=ceil) == out, (size, k, s, p, d)
