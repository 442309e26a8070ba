"""Configs written before `_target_` nodes, read in today's form.

Run folders from earlier versions hold `model.arch`, `optimizer.name`, `scheduler.name`,
`logger.name` and `dataset.name` where today's presets hold `_target_` nodes with the
same numbers, and lack the augmentation and cross-validation keys added since
(`ADDED`). A saved config is upgraded wherever it is read (the resume check, evaluate,
the aggregator), so an old run resumes, skips, evaluates and aggregates as it did;
nothing in the old folder is rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# What each old name was built as, and the target that builds it today.
MODELS = {
    "resnet": "flowers_sweep.models.ResNet",
    "baseline_cnn": "flowers_sweep.models.BaselineCNN",
}
OPTIMIZERS = {"adam": "torch.optim.Adam", "sgd": "torch.optim.SGD"}
SCHEDULERS = {"multistep": "flowers_sweep.optim.multistep", "none": "flowers_sweep.optim.constant"}
LOGGERS = {
    "tensorboard": "flowers_sweep.loggers.TensorBoardLogger",
    "none": "flowers_sweep.loggers.NoLogger",
}
DATASETS = {
    "synthetic": "flowers_sweep.data.synthetic.SyntheticFlowers",
    "flowers102": "flowers_sweep.data.flowers102.Flowers102",
}
# old key -> (its names' targets, whether the new node is _partial_)
RENAMED = {
    "dataset.name": (DATASETS, False),
    "model.arch": (MODELS, False),
    "optimizer.name": (OPTIMIZERS, True),
    "scheduler.name": (SCHEDULERS, True),
    "logger.name": (LOGGERS, True),
}


# Keys added since, with the value that does what the config did before they existed.
ADDED = {
    "augment.hflip_p": 0.0,
    "augment.crop_padding": 0,
    "augment.resized_crop_scale": None,
    "augment.resized_crop_ratio": [0.75, 4 / 3],
    "augment.policy": None,  # the training recipe's keys (docs/recipes.md)
    "augment.num_ops": 2,
    "augment.magnitude": 9,
    "augment.erase_p": 0.0,
    "augment.mixup_alpha": 0.0,
    "augment.cutmix_alpha": 0.0,
    "augment.mix_prob": 1.0,
    "dataset.folds": None,  # no cross-validation (data/folds.py)
    "dataset.fold": 0,
    "trainer.label_smoothing": 0.0,  # the training recipe's keys (docs/recipes.md)
    "trainer.clip_grad_norm": None,
    "trainer.accumulate": 1,
    "trainer.early_stop_patience": None,
    "trainer.early_stop_metric": "val_acc",
    "optimizer.norm_weight_decay": None,
    "trainer.ema_decay": None,
    "trainer.ema_every": 1,
    "trainer.ema_warmup": 0,
}
# Where a key of ADDED goes only into a node that has this key, rather than any key: a
# dataset node has an `image_size` (config/validate.py requires one), so a user's own
# dataset node without the fold keys reads as one with them off, like the presets.
ADDED_WHERE = {
    "dataset.folds": "dataset.image_size",
    "dataset.fold": "dataset.image_size",
    # every optimizer preset, old or new, sets lr; the key is the framework's (optim.py)
    "optimizer.norm_weight_decay": "optimizer.lr",
}


def upgrade_settings(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A flattened config ({"model.arch": "resnet", ...}) in today's keys; a config
    already in today's form comes back unchanged. Keys keep their order, the node's
    `_target_` (and `_partial_`) taking the old name's place; keys added since
    (`ADDED`) come last, at the value that changes nothing."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in RENAMED and value in RENAMED[key][0]:
            names, partial = RENAMED[key]
            node = key.rsplit(".", 1)[0]
            out[f"{node}._target_"] = names[value]
            if partial:
                out[f"{node}._partial_"] = True
        else:
            out[key] = value
    for key, value in ADDED.items():
        node = key.rsplit(".", 1)[0]
        if key in out:
            continue
        if key in ADDED_WHERE:
            if ADDED_WHERE[key] in out:
                out[key] = value
        elif any(k.startswith(f"{node}.") for k in out):
            out[key] = value
    return out


def upgrade_tree(tree: Mapping[str, Any]) -> dict[str, Any]:
    """upgrade_settings for a nested config (`.hydra/config.yaml` as loaded)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat = upgrade_settings({f"{key}.{k}": v for k, v in value.items()})
            out[key] = {k.split(".", 1)[1]: v for k, v in flat.items()}
        else:
            out[key] = value
    return out
