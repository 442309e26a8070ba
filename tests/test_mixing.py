"""MixUp and CutMix (flowers_sweep/trainer/mixing.py) against torchvision.transforms.v2.

Exactness: from equal generator states the draws are the same numbers (the same
kernels: rand, multinomial, the Dirichlet sampler behind distributions.Beta, randint),
and the images and targets come from the same float32 operations with the same Python
scalars (a product rounds the same either way, a sum of two terms is commutative), so
on the CPU the results are compared bit for bit, not within a tolerance.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torchvision.transforms import v2

from flowers_sweep.errors import ConfigError
from flowers_sweep.trainer.loop import train_one_epoch
from flowers_sweep.trainer.mixing import BatchMix, draw_box, draw_lambda, soft_targets

from .test_recipe_training import EPS32, Batches, split, state

K, N, C, H, W = 5, 6, 3, 8, 10
SEEDS = range(12)


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(N, C, H, W, generator=g), torch.randint(0, K, (N,), generator=g)


def torchvisions(transform: v2.Transform, seed: int, x: torch.Tensor, y: torch.Tensor):
    """torchvision's result, drawn from the global generator seeded `seed`, and that
    generator's next number (which tells how many were drawn)."""
    torch.manual_seed(seed)
    out_x, out_y = transform(x, y)
    return out_x, out_y, torch.rand(1)


def ours(mix: BatchMix, seed: int, x: torch.Tensor, y: torch.Tensor):
    gen = torch.Generator().manual_seed(seed)
    out_x, target, label = mix(x, y, gen)
    return out_x, target, label, torch.rand(1, generator=gen)


def test_mixup_is_torchvisions():
    for seed in SEEDS:
        x, y = batch(seed)
        tv = v2.RandomApply([v2.MixUp(alpha=0.4, num_classes=K)], p=1.0)
        tv_x, tv_y, tv_next = torchvisions(tv, seed, x, y)
        mx, target, label, nxt = ours(BatchMix(0.4, 0.0, 1.0, K), seed, x, y)
        assert not torch.equal(mx, x)  # it mixed
        assert torch.equal(mx, tv_x) and torch.equal(target, tv_y)
        assert torch.equal(nxt, tv_next)  # as many draws
        assert torch.equal(label, tv_y.argmax(1))


def test_cutmix_is_torchvisions_with_its_box_and_corrected_lambda():
    clipped = 0
    for seed in SEEDS:
        x, y = batch(seed)
        tv = v2.RandomApply([v2.CutMix(alpha=1.0, num_classes=K)], p=1.0)
        tv_x, tv_y, tv_next = torchvisions(tv, seed, x, y)
        mx, target, _, nxt = ours(BatchMix(0.0, 1.0, 1.0, K), seed, x, y)
        assert torch.equal(mx, tv_x) and torch.equal(target, tv_y)
        assert torch.equal(nxt, tv_next)
        gen = torch.Generator().manual_seed(seed)
        torch.rand(1, generator=gen)  # mix_prob's draw
        lam = draw_lambda(1.0, gen)
        (x1, y1, x2, y2), kept = draw_box(lam, H, W, gen)
        area = (x2 - x1) * (y2 - y1)
        assert kept == 1 - area / (H * W)  # lambda corrected by the box actually pasted
        assert torch.equal(target, soft_targets(y, kept, K))
        changed = (mx != x).any(1)  # (N, H, W): pixels taken from the neighbour
        assert not changed[:, :y1].any() and not changed[:, y2:].any()
        assert not changed[..., :x1].any() and not changed[..., x2:].any()
        clipped += (x2 - x1) < 2 * int(0.5 * (1 - lam) ** 0.5 * W)
    assert clipped > 0  # some boxes met the edge, and the correction followed


