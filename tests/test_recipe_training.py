"""The training recipe's loss, optimisation and early-stopping keys (docs/recipes.md):
label smoothing, gradient clipping, gradient accumulation, norm/bias weight decay, early
stopping, each against torch's own function; one kill -9 resume with every recipe key on
(these, MixUp/CutMix, the policies, erasing, EMA, fp16), and the report's recipe swept
against `experiment=modern`."""

from __future__ import annotations

import copy
import csv
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import flowers_sweep as fs
from flowers_sweep.config.validate import validate
from flowers_sweep.errors import ConfigError
from flowers_sweep.models import build_model
from flowers_sweep.optim import NORM_LAYERS, build_optimizer
from flowers_sweep.record.legacy import upgrade_settings
from flowers_sweep.record.settings import flatten
from flowers_sweep.trainer.early_stop import epochs_without_improvement, should_stop
from flowers_sweep.trainer.loop import train_one_epoch
from flowers_sweep.trainer.runstate import RunState

from .helpers.batches import Batches
from .helpers.cli import SLOW, TINY, make_cfg, metrics, result, run_cli

RECIPE_KEYS = (
    "label_smoothing",
    "clip_grad_norm",
    "accumulate",
    "early_stop_patience",
    "early_stop_metric",
    "norm_weight_decay",
)
EPS32 = torch.finfo(torch.float32).eps
FEATURES, CLASSES = 12, 5


def data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, FEATURES, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


