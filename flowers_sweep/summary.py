"""`python -m flowers_sweep.summary [overrides]`: each layer's output size, params and MACs.

The report's author computed every layer's output size after conv and pooling by hand with
out = floor((in + 2p - d(k-1) - 1) / s) + 1. This prints those predictions next to the
shapes of a real forward pass, so the formula is checked rather than trusted, together
with parameter and multiply-accumulate counts and a rough training-memory estimate.

It composes the same config as a run but touches no data: the pass runs on the `meta`
device, which has shapes and no storage, so even ResNet-152 at 224 px takes a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from flowers_sweep.config.composition import compose_config, config_dir_overrides
from flowers_sweep.config.validate import validate
from flowers_sweep.data.sources import class_count
from flowers_sweep.job import outcome
from flowers_sweep.models import BaselineCNN, ResNet, build_model, build_on_meta, count_parameters
from flowers_sweep.models.resnet import BLOCKS
from flowers_sweep.models.shapes import conv_output_size
from flowers_sweep.optim import build_optimizer
from flowers_sweep.record.labels import activation_label, model_label, optimizer_label

PROG = "flowers_sweep.summary"
SIZED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)  # layers the report's formula describes
ROW_TYPES = (*SIZED, nn.AdaptiveAvgPool2d, nn.Linear)
BLOCK_TYPES = tuple(BLOCKS.values())
BYTES_FP32 = 4

HW = tuple[int, int]


@dataclass
class Row:
    """One printed line: a layer or a residual block, as seen in the real pass."""

    name: str
    kind: str
    shape: tuple[int, ...]  # output shape without the batch dimension
    params: int
    macs: int = 0
    predicted: HW | None = None  # from the formula; None where it does not apply

    @property
    def real_hw(self) -> HW | None:
        return (self.shape[-2], self.shape[-1]) if len(self.shape) == 3 else None

    @property
    def mismatch(self) -> bool:
        return self.predicted is not None and self.predicted != self.real_hw


@dataclass
class Summary:
    """Everything the CLI prints, kept as data so tests can check numbers, not text."""

    label: str
    activation: str
    image_size: int
    num_classes: int
    rows: list[Row]
    params: int
    macs: int
    activations_per_sample: int  # elements of all leaf-module outputs for one image
    batch_size: int = 1
    optimizer: str = "adam"
    optimizer_state: int = 2  # values the optimizer keeps per parameter (Adam: 2 moments)
    mismatches: list[Row] = field(default_factory=list)


def row_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Layers that get a row: whole residual blocks, else convs, pools and linears."""
    rows: dict[str, nn.Module] = {}
    inside_block: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside_block):
            continue
        if isinstance(module, BLOCK_TYPES):
            inside_block.append(name)
            rows[name] = module
        elif isinstance(module, ROW_TYPES):
            rows[name] = module
    return rows


def _pair(value: Any) -> HW:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def predict_layer(layer: nn.Module, hw: HW) -> HW:
    """The report's formula for one conv or pool, applied to height and width separately."""
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return _pair(layer.output_size)
    k, s, p = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding)
    d = _pair(getattr(layer, "dilation", 1))  # AvgPool2d has no dilation
    ceil = getattr(layer, "ceil_mode", False)  # Conv2d has no ceil mode
    return (
        conv_output_size(hw[0], k[0], s[0], p[0], d[0], ceil),
        conv_output_size(hw[1], k[1], s[1], p[1], d[1], ceil),
    )


def main_path(block: nn.Module) -> Iterator[nn.Module]:
    """The block's convs in order, skipping the downsample: its 1x1 conv only mirrors them."""
    for name, module in block.named_modules():
        if isinstance(module, SIZED) and not name.startswith("downsample"):
            yield module


def predict(module: nn.Module, hw: HW) -> HW | None:
    """Output size of a row from its input size, by the formula alone; None for linears."""
    if isinstance(module, BLOCK_TYPES):
        for layer in main_path(module):
            hw = predict_layer(layer, hw)
        return hw
    if isinstance(module, (*SIZED, nn.AdaptiveAvgPool2d)):
        return predict_layer(module, hw)
    return None