def test_both_with_a_probability_are_randomapply_of_randomchoice():
    pair = [v2.MixUp(alpha=0.2, num_classes=K), v2.CutMix(alpha=1.0, num_classes=K)]
    tv = v2.RandomApply([v2.RandomChoice(pair)], p=0.5)
    mix = BatchMix.from_config({"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "mix_prob": 0.5}, K)
    kinds = {"none": 0, "mixup": 0, "cutmix": 0}
    for seed in range(40):
        x, y = batch(seed)
        tv_x, tv_y, tv_next = torchvisions(tv, seed, x, y)
        mx, target, label, nxt = ours(mix, seed, x, y)
        assert torch.equal(mx, tv_x) and torch.equal(target, tv_y)
        assert torch.equal(nxt, tv_next)
        if target.ndim == 1:
            assert mx is x and target is y and label is y  # untouched
            kinds["none"] += 1
        else:
            kinds["mixup" if (mx != x).all() else "cutmix"] += 1
    assert min(kinds.values()) > 0, kinds  # every branch was compared


def test_draws_come_from_the_runs_generator_only():
    x, y = batch()
    mix = BatchMix(0.2, 1.0, 0.7, K)
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    outcomes = [ours(mix, seed, x, y) for seed in (3, 3, 4)]
    assert torch.equal(torch.get_rng_state(), global_state)
    assert all(torch.equal(a, b) for a, b in zip(outcomes[0], outcomes[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(outcomes[0], outcomes[2], strict=True))


@pytest.mark.parametrize(
    "augment", [None, {}, {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "mix_prob": 0.5}]
)
def test_off_is_none(augment):
    assert BatchMix.from_config(augment, K) is None


@pytest.mark.parametrize("key,value", [("mixup_alpha", -0.1), ("mix_prob", 1.5)])
def test_bad_values_are_refused_in_one_line(key, value):
    with pytest.raises(ConfigError, match=rf"augment\.{key}={value}.*") as err:
        BatchMix.from_config({key: value}, K)
    assert "\n" not in str(err.value)


# The loop: a flattening linear classifier of (3, 4, 4) images, plain SGD.
IMAGE = (3, 4, 4)


def images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *IMAGE, generator=g), torch.randint(0, K, (n,), generator=g)


def classifier(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(IMAGE[0] * IMAGE[1] * IMAGE[2], K))


def mixing_run(model: nn.Module, augment: dict | None, seed: int = 0, **trainer):
    """test_recipe_training's run, with an augment node, a seeded generator, and data
    that knows its class count."""
    run = state(model, **trainer)
    run.cfg = OmegaConf.create({"trainer": trainer, "augment": augment or {}})
    run.gen = torch.Generator().manual_seed(seed)
    run.data = SimpleNamespace(num_classes=K)
    return run


ON = {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "mix_prob": 1.0}


def test_the_loop_trains_on_the_mixed_batch_and_its_soft_targets():
    x, y = images(8)
    model, twin = classifier(), classifier()
    seed = 27  # a draw whose accuracy against the mix's major class differs from y's
    run = mixing_run(model, ON, seed, label_smoothing=0.1)
    loss, acc = train_one_epoch(run, Batches([(x, y)], 8)).means()
    mixed_x, target, label, _ = ours(BatchMix.from_config(ON, K), seed, x, y)
    assert target.ndim == 2  # a mixed batch (mix_prob 1)
    logits = twin(mixed_x)
    expected = F.cross_entropy(logits, target, label_smoothing=0.1)
    assert loss == pytest.approx(expected.item(), rel=2 * EPS32)  # as in test_recipe_training
    assert acc == (logits.argmax(1) == label).sum().item() / 8
    assert acc != (logits.argmax(1) == y).sum().item() / 8  # the test can tell them apart
    expected.backward()
    torch.optim.SGD(twin.parameters(), lr=0.5).step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)  # the same operations in the same order

    off = classifier()
    train_one_epoch(mixing_run(off, None, label_smoothing=0.1), Batches([(x, y)], 8))
    assert not torch.equal(off[1].weight, model[1].weight)  # mixing changed the result


def test_off_draws_nothing_and_changes_nothing():
    x, y = images(16)
    batches = Batches(split(x, y, 8), 8)
    runs = {}
    zero = {**ON, "mixup_alpha": 0.0, "cutmix_alpha": 0.0}
    for name, augment in {"absent": None, "zero": zero, "on": ON}.items():
        run = mixing_run(classifier(), augment)
        before = run.gen.get_state()
        runs[name] = (train_one_epoch(run, batches).means(), run.model, run.gen.get_state())
        assert torch.equal(run.gen.get_state(), before) == (name != "on")
    assert runs["absent"][0] == runs["zero"][0]
    for a, b in zip(runs["absent"][1].parameters(), runs["zero"][1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_two_epochs_of_mixing_from_one_seed_give_the_same_weights():
    x, y = images(24, seed=5)
    batches = Batches(split(x, y, 8), 8)
    weights, states = [], []
    for _ in range(2):
        run = mixing_run(classifier(), {**ON, "mix_prob": 0.8}, seed=7, label_smoothing=0.1)
        for _epoch in range(2):
            train_one_epoch(run, batches)
        weights.append([p.detach().clone() for p in run.model.parameters()])
        states.append(run.gen.get_state())
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))
    assert torch.equal(*states)
    other = mixing_run(classifier(), {**ON, "mix_prob": 0.8}, seed=8, label_smoothing=0.1)
    for _epoch in range(2):
        train_one_epoch(other, batches)
    assert not torch.equal(other.model[1].weight, weights[0][0])  # the seed matters
