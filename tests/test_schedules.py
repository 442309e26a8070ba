"""Schedules and optimizers from `_target_` nodes: the cosine preset's closed form, with
and without warm-up; multistep's fractions of the run; StepLR; any torch.optim class."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler

from flowers_sweep.config.validate import validate
from flowers_sweep.errors import ConfigError
from flowers_sweep.optim import build_scheduler, cosine, milestone_epochs

from .helpers.cli import SHARED_RUN, make_cfg, metrics, result

# torch steps CosineAnnealingLR recursively (each epoch's rate is the last one times a
# ratio of cosines), so after t epochs it carries the rounding of about 2t float64
# operations: at most a few hundred ulps (~1e-14 relative) over these runs; measured
# worst 2.3e-15 for up to 300 epochs. 1e-12 leaves that margin while any real error in
# the schedule (an epoch off, a wrong T) is ~1e-2 or more.
REL = 1e-12


def rates(make, epochs: int, lr: float = 1e-3) -> list[float]:
    """The rate each epoch trains at: read before the epoch's step, as train.fit does."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=lr)
    schedule = make(optimizer)
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return out


def cosine_rate(epoch: int, epochs: int, lr: float, eta_min: float = 0.0) -> float:
    """Loshchilov & Hutter (2017), epoch counted from 0."""
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


@pytest.mark.parametrize("epochs", [1, 2, 5, 100])
@pytest.mark.parametrize("eta_min", [0.0, 1e-5])
def test_cosine_follows_the_closed_form(epochs, eta_min):
    got = rates(lambda o: cosine(o, epochs, eta_min=eta_min), epochs, lr=0.1)
    want = [cosine_rate(e, epochs, 0.1, eta_min) for e in range(epochs)]
    assert got == pytest.approx(want, rel=REL, abs=0)


@pytest.mark.parametrize(("epochs", "warmup", "factor"), [(5, 1, 0.1), (10, 3, 0.25), (4, 3, 0.5)])
def test_cosine_warms_up_linearly_then_anneals(epochs, warmup, factor):
    lr, eta_min = 1e-3, 1e-5
    got = rates(
        lambda o: cosine(
            o, epochs, warmup_epochs=warmup, eta_min=eta_min, warmup_start_factor=factor
        ),
        epochs,
        lr=lr,
    )
    ramp = [lr * (factor + (1 - factor) * e / warmup) for e in range(warmup)]
    anneal = [cosine_rate(e, epochs - warmup, lr, eta_min) for e in range(epochs - warmup)]
    assert got == pytest.approx(ramp + anneal, rel=REL, abs=0)
    assert got[0] == pytest.approx(factor * lr) and got[warmup] == pytest.approx(lr)


@pytest.mark.parametrize(("warmup", "epochs"), [(5, 5), (6, 5), (-1, 5)])
def test_a_warmup_that_leaves_no_epoch_to_anneal_is_refused(warmup, epochs):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match=rf"warmup_epochs={warmup} is invalid"):
        cosine(optimizer, epochs, warmup_epochs=warmup)


def test_validate_refuses_the_warmup_in_one_line_naming_the_key():
    cfg = make_cfg("scheduler=cosine", "scheduler.warmup_epochs=5", "trainer.epochs=5")
    with pytest.raises(ConfigError, match=r"^scheduler\.warmup_epochs=5 is invalid: .*\[0, 5\)"):
        validate(cfg)


@pytest.mark.parametrize(
    ("milestones", "epochs", "expected"),
    [
        ([0.4, 0.7], 100, [40, 70]),  # the report's
        ([0.4, 0.7], 5, [2, 4]),
        ([0.5], 5, [3]),  # half up, not Python's round-half-even (2)
        ([0.1], 2, [1]),  # at least epoch 1
        ([40, 70], 5, [40, 70]),  # integers are epochs, whatever the run's length
    ],
)
def test_multistep_milestones_are_shares_of_the_run(milestones, epochs, expected):
    assert milestone_epochs(milestones, epochs) == expected


def test_the_multistep_preset_decays_at_40_and_70_percent():
    node = make_cfg("scheduler=multistep").scheduler
    got = rates(lambda o: build_scheduler(o, node, 5), 5, lr=1.0)
    assert got == pytest.approx([1.0, 1.0, 0.2, 0.2, 0.04], rel=REL)


def test_the_step_preset_is_torchs_steplr_30_01():
    node = make_cfg("scheduler=step").scheduler
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    schedule = build_scheduler(optimizer, node, 100)
    assert type(schedule) is lr_scheduler.StepLR
    assert (schedule.step_size, schedule.gamma) == (30, 0.1)
    got = rates(lambda o: build_scheduler(o, node, 100), 91, lr=0.1)
    assert got == rates(lambda o: lr_scheduler.StepLR(o, 30, 0.1), 91, lr=0.1)
    assert (got[29], got[30], got[60], got[90]) == pytest.approx((0.1, 0.01, 0.001, 1e-4))


# --- real runs --------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_cosine_run_records_the_rate_each_epoch_trained_at(shared_run):
    """metrics.csv's lr is the rate read before the epoch's schedule step: epoch e
    (1-based) trained at the closed form's value for e - 1 (conftest's shared_run: the
    real command line's run of helpers/cli.SHARED_RUN)."""
    assert result(shared_run)["status"] == "completed"
    rows = metrics(shared_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    lr = make_cfg(*SHARED_RUN).optimizer.lr
    want = [cosine_rate(e, 4, lr) for e in range(4)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(want, rel=REL, abs=0)


@pytest.mark.e2e
def test_any_torch_optimizer_trains_from_its_target(shared_run):
    """RMSprop takes no betas: the preset's key is dropped (~) and its own added (+)."""
    assert result(shared_run)["status"] == "completed"
    saved = torch.load(shared_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    group = saved["optimizer"]["param_groups"][0]
    assert group["alpha"] == 0.9 and "centered" in group and "betas" not in group
    assert {k for s in saved["optimizer"]["state"].values() for k in s} == {"step", "square_avg"}
