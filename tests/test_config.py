from unittest.mock import ANY

import pytest
import yaml
from omegaconf import OmegaConf

from flowers_sweep.config.validate import validate
from flowers_sweep.errors import ConfigError

from .helpers.cli import CONF, make_cfg
from .helpers.presets import (
    compose_with_hydra,
    default_groups,
    preset_files,
    preset_group,
    preset_override,
    stand_in_data,
    stand_in_torchvision_weights,
)


@pytest.mark.parametrize("preset", preset_files(), ids=preset_override)
def test_every_preset_composes_to_a_valid_config(preset, tmp_path, monkeypatch):
    """Every file conf/<group>/<name>.yaml, as the command line selects it: a preset whose
    values the checks reject would fail only at launch time. A preset that starts from
    torchvision's weights (experiment=finetune) finds a stand-in file where torchvision
    keeps them, as on a machine that fetched them: the check is that the file exists."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg, hydra = compose_with_hydra(preset_override(preset))
    assert hydra.runtime.choices[preset_group(preset)] == preset.stem
    stand_in_torchvision_weights(cfg.model, tmp_path)
    stand_in_data(cfg, tmp_path)
    validate(cfg)


def test_the_presets_are_found_in_every_group_the_defaults_select():
    groups = {preset_group(p) for p in preset_files()}
    assert default_groups() <= groups, default_groups() - groups
    assert {"experiment", "hparams_search", "case"} <= groups


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.activation=tanhh",
            r"'tanhh' is invalid: did you mean tanh.*allowed.*leaky_relu.*mish",
        ),
        ("trainer.epochs=-1", r"trainer.epochs=-1.*>= 1"),
        ("trainer.epochs=0", r"trainer.epochs=0"),
        ("trainer.batch_size=0", r"trainer.batch_size=0.*>= 1"),
        ("optimizer.lr=0", r"optimizer.lr=0.*> 0"),
        ("optimizer.lr=-0.1", r"optimizer.lr=-0.1"),
        ("scheduler.milestones=[70,40]", r"scheduler.milestones=\[70, 40\].*increasing"),
        ("scheduler.milestones=[40,40]", r"scheduler.milestones"),
        ("scheduler.milestones=[0.4,70]", r"scheduler.milestones=\[0.4, 70\].*fractions"),
        ("scheduler.milestones=[0.4,1.5]", r"scheduler.milestones=\[0.4, 1.5\].*\(0, 1\)"),
        ("scheduler.milestones=[0.7,0.4]", r"scheduler.milestones=\[0.7, 0.4\]"),
        ("dataset.num_classes=1", r"dataset.num_classes=1 .*2 to 192 classes"),
        ("dataset.num_classes=193", r"dataset.num_classes=193"),
        ("scheduler.gamma=0", r"scheduler.gamma=0.*\(0, 1\]"),
        ("scheduler.gamma=1.5", r"scheduler.gamma=1.5"),
        ("model.block=huge", r"model.block='huge'.*basic, bottleneck"),
        ("model.layers=[2,2,2]", r"model.layers=\[2, 2, 2\]"),
        ("trainer.device=tpu", r"trainer.device='tpu'.*auto, cpu, cuda"),
        ("dataset.image_size=4", r"dataset.image_size=4"),
        ("augment.vflip_p=2", r"augment.vflip_p=2"),
        ("model.activation=gelu_typo", r"model.activation='gelu_typo'.*did you mean gelu"),
        ("model.activation=native", r"model.activation='native'.*allowed short names"),
        ("+model.depth=3", r"model.depth=3 .*takes no argument 'depth'"),
        ("model._target_=no_such_pkg.Net", r"model._target_='no_such_pkg.Net'.*does not import"),
        ("model._target_=math.pi", r"model._target_='math.pi'.*not a class or function"),
        (
            "model.activation={_target_:flowers_sweep.models.NoSuch}",
            r"activation._target_=.*does not import \(flowers_sweep.models has no 'NoSuch'\)",
        ),
        ("optimizer._target_=torch.optim.SGDD", r"optimizer._target_='torch.optim.SGDD'"),
        ("optimizer._target_=torch.optim.RMSprop", r"optimizer.betas=.*RMSprop takes no"),
        ("optimizer.betas=[1.5,0.9]", r"optimizer: torch.optim.Adam refused .*beta"),
        ("scheduler=cosine", None),
        ("scheduler=step", None),
        ("scheduler=cosine scheduler.warmup_epochs=5", r"scheduler.warmup_epochs=5 .*\[0, 5\)"),
        (
            "scheduler=none scheduler._target_=torch.optim.lr_scheduler.StepLR",
            r"scheduler.step_size is missing",
        ),
        ("logger._target_=flowers_sweep.loggers.Nope", r"logger._target_=.*does not import"),
        (
            "scheduler=none scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau",
            r"ReduceLROnPlateau' is invalid: its step\(\) needs metrics",
        ),
        ("model.weights=IMAGENET1K_V9", r"torchvision's weights for resnet18 are IMAGENET1K_V1"),
        (
            "model=timm model.weights=IMAGENET1K_V1",
            r"resnet18d is not a torchvision model with named weights",
        ),
    ],
)
def test_bad_values_are_named(override, message):
    cfg = make_cfg(*override.split())
    if message is None:  # a preset's neighbour that must stay valid
        validate(cfg)
        return
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


@pytest.mark.parametrize("case", ["relu", "sigmoid", "leaky_relu"])
def test_cases_are_resnet18_with_their_activation(case):
    cfg = make_cfg(f"case={case}")
    assert cfg.model._target_ == "flowers_sweep.models.ResNet"
    assert list(cfg.model.layers) == [2, 2, 2, 2]
    assert cfg.model.activation == case


def test_baseline_case():
    cfg = make_cfg("case=baseline_cnn")
    assert cfg.model._target_ == "flowers_sweep.models.BaselineCNN"
    assert cfg.model.activation == "relu"


def test_command_line_beats_case():
    assert make_cfg("case=relu", "model.activation=sigmoid").model.activation == "sigmoid"


@pytest.mark.parametrize(
    ("milestones", "epochs", "expected"),
    [
        ([0.4, 0.7], 100, [40, 70]),  # the report's
        ([0.4, 0.7], 5, [2, 4]),  # the demo's
        ([0.4, 0.7], 10, [4, 7]),
        ([0.4, 0.7], 1, [1, 1]),
        ([0.6], 100, [60]),
        ([40, 70], 5, [40, 70]),  # epoch numbers stay epoch numbers
    ],
)
def test_milestones_as_fractions_of_the_run(milestones, epochs, expected):
    from flowers_sweep.optim import milestone_epochs

    assert milestone_epochs(milestones, epochs) == expected


def test_flowers102_has_102_classes():
    with pytest.raises(ConfigError, match=r"dataset.num_classes=50 .*102 classes"):
        validate(make_cfg("dataset=flowers102", "dataset.num_classes=50"))


@pytest.mark.parametrize(
    ("overrides", "augment"),
    [
        ([], "report"),  # the default run: synthetic with the report's
        (["dataset=synthetic"], "report"),
        (["dataset=flowers102"], "report"),
        (["dataset=cifar10"], "cifar"),
        (["dataset=cifar100"], "cifar"),
        (["dataset=image_folder"], "none"),
        (["dataset=cifar10", "augment=none"], "none"),  # the command line wins
        (["augment=imagenet_style", "dataset=image_folder"], "imagenet_style"),
        (["dataset=cifar100", "augment=report"], "report"),
        (["experiment=report"], "report"),
        (["experiment=finetune"], "report"),
        (["experiment=report", "dataset=cifar10"], "report"),  # the experiment's choice wins
        (["experiment=report", "augment=cifar"], "cifar"),
    ],
)
def test_each_dataset_brings_its_augmentation_and_an_explicit_one_wins(overrides, augment):
    cfg, hydra = compose_with_hydra(*overrides)
    assert hydra.runtime.choices.augment == augment
    assert cfg.augment == OmegaConf.load(CONF / "augment" / f"{augment}.yaml")


@pytest.mark.parametrize("preset", preset_files("dataset"), ids=preset_override)
def test_every_dataset_preset_chooses_its_augmentation(preset):
    defaults = yaml.safe_load(preset.read_text())["defaults"]
    chosen = [d for d in defaults if isinstance(d, dict) and "augment@" in next(iter(d))]
    assert chosen == [{"override /augment@_global_.augment": ANY}], defaults
