import functools

import pytest
import torch
import torchvision
from torch import nn

from flowers_sweep.models import BaselineCNN, ResNet, build_model, build_on_meta, count_parameters
from flowers_sweep.models.activations import ACTIVATIONS, make_activation

from .helpers.cli import make_cfg

RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
# Shapes, counts and module types do not need values: those tests build on the meta
# device (no memory, no initialisation: ResNet-152's takes a second on the CPU) and
# compute shapes only. Values are compared where they matter (the torchvision logits).


@pytest.mark.parametrize("name", RESNETS)
@pytest.mark.parametrize("num_classes", [102, 10])
def test_parameter_count_equals_torchvision(name, num_classes):
    cfg = make_cfg(f"model={name}")
    ours = build_on_meta(cfg.model, num_classes, 224)
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)(num_classes=num_classes)
    assert count_parameters(ours) == count_parameters(theirs)


def test_resnet_layer_shapes_match_torchvision_tensor_for_tensor():
    with torch.device("meta"):
        ours = ResNet("bottleneck", [3, 4, 6, 3], 102)
        theirs = torchvision.models.resnet50(num_classes=102)
    assert sorted(p.shape for p in ours.parameters()) == sorted(
        p.shape for p in theirs.parameters()
    )


@pytest.mark.parametrize("name", [*RESNETS, "baseline_cnn"])
@pytest.mark.parametrize("size", [32, 64, 224])
def test_output_shape_at_each_size(name, size):
    cfg = make_cfg(f"model={name}")
    model = build_on_meta(cfg.model, 7, size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size, device="meta"))
    assert out.shape == (2, 7)


@functools.cache
def relu_count(name: str) -> int:
    """How many ReLU modules the model has with its default activation."""
    return sum(
        isinstance(m, nn.ReLU)
        for m in build_on_meta(make_cfg(f"model={name}").model, 10, 32).modules()
    )


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "baseline_cnn"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_activation_swap_reaches_every_activation(name, activation):
    model = build_on_meta(
        make_cfg(f"model={name}", f"model.activation={activation}").model, 10, 32
    )
    expected = type(make_activation(activation))
    n_relu = relu_count(name)
    kinds = tuple(ACTIVATIONS.values())
    acts = [m for m in model.modules() if isinstance(m, kinds)]
    assert n_relu > 0
    assert len(acts) == n_relu
    assert all(type(m) is expected for m in acts)


def test_activation_modules_are_not_shared():
    model = ResNet("basic", [2, 2, 2, 2], 10, "sigmoid")
    acts = [m for m in model.modules() if isinstance(m, nn.Sigmoid)]
    assert len({id(m) for m in acts}) == len(acts)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match=r"'tanhh'.*did you mean tanh.*leaky_relu.*sigmoid"):
        make_activation("tanhh")


def test_baseline_cnn_too_small_input_fails_clearly():
    with pytest.raises(ValueError, match="image_size=8"):
        BaselineCNN(num_classes=10, image_size=8)


def test_new_depth_is_yaml_only():
    cfg = make_cfg("model=resnet18", "model.layers=[1,1,1,1]")
    model = build_model(cfg.model, 10, 32).eval()
    assert count_parameters(model) < count_parameters(build_model(make_cfg().model, 10, 32))
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", RESNETS)
def test_torchvision_weights_load_strictly_and_give_the_same_logits(name):
    """Same names, same shapes (every depth, on the meta device), same computation (each
    block type, basic and bottleneck, with torchvision's initialised weights): a
    torchvision state_dict is ours."""
    ours = build_on_meta(make_cfg(f"model={name}").model, 10, 64).eval()
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in getattr(torchvision.models, name)(num_classes=10)
                  .state_dict().items()}  # fmt: skip
    assert list(ours.state_dict()) == list(shapes)
    assert {k: v.shape for k, v in ours.state_dict().items()} == shapes
    if name not in ("resnet18", "resnet50"):  # deeper: more of the same blocks
        return
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(num_classes=10).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)  # shapes checked
    assert not any(t.is_meta for t in ours.state_dict().values())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_weights_saved_before_the_rename_still_load():
    model = ResNet("basic", [1, 1, 1, 1], 10)
    renamed = {}
    for key, value in model.state_dict().items():
        old = key.replace("conv1.", "stem.0.", 1) if key.startswith("conv1.") else key
        old = old.replace("bn1.", "stem.1.", 1) if key.startswith("bn1.") else old
        for i in range(1, 5):
            if old.startswith(f"layer{i}."):
                old = old.replace(f"layer{i}.", f"stages.{i - 1}.", 1)
        renamed[old.replace(".downsample.", ".shortcut.")] = value
    assert "stem.0.weight" in renamed and "stages.1.0.shortcut.0.weight" in renamed
    fresh = ResNet("basic", [1, 1, 1, 1], 10)
    fresh.load_state_dict(renamed, strict=True)
    pairs = zip(fresh.state_dict().values(), model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