def _leaves(model: nn.Module) -> Iterator[nn.Module]:
    return (m for m in model.modules() if next(m.children(), None) is None)


def trace(model: nn.Module, image_size: int, device: str = "meta") -> tuple[list[Row], int, int]:
    """One forward pass of a single image: rows with real shapes, total MACs, activations.

    In this project's models, whose rows form one path, predictions are chained from the
    image size through the rows in execution order, so the predicted column never sees a
    real shape: it is what the formula alone gives. Other models branch (squeeze-and-
    excitation, attention), so each row is predicted from the size that reached it.
    """
    targets = row_modules(model)
    rows: list[Row] = []
    saved = [3 * image_size * image_size]  # the input batch is kept for the first conv

    inputs: list[HW | None] = []

    def on_row(name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        rows.append(Row(name, type(module).__name__, tuple(output.shape[1:]), 0))
        rows[-1].params = count_parameters(module)
        shape = args[0].shape if args and torch.is_tensor(args[0]) else ()
        inputs.append((shape[-2], shape[-1]) if len(shape) == 4 else None)

    hooks = [
        m.register_forward_hook(lambda mod, inp, out, n=n: on_row(n, mod, inp, out))
        for n, m in targets.items()
    ]
    hooks += [
        m.register_forward_hook(lambda _mod, _inp, out: saved.append(out[0].numel()))
        for m in _leaves(model)
    ]
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    _attach_macs(rows, counter, type(model).__name__)
    chained = isinstance(model, (ResNet, BaselineCNN))
    _attach_predictions(rows, targets, image_size, None if chained else inputs)
    return rows, counter.get_total_flops() // 2, sum(saved)


def _attach_macs(rows: list[Row], counter: FlopCounterMode, root: str) -> None:
    # FlopCounterMode counts a multiply-add as 2 FLOPs for conv and matmul, keyed by
    # "<RootClass>.<fqn>"; layers without such ops (pools, norms) are absent: 0 MACs.
    counts = counter.get_flop_counts()
    for row in rows:
        row.macs = sum(counts.get(f"{root}.{row.name}", {}).values()) // 2


def _attach_predictions(
    rows: list[Row],
    targets: dict[str, nn.Module],
    image_size: int,
    inputs: list[HW | None] | None = None,
) -> None:
    hw: HW = (image_size, image_size)
    for i, row in enumerate(rows):
        if inputs is not None:  # each row from the size that reached it
            hw = inputs[i] or hw
        row.predicted = predict(targets[row.name], hw)
        hw = row.predicted or hw


def optimizer_state(node: Any) -> int:
    """Values the optimizer keeps per parameter (Adam: two moments; SGD with momentum:
    one; plain SGD: none), counted by one step on a two-element parameter."""
    weight = torch.zeros(2, requires_grad=True)
    optimizer = build_optimizer([weight], node)
    weight.grad = torch.ones(2)
    optimizer.step()
    state = optimizer.state[weight].values()
    return sum(1 for v in state if torch.is_tensor(v) and v.shape == weight.shape)


def summarize(cfg: DictConfig, device: str = "meta", choice: str | None = None) -> Summary:
    """Build the configured model (no data, no download) and trace one image through it;
    `choice` is the model preset's name, its label."""
    dataset = cfg.dataset
    num_classes = class_count(dataset)  # the node's, or a folder listing: no image read
    if device == "meta":  # no weights are allocated or initialised
        model = build_on_meta(cfg.model, num_classes, dataset.image_size)
    else:
        with torch.device(device):
            model = build_model(cfg.model, num_classes, dataset.image_size)
    model.eval()
    rows, macs, saved = trace(model, dataset.image_size, device)
    return Summary(
        label=model_label(cfg.model, choice),
        activation=str(activation_label(cfg.model.get("activation"))),
        image_size=dataset.image_size,
        num_classes=num_classes,
        rows=rows,
        params=count_parameters(model),
        macs=macs,
        activations_per_sample=saved,
        batch_size=cfg.trainer.batch_size,
        optimizer=optimizer_label(cfg.optimizer) or "optimizer",
        optimizer_state=optimizer_state(cfg.optimizer),
        mismatches=[r for r in rows if r.mismatch],
    )


def memory_estimate(s: Summary) -> int:
    """Bytes for one training step in fp32: weights, gradients, optimizer state, and the
    activations autograd keeps for backward (every leaf module's output, per image)."""
    per_param = 2 + s.optimizer_state  # weights + gradients + the optimizer's state
    return BYTES_FP32 * (per_param * s.params + s.batch_size * s.activations_per_sample)


def format_bytes(n: int) -> str:
    """MiB below one GiB, GiB above, so the figure is readable at every model size."""
    gib = n / 2**30
    return f"{gib:.2f} GiB" if gib >= 1 else f"{n / 2**20:.1f} MiB"


def _dims(shape: Sequence[int]) -> str:
    return " x ".join(str(x) for x in shape)


def _format_row(row: Row) -> str:
    predicted = "-" if row.predicted is None else _dims(row.predicted)
    flag = "  <-- MISMATCH: formula != real pass" if row.mismatch else ""
    return (
        f"{row.name:<16} {row.kind:<18} {_dims(row.shape):>16} {predicted:>10} "
        f"{row.params:>12,} {row.macs:>15,}{flag}"
    )


def render(s: Summary) -> list[str]:
    """The printed report; the last three lines are machine-readable totals."""
    header = (
        f"model: {s.label}  activation: {s.activation}  "
        f"input: 3 x {s.image_size} x {s.image_size}  num_classes: {s.num_classes}"
    )
    columns = (
        f"{'layer':<16} {'type':<18} {'output':>16} {'predicted':>10} {'params':>12} {'MACs':>15}"
    )
    memory = (
        f"memory: ~{format_bytes(memory_estimate(s))} (estimate for one training batch of "
        f"{s.batch_size}: fp32 weights + gradients + {s.optimizer} state + activations)"
    )
    return [
        header,
        columns,
        *(_format_row(r) for r in s.rows),
        "(rows: convs, pools, linears, whole residual blocks; the totals count every layer)",
        f"params: {s.params}",
        f"macs: {s.macs}",
        memory,
    ]


def arg_parser() -> argparse.ArgumentParser:
    """The command line's one option, -cd; every other argument is a Hydra override."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        usage=f"python -m {PROG} [-h] [-cd CONFIG_DIR] [OVERRIDE ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # `--config` is not -cd's abbreviation: Hydra's to judge
        description="Print each layer of the configured model: its output size from a real\n"
        "forward pass next to the report's formula out = floor((in + 2p - d(k-1) - 1) / s)\n"
        "+ 1, its parameters and multiply-accumulates, then the totals and a rough memory\n"
        "estimate for one training batch. No data is read: the pass runs on the meta device.\n"
        "Exit status 1 when the formula and the real pass disagree.\n\n"
        "The config is composed as for a run: every argument that is not an option below\n"
        "is one of the run's Hydra overrides (model=resnet50 dataset.image_size=224);\n"
        "`python -m flowers_sweep --help` lists the groups.",
        epilog=f"example:\n  python -m {PROG} experiment=report model=resnet50\n"
        "docs: docs/model_summary.md",
    )
    parser.add_argument(
        "-cd",
        "--config-dir",
        metavar="CONFIG_DIR",
        help="your own config folder, searched before the package's, as for a run",
    )
    return parser


@outcome.command(PROG, HydraException, OmegaConfBaseException)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 on success, 1 if the formula disagrees with the real pass, 2 on errors."""
    args, overrides = arg_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.config_dir:
        overrides = ["--config-dir", args.config_dir, *overrides]
    cfg, choices = compose_config(config_dir_overrides(overrides))
    validate(cfg)
    summary = summarize(cfg, choice=choices.get("model"))
    print("\n".join(render(summary)))
    for row in summary.mismatches:
        print(
            f"{PROG}: MISMATCH at {row.name}: formula gives {_dims(row.predicted or ())}, "
            f"real pass gives {_dims(row.real_hw or ())}",
            file=sys.stderr,
        )
    return 1 if summary.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
