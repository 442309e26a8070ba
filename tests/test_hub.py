"""`model=torchvision` and `model=timm`: the libraries' own models by name, the head sized
to the data, the activation swapped (or refused in one line); the summary CLI and real
runs on them; and the one-line errors a bad model node gets before any data is read."""

from __future__ import annotations

import contextlib
import io
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import timm  # the dev extra installs it, so CI tests model=timm
import torch
import torchvision
from torch import nn

import flowers_sweep as fs
from flowers_sweep import summary
from flowers_sweep.config.validate import validate
from flowers_sweep.errors import ConfigError
from flowers_sweep.models import build_model, count_parameters

from .helpers.cli import TINY, make_cfg, metrics, result, run_app, run_cli

NUM_CLASSES = 7  # not the datasets' 10 or 102: a head left at its default would show
SYNTHETIC_CLASSES = 10  # conf/dataset/synthetic.yaml, what the CLI runs below train on


def leaf_kinds(model: nn.Module) -> Counter:
    return Counter(type(m).__name__ for m in model.modules() if next(m.children(), None) is None)


def torchvision_params(name: str, num_classes: int) -> int:
    with torch.device("meta"):  # no weight init: only the count matters
        return count_parameters(torchvision.models.get_model(name, num_classes=num_classes))


def timm_params(name: str, num_classes: int) -> int:
    with torch.device("meta"):
        return count_parameters(timm.create_model(name, num_classes=num_classes))


# --- torchvision --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hub", "name", "library_params"),
    [
        ("torchvision", "mobilenet_v3_small", torchvision_params),
        ("timm", "resnet18d", timm_params),
    ],
)
def test_a_hub_model_is_the_librarys_own_with_the_head_sized_to_the_data(
    hub, name, library_params
):
    cfg = make_cfg(f"model={hub}", f"model.name={name}")
    model = build_model(cfg.model, NUM_CLASSES, 32).eval()
    assert count_parameters(model) == library_params(name, NUM_CLASSES)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, NUM_CLASSES)


def test_a_vit_is_built_for_the_image_size():
    """A ViT's position embedding has one entry per patch: at 32 px and 16 px patches,
    4 patches + the class token. Built for torchvision's 224 px it refuses 32 px input."""
    cfg = make_cfg("model=torchvision", "model.name=vit_b_16")
    with torch.device("meta"):  # 86M parameters: shapes only
        model = build_model(cfg.model, NUM_CLASSES, 32).eval()
        out = model(torch.zeros(2, 3, 32, 32))
    assert model.image_size == 32
    assert model.encoder.pos_embedding.shape == (1, (32 // 16) ** 2 + 1, 768)
    assert out.shape == (2, NUM_CLASSES)


def test_gelu_replaces_every_relu_and_hardswish_but_not_the_gates():
    """mobilenet_v3_small's squeeze-excitation blocks gate with Hardsigmoid: a gate, not
    the model's activation, so it stays."""
    native = leaf_kinds(torchvision.models.mobilenet_v3_small(num_classes=NUM_CLASSES))
    cfg = make_cfg("model=torchvision", "model.name=mobilenet_v3_small", "model.activation=gelu")
    model = build_model(cfg.model, NUM_CLASSES, 32).eval()
    kinds = leaf_kinds(model)
    assert native["ReLU"] > 0 and native["Hardswish"] > 0 and native["Hardsigmoid"] > 0
    assert kinds["ReLU"] == kinds["Hardswish"] == 0
    assert kinds["GELU"] == native["ReLU"] + native["Hardswish"]
    assert kinds["Hardsigmoid"] == native["Hardsigmoid"]
    gelus = [m for m in model.modules() if isinstance(m, nn.GELU)]
    assert len({id(m) for m in gelus}) == len(gelus)  # a fresh module each, none shared
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, NUM_CLASSES)


def test_a_model_that_applies_its_activation_as_a_function_is_refused():
    """densenet121 calls F.relu in forward(): no module swap reaches it, so the run is
    refused rather than left half-swapped."""
    cfg = make_cfg("model=torchvision", "model.name=densenet121", "model.activation=gelu")
    with pytest.raises(ConfigError, match=r"densenet121.*relu.*model\.activation=native"):
        validate(cfg)
    validate(make_cfg("model=torchvision", "model.name=densenet121"))  # native: fine


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("not_a_model", r"model\.name='not_a_model' is invalid: torchvision has no such"),
        ("mobilenet_v3_smal", r"did you mean mobilenet_v3_small\b"),
    ],
    ids=["unknown", "close"],
)
def test_a_name_torchvision_does_not_list_is_refused_with_the_closest(name, said):
    with pytest.raises(ConfigError, match=said):
        validate(make_cfg("model=torchvision", f"model.name={name}"))


# --- timm -----------------------------------------------------------------------------