def state(model: nn.Module, lr: float = 0.5, **trainer) -> RunState:
    """A run of `model` (no batch norm) with plain SGD and the trainer keys given."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return RunState(
        model=model,
        optimizer=optimizer,
        scheduler=None,
        gen=torch.Generator(),
        device=torch.device("cpu"),
        cfg=OmegaConf.create({"trainer": trainer}),
    )


def linear(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(FEATURES, CLASSES)


def split(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(zip(x.split(size), y.split(size), strict=True))


def test_label_smoothing_is_torchs_cross_entropy_with_label_smoothing():
    x, y = data(16)
    model = linear()
    logits = model(x).detach()
    expected = F.cross_entropy(logits, y, label_smoothing=0.1)
    assert expected != F.cross_entropy(logits, y)  # the key changes the number
    run = state(model, label_smoothing=0.1)
    loss, _ = train_one_epoch(run, Batches([(x, y)], 16)).means()
    # the tally holds the mean loss times 16, read back divided by 16: one rounding each
    assert loss == pytest.approx(expected.item(), rel=2 * EPS32)


def test_clipping_steps_on_the_clipped_gradient():
    x, y = data(16)
    model, twin = linear(), linear()
    train_one_epoch(state(model, clip_grad_norm=0.01), Batches([(x, y)], 16))
    F.cross_entropy(twin(x), y).backward()
    norm = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.01)
    assert norm > 0.01  # the gradient really was clipped
    torch.optim.SGD(twin.parameters(), lr=0.5).step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)  # the same operations in the same order


def summation_bound(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> list:
    """Per weight, how far two float32 sums of the same n gradient terms may differ:
    n * eps * sum |term| (the classical bound on recursive summation, Higham, "Accuracy
    and Stability of Numerical Algorithms", 2002, eq. 4.4, for both orders), times the
    learning rate, plus one rounding of the weight itself (eps * |w|). For a linear layer
    the terms are (softmax - onehot)_n x_n / N and (softmax - onehot)_n / N."""
    with torch.no_grad():
        err = (F.softmax(model(x).double(), 1) - F.one_hot(y, CLASSES).double()) / len(y)
        terms_w = (err.abs().T @ x.double().abs()).float()
        terms_b = err.abs().sum(0).float()
    n = len(y)
    return [
        lr * 2 * n * EPS32 * t + EPS32 * p.detach().abs()
        for t, p in zip((terms_w, terms_b), model.parameters(), strict=True)
    ]


def test_accumulating_2_x_16_is_one_step_of_32():
    x, y = data(32)
    lr = 0.5
    one, two, plain = linear(), linear(), linear()
    bounds = summation_bound(one, x, y, lr)
    train_one_epoch(state(one, lr), Batches([(x, y)], 32))
    train_one_epoch(state(two, lr, accumulate=2), Batches(split(x, y, 16), 16))
    train_one_epoch(state(plain, lr), Batches(split(x, y, 16), 16))  # two steps
    for a, b, c, bound in zip(
        one.parameters(), two.parameters(), plain.parameters(), bounds, strict=True
    ):
        assert ((a - b).abs() <= bound).all()
        assert ((a - c).abs() > bound).any()  # without accumulation: another result


def test_the_epochs_last_batches_make_one_step_at_their_own_mean():
    """accumulate=2 over 16, 16, 8 images: one step on the first 32, one on the last 8."""
    x, y = data(40)
    lr = 0.5
    acc, twin = linear(), linear()
    train_one_epoch(state(acc, lr, accumulate=2), Batches(split(x, y, 16), 16))
    after_first = copy.deepcopy(twin)
    train_one_epoch(state(after_first, lr), Batches([(x[:32], y[:32])], 32))
    bounds = summation_bound(after_first, x[32:], y[32:], lr)
    bounds = [b + 2 * lr * EPS32 * 32 for b in bounds]  # the first step's own difference
    train_one_epoch(state(after_first, lr), Batches([(x[32:], y[32:])], 16))
    for a, b, bound in zip(acc.parameters(), after_first.parameters(), bounds, strict=True):
        assert ((a - b).abs() <= bound).all()


def groups_of(model_preset: str, optimizer: str = "adamw") -> tuple[nn.Module, list[dict]]:
    cfg = make_cfg(
        f"model={model_preset}", f"optimizer={optimizer}", "optimizer.norm_weight_decay=0"
    )
    model = build_model(cfg.model, 10, 32)
    return model, build_optimizer(model, cfg.optimizer).param_groups


@pytest.mark.parametrize("preset", ["resnet18", "baseline_cnn"])
def test_norm_layers_and_biases_get_their_own_weight_decay(preset):
    model, (decayed, free) = groups_of(preset)
    assert decayed["weight_decay"] == 0.01 and free["weight_decay"] == 0  # adamw's, the key's
    norm = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()}
    biases = {id(p) for n, p in model.named_parameters() if n.endswith(".bias")}
    assert {id(p) for p in free["params"]} == norm | biases
    assert all(p.ndim > 1 for p in decayed["params"])  # conv and linear weights only
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))
    if preset == "resnet18":
        assert norm  # batch norm's weights and biases are there to be excluded


def test_without_the_key_one_group_in_the_models_order():
    cfg = make_cfg("model=resnet18", "optimizer=sgd")
    model = build_model(cfg.model, 10, 32)
    (group,) = build_optimizer(model, cfg.optimizer).param_groups
    assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
    assert group["weight_decay"] == 0.0005


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("trainer.label_smoothing=1.5", "trainer.label_smoothing=1.5"),
        ("trainer.clip_grad_norm=-1", "trainer.clip_grad_norm=-1"),
        ("trainer.accumulate=0", "trainer.accumulate=0"),
        ("trainer.early_stop_patience=0", "trainer.early_stop_patience=0"),
        ("trainer.early_stop_metric=test_acc", "trainer.early_stop_metric='test_acc'"),
        ("optimizer.norm_weight_decay=-0.1", "optimizer.norm_weight_decay=-0.1"),
        # infinity passes `>= 0`: a number must be finite (this one trained to a NaN)
        ("optimizer.norm_weight_decay=inf", "optimizer.norm_weight_decay=inf"),
        ("optimizer.lr=inf", "optimizer.lr=inf"),
        ("trainer.clip_grad_norm=inf", "trainer.clip_grad_norm=inf"),
    ],
)
def test_bad_values_are_refused_in_one_line(override, named):
    with pytest.raises(ConfigError) as info:
        validate(make_cfg(override))
    assert str(info.value).startswith(f"{named} is invalid") and "\n" not in str(info.value)


def test_every_key_on_passes_validation():
    validate(
        make_cfg(
            "optimizer=adamw",
            "optimizer.norm_weight_decay=0",
            "trainer.label_smoothing=0.1",
            "trainer.clip_grad_norm=1",
            "trainer.accumulate=2",
            "trainer.early_stop_patience=3",
            "trainer.early_stop_metric=val_loss",
        )
    )


def test_early_stopping_counts_epochs_since_the_best():
    rows = [
        {"val_acc": a, "val_loss": v} for a, v in [(0.2, 2.0), (0.5, 1.5), (0.5, 1.6), (0.4, 1.4)]
    ]
    assert epochs_without_improvement(rows, "val_acc") == 2  # a tie is no improvement
    assert epochs_without_improvement(rows, "val_loss") == 0  # smaller is better
    assert should_stop(rows, 2, "val_acc") and not should_stop(rows, 3, "val_acc")
    assert not should_stop(rows, None, "val_acc")
    assert not should_stop([], 1, "val_acc")


ALL_KEYS = [
    "trainer.label_smoothing=0.1",
    "trainer.clip_grad_norm=1.0",
    "trainer.accumulate=3",  # 11 batches an epoch (KILLED): a tail of 2
    "optimizer.norm_weight_decay=0",
    "trainer.early_stop_patience=1",  # stops where its numbers say (checked below)
    "augment.mixup_alpha=0.2",  # MixUp or CutMix, on 80% of the batches
    "augment.cutmix_alpha=1.0",
    "augment.mix_prob=0.8",
    "augment.policy=trivial_augment_wide",
    "augment.erase_p=0.25",
    "trainer.ema_decay=0.9",  # an EMA reset through epoch 1, kept as model_ema.pt
    "trainer.ema_warmup=1",
    "trainer.keep_weights=last_ema",
]  # fp16 is left out: emulated on a CPU, 8x slower (its scaler's checkpoint: test_precision)


# SLOW, cut to what the kill needs: an epoch of ~1 s after the first (the kill lands in
# the second, long before the end) and 3 epochs, 2 of them resumed.
KILLED = ["dataset.train_size=176", "trainer.epochs=3"]
EPOCHS = 3


@pytest.mark.e2e
def test_kill9_with_every_key_on_resumes_to_the_uninterrupted_twin(tmp_path, cache_dir):
    """SIGKILL cannot be answered: only checkpoints already written count, so this run
    writes one every epoch (the default, every 300 s, would write none in this tiny run);
    with every recipe key on, the resumed run ends as its uninterrupted twin does. The
    kill and the resume are real processes; the twin trains in this process (fs.train
    runs the CLI's task, with the same one torch thread: the same sums)."""
    from .test_resilience import interrupted_run

    twin = tmp_path / "twin"
    assert fs.train(fs.compose([*SLOW, *KILLED, *ALL_KEYS]), twin)["status"] == "completed"
    # Where the twin stops depends on its numbers (this CPU: at the end), so the
    # test checks the rule on what it recorded instead of one machine's epoch: a stop
    # exactly when patience ran out, never before. Patience 1 trains at least 2 epochs,
    # so the kill after epoch 1 always comes before the end.
    rows = [{k: float(v) for k, v in row.items()} for row in metrics(twin)]
    stops = [n for n in range(1, len(rows) + 1) if should_stop(rows[:n], 1, "val_acc")]
    assert result(twin)["status"] == "completed"
    early = stops[0] if stops and stops[0] < EPOCHS else None  # out at the end: no stop
    assert result(twin).get("stopped_early_at") == early
    assert len(rows) == (stops[0] if stops else EPOCHS)
    run_dir = tmp_path / "run"
    args = interrupted_run(
        run_dir,
        cache_dir,
        signal.SIGKILL,
        1,
        *KILLED,
        "trainer.checkpoint_every_epochs=1",
        *ALL_KEYS,
    )
    assert not (run_dir / "result.json").exists()
    again = run_cli(*args, cache=cache_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in (run_dir / "flowers_sweep.log").read_text()
    assert metrics(run_dir) == metrics(twin)
    events = EventAccumulator(str(run_dir))  # both processes' event files, read together
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val_acc")] == [
        (int(r["epoch"]), pytest.approx(float(r["val_acc"]))) for r in metrics(twin)
    ]  # every epoch once, the resumed run's value where both logged one
    assert not (run_dir / "checkpoint.pt").exists()  # removed once the run completed
    ema = [(r["val_loss_ema"], r["val_acc_ema"]) for r in all_rows(twin)]
    assert ema and ema == [(r["val_loss_ema"], r["val_acc_ema"]) for r in all_rows(run_dir)]
    keys = ("test_acc", "test_loss", "test_acc_best_val", "best_epoch", "stopped_early_at")
    for key in (*keys, "test_acc_ema", "test_loss_ema"):
        assert result(run_dir).get(key) == result(twin).get(key), key
    ema_weights = torch.load(run_dir / "model_ema.pt", weights_only=True)
    twin_weights = torch.load(twin / "model_ema.pt", weights_only=True)
    assert all(torch.equal(ema_weights[k], twin_weights[k]) for k in twin_weights)


def all_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_config_from_before_the_keys_reads_as_todays_default():
    """An old run folder's settings, upgraded, equal today's composed default: old runs
    resume, skip and compare as the same run (runfolder.changed_settings)."""
    today = flatten(OmegaConf.to_container(make_cfg(), resolve=True))
    mine = {k for k in today if k.rsplit(".", 1)[-1] in RECIPE_KEYS}
    assert len(mine) == 6
    old = {k: v for k, v in today.items() if k not in mine}
    assert upgrade_settings(old) == today


@pytest.mark.e2e
def test_the_report_and_modern_recipes_sweep_side_by_side(tmp_path, cache_dir):
    """`-m experiment=report,modern`, tiny, on the embedded data (one batch a split): both
    train (6 epochs: modern warms up for 5) and the report compares them, one row each, by name."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "experiment=report,modern", "dataset=synthetic", *TINY, "trainer.epochs=6",
        "dataset.image_size=16", "dataset.train_size=16", "dataset.val_size=8",
        "dataset.test_size=8", "model.layers=[1,1,1,1]", f"hydra.sweep.dir={sweep}",
        "trainer.precision=32",  # bf16 on a CPU at 16 px: oneDNN's NaN now and then (speed.md)
        cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (sweep / "report" / "results.md").read_text()
    assert "| resnet18-relu-experiment=report |" in table
    assert "| resnet18-relu-experiment=modern |" in table
    runs = pd.read_csv(sweep / "report" / "runs.csv").set_index("case")
    assert (runs["status"] == "completed").all()
    modern = runs.loc["resnet18-relu-experiment=modern"]
    assert 0 <= modern["test_acc_ema"] <= 1 and pd.isna(
        runs.loc["resnet18-relu-experiment=report", "test_acc_ema"]
    )
    assert (Path(modern["run_dir"]) / "model_ema.pt").is_file()


def test_the_preview_names_batch_mixing_and_says_it_is_not_drawn(tmp_path, monkeypatch, cache_dir):
    """MixUp/CutMix mix whole batches in the training loop, not the per-image views the
    preview draws: its title names them and says so (docs/data.md)."""
    from flowers_sweep.data import preview

    titles = []
    monkeypatch.setattr(preview, "draw", lambda grid, names, title, out: titles.append(title))
    tiny = [o for o in TINY if o.startswith("dataset.")]
    argv = ["--out", str(tmp_path / "p.png"), "--images", "2", "--views", "1", *tiny,
            f"dataset.cache_dir={cache_dir}"]  # fmt: skip
    assert preview.main(argv) == 0
    assert preview.main([*argv, "augment.mixup_alpha=0.2"]) == 0
    plain, mixed = titles
    assert "MixUp alpha=0.2" in mixed and "not drawn" in mixed and "not drawn" not in plain
