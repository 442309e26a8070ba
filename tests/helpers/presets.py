"""The presets under conf/, found by a glob, and what a test needs to run them offline."""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from .cli import CONF


def default_groups() -> set[str]:
    """The groups conf/config.yaml's defaults list selects (`group=name` replaces its
    choice there); any other group is added to the list (`+group=name`)."""
    defaults = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    keys = (k for entry in defaults if isinstance(entry, dict) for k in entry)
    return {k.removeprefix("optional ").strip() for k in keys if not k.startswith("override ")}


def preset_files(group: str | None = None) -> list[Path]:
    """Every option file conf/<group>/<name>.yaml (nested groups too, not config.yaml)."""
    files = sorted(p for p in CONF.rglob("*.yaml") if p.parent != CONF)
    return [p for p in files if group is None or preset_group(p) == group]


def preset_group(path: Path) -> str:
    return path.parent.relative_to(CONF).as_posix()


def preset_override(path: Path) -> str:
    """How the command line selects the preset: `group=name`, or `+group=name` for a
    group that conf/config.yaml's defaults list does not name; Hydra's own groups
    (conf/hydra/sweeper/) are always in its defaults list."""
    group = preset_group(path)
    added = group not in default_groups() and not group.startswith("hydra/")
    return f"{'+' if added else ''}{group}={path.stem}"


def compose_with_hydra(*overrides: str) -> tuple[DictConfig, DictConfig]:
    """The job's config, as make_cfg composes it, and Hydra's own (its group choices, its
    mode: a preset may make the launch a multirun)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    hydra = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, hydra


def stand_in_torchvision_weights(model: DictConfig, torch_home: Path) -> Path | None:
    """When `model.weights` names torchvision's weights (IMAGENET1K_V1), write a stand-in
    where torchvision keeps that file (TORCH_HOME/hub/checkpoints/<its file name>): the
    model's own layout and parameter names, freshly initialised, not ImageNet's values.
    Nothing is downloaded here, and a run reads that file without knowing the difference.
    Returns the file, or None when `model.weights` names no torchvision weights."""
    import torch
    import torchvision

    from flowers_sweep.record.labels import model_label

    if not model.get("weights"):
        return None
    label = model_label(model)
    try:
        enum = torchvision.models.get_model_weights(label)[model.weights]
    except (KeyError, ValueError):
        return None  # a file of its own: the preset must name one that exists
    path = torch_home / "hub" / "checkpoints" / Path(enum.url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.get_model(label).state_dict(), path)
    return path


def stand_in_data(cfg: DictConfig, where: Path) -> None:
    """A preset that leaves `dataset.root` to the user (`???`: image_folder) gets a small
    generated folder of class folders there, as a user's would be."""
    from omegaconf import OmegaConf

    from .datasets import make_image_folder

    if OmegaConf.is_missing(cfg.dataset, "root"):
        make_image_folder(where / "photos", per_class=4, odd=False)
        cfg.dataset.root = str(where / "photos")