def test_a_timm_activation_goes_in_as_act_layer():
    native = timm.create_model("resnet18d", num_classes=NUM_CLASSES)
    cfg = make_cfg("model=timm", "model.name=resnet18d", "model.activation=gelu")
    model = build_model(cfg.model, NUM_CLASSES, 32)
    relus = {n for n, m in native.named_modules() if isinstance(m, nn.ReLU)}
    gelus = {n for n, m in model.named_modules() if isinstance(m, nn.GELU)}
    assert relus and gelus == relus
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_a_timm_model_without_act_layer_is_refused_in_one_line():
    """dla34's constructor has no act_layer (timm's DLA hard-codes ReLU)."""
    cfg = make_cfg("model=timm", "model.name=dla34", "model.activation=gelu")
    said = r"model\.name='dla34'.*takes no act_layer; use model\.activation=native"
    with pytest.raises(ConfigError, match=said):
        validate(cfg)


def test_a_name_timm_does_not_list_is_refused_with_the_closest():
    with pytest.raises(ConfigError, match=r"model\.name='resnet18dd'.*did you mean resnet18d\b"):
        validate(make_cfg("model=timm", "model.name=resnet18dd"))


# --- the summary CLI --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "state"),
    [
        (["optimizer=adam"], 2),  # two moments
        (["optimizer=adamw"], 2),
        (["optimizer=sgd"], 1),  # the momentum buffer
        (["optimizer=sgd", "optimizer.momentum=0"], 0),  # plain SGD keeps nothing
    ],
)
def test_optimizer_state_counts_the_values_kept_per_parameter(overrides, state):
    assert summary.optimizer_state(make_cfg(*overrides).optimizer) == state


# The one summary run of this file that starts the real command (both tests below read
# it); the other argument lists call the summary module's main in this process, which is
# what the command runs (test_summary.py and test_help.py start the command itself too).
REAL_SUMMARY = ("model=timm", "model.name=resnet18d")


@cache
def summary_run(*args: str) -> tuple[int, str, str]:
    """`python -m flowers_sweep.summary ARGS`: exit status, stdout and stderr, once per
    argument list; a fresh interpreter for REAL_SUMMARY, summary.main in this process
    for any other."""
    if args == REAL_SUMMARY:
        proc = run_cli(*args, cache=None, module="flowers_sweep.summary")
        return proc.returncode, proc.stdout, proc.stderr
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = summary.main(list(args))
    return code, out.getvalue(), err.getvalue()


def summary_totals(*args: str) -> dict[str, str]:
    code, out, err = summary_run(*args)
    assert code == 0, err[-3000:]
    return dict(line.split(": ", 1) for line in out.strip().splitlines()[-3:])


@pytest.mark.parametrize(
    ("args", "count"),
    [
        (("model=torchvision", "model.name=mobilenet_v3_small", "dataset.image_size=32"),
         lambda: torchvision_params("mobilenet_v3_small", SYNTHETIC_CLASSES)),
        pytest.param(REAL_SUMMARY, lambda: timm_params("resnet18d", SYNTHETIC_CLASSES),
                     marks=pytest.mark.e2e),
    ],
    ids=["torchvision", "timm"],
)  # fmt: skip
def test_the_summary_counts_a_hub_models_parameters_as_the_library_does(args, count):
    assert int(summary_totals(*args)["params"]) == count()


@pytest.mark.e2e
def test_the_summarys_memory_estimate_follows_the_optimizer_state():
    """fp32: 4 bytes a value; Adam keeps 2 values a parameter, SGD without momentum 0,
    so the estimates differ by 4 * 2 * params bytes (each printed to 0.1 MiB)."""
    adam = summary_totals(*REAL_SUMMARY)  # the real command's run
    sgd = summary_totals(*REAL_SUMMARY, "optimizer=sgd", "optimizer.momentum=0")
    assert "adam state" in adam["memory"] and "sgd state" in sgd["memory"]
    params = int(adam["params"])
    mib = [float(re.match(r"~([\d.]+) MiB ", s["memory"]).group(1)) for s in (adam, sgd)]
    assert mib[0] - mib[1] == pytest.approx(4 * 2 * params / 2**20, abs=0.1 + 1e-9)


# --- training runs ----------------------------------------------------------------------


def check_hub_run(run_dir: Path, name: str, count) -> None:
    done = result(run_dir)
    assert (done["status"], done["model"], done["activation"]) == ("completed", name, "native")
    assert done["params"] == count(name, SYNTHETIC_CLASSES) and done["num_classes"] == 10
    assert [r["epoch"] for r in metrics(run_dir)] == ["1"]


