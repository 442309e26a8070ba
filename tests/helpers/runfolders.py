"""Run folders as the training run and Hydra leave them, written without training."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from flowers_sweep.record.runrecord import METRIC_COLUMNS

from .cli import make_cfg


@cache
def _base_config(model: str) -> dict[str, Any]:
    return OmegaConf.to_container(make_cfg(f"model={model}"), resolve=False)


def write_run(
    path: Path,
    *,
    case: str | None = None,
    model: str = "resnet18",
    activation: str = "relu",
    seed: int = 0,
    status: str | None = "completed",
    test_acc: float = 0.5,
    epochs: int = 3,
    lr: float = 0.001,
    milestones: tuple[int, ...] = (40, 70),
    gamma: float = 0.2,
    settings: dict[str, Any] | None = None,
    test_acc_best_val: float | None = None,
    choices: dict[str, str] | None = None,
) -> Path:
    """A job folder; status None leaves no result.json (a run still going or killed).

    `settings` sets more dotted keys of the config, e.g. {"trainer.device": "cuda"};
    `choices` more of Hydra's group choices, e.g. {"dataset": "cifar10"}.
    """
    cfg = json.loads(json.dumps(_base_config(model)))
    for key, value in (settings or {}).items():
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[last] = value
    cfg["seed"], cfg["model"]["activation"] = seed, activation
    cfg["trainer"]["epochs"], cfg["optimizer"]["lr"] = epochs, lr
    cfg["scheduler"].update(milestones=list(milestones), gamma=gamma)
    hydra_dir = path / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    choices = {"case": case, "model": model, "dataset": "synthetic", **(choices or {})}
    (hydra_dir / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}})
    )
    overrides = [f"case={case}"] if case else [f"model.activation={activation}"]
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"seed={seed}"]))
    with open(path / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(METRIC_COLUMNS)
        for e in range(1, epochs + 1):
            rate = lr * gamma ** sum(e > m for m in milestones)
            writer.writerow([e, 2.0 / e, 0.1 * e, 2.2 / e, 0.09 * e, rate, 1.0])
    if status is not None:
        result = {
            "status": status, "case": case, "model": model, "activation": activation,
            "epochs": epochs, "seed": seed, "test_acc": test_acc, "test_loss": 1.0,
            "best_val_acc": test_acc, "params": 1000, "num_classes": 10, "train_size": 10,
            "val_size": 5, "test_size": 5, "wall_s": 1.5, "device": "cpu",
        }  # fmt: skip
        if test_acc_best_val is not None:
            result.update(test_acc_best_val=test_acc_best_val, best_epoch=1)
        (path / "result.json").write_text(json.dumps(result))
    return path