@pytest.mark.e2e
def test_a_torchvision_model_trains_to_completion(tmp_path, cache_dir):
    """The real command, once for the hub models; timm's run below is the same path."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        "model=torchvision", "model.name=mobilenet_v3_small", *TINY, f"hydra.run.dir={run_dir}",
        cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_hub_run(run_dir, "mobilenet_v3_small", torchvision_params)


def test_a_timm_model_trains_to_completion(tmp_path, cache_dir):
    """In this process (flowers_sweep.train, the run the command makes)."""
    fs.train(fs.compose(["model=timm", "model.name=resnet18d", *TINY]), tmp_path / "run")
    check_hub_run(tmp_path / "run", "resnet18d", timm_params)


# --- errors, before any data is read ------------------------------------------------------

# What a run that stops at validation leaves: Hydra's files (.hydra/, the job log), the
# folder's lock and the failure's record. No run_config.json: the folder is claimed only
# once the config is valid; nothing that reading data or training writes.
FAILED_BEFORE_DATA = {".hydra", "flowers_sweep.log", ".run.lock", "result.json", "traceback.txt"}


BAD_NODES = [
    (["model.activation=gelu_typo"], "model.activation='gelu_typo'"),
    (["model=torchvision", "model.name=not_a_model"], "model.name='not_a_model'"),
    (["model._target_=no_such_module.Net"], "model._target_='no_such_module.Net'"),
]


def check_failed_before_data(code: int, stderr: str, named: str, run_dir: Path, cache: Path):
    """Exit status 2, one line naming the value, nothing about the dataset (the dataset
    is Flowers102 in a folder that does not exist: had data been read first, the error
    would be about it, and the cache would exist)."""
    assert code == 2, stderr[-3000:]
    lines = [x for x in stderr.splitlines() if x.startswith("flowers_sweep:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"flowers_sweep: error: {named} is invalid")
    assert "Traceback" not in stderr
    assert "nonexistent" not in stderr and "flowers-102" not in stderr
    assert {p.name for p in run_dir.iterdir()} == FAILED_BEFORE_DATA
    failed = result(run_dir)
    assert (failed["error_type"], failed["epochs_done"]) == ("ConfigError", 0)
    assert not cache.exists()


NO_DATA = ["dataset=flowers102", "dataset.root=/nonexistent"]


@pytest.mark.e2e
def test_a_bad_model_node_exits_2_in_one_line_before_any_data_is_read(tmp_path):
    """The real command, for the first bad node; the others below, in this process."""
    (overrides, named), run_dir, cache = BAD_NODES[0], tmp_path / "run", tmp_path / "cache"
    proc = run_cli(*overrides, *NO_DATA, f"hydra.run.dir={run_dir}", cache=cache)
    check_failed_before_data(proc.returncode, proc.stderr, named, run_dir, cache)


@pytest.mark.parametrize(
    ("overrides", "named"), BAD_NODES, ids=["activation", "hub_name", "target"]
)
def test_every_bad_model_node_is_refused_before_any_data_is_read(
    tmp_path, monkeypatch, capsys, overrides, named
):
    """app.main as the command runs it (helpers/cli.run_app): the same refusal path."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    monkeypatch.setenv("FLOWERS_SWEEP_CACHE", str(cache))
    code = run_app([*overrides, *NO_DATA, f"hydra.run.dir={run_dir}"], monkeypatch)
    check_failed_before_data(code, capsys.readouterr().err, named, run_dir, cache)


# --- models the meta-device check must not refuse -----------------------------------


def test_a_model_whose_constructor_computes_with_tensors_is_checked_on_the_cpu():
    """torchvision's RegNets size their stages with tensor arithmetic, which the meta
    device cannot run; the check builds them on the CPU instead of refusing them."""
    validate(make_cfg("model=torchvision", "model.name=regnet_y_400mf"))


def test_a_sigmoid_that_scales_attention_is_not_taken_for_the_activation():
    # Swin V2 applies torch.sigmoid to its relative position bias, as a gate does
    validate(make_cfg("model=torchvision", "model.name=swin_v2_t", "model.activation=gelu"))


def test_a_timm_model_that_takes_act_layer_in_part_only_says_so(caplog):
    # timm's DPN passes act_layer to its stem only; its blocks keep ReLU
    with caplog.at_level("WARNING", logger="flowers_sweep.models.hub"):
        build_model(
            make_cfg("model=timm", "model.name=dpn68", "model.activation=mish").model, 7, 32
        )
    assert re.search(r"mish reached only part of timm's dpn68: \d+ .*\(ReLU\)", caplog.text)


class ScaledTanh(nn.Module):
    """A user's own activation: its forward calls torch.tanh, which is its business."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * torch.tanh(x)


def test_a_users_own_activation_class_swaps_into_a_torchvision_model():
    node = "{_target_:tests.test_hub.ScaledTanh,alpha:1.5}"
    cfg = make_cfg("model=torchvision", "model.name=resnet18", f"model.activation={node}")
    validate(cfg)
    model = build_model(cfg.model, NUM_CLASSES, 32)
    acts = [m for m in model.modules() if isinstance(m, ScaledTanh)]
    assert acts and all(m.alpha == 1.5 for m in acts)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_a_timm_model_built_for_one_size_is_built_for_the_datas():
    # timm's ViTs take img_size; its convnets take any size and no img_size
    cfg = make_cfg("model=timm", "model.name=vit_tiny_patch16_224")
    model = build_model(cfg.model, NUM_CLASSES, 32).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, NUM_CLASSES)
