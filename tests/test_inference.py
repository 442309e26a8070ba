"""Using what a run trained: torchvision's names, starting weights, evaluate, predict."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from PIL import Image

from flowers_sweep import evaluate
from flowers_sweep.data import open_source
from flowers_sweep.errors import ConfigError, FlowersSweepError
from flowers_sweep.evaluate import per_class_table, restore
from flowers_sweep.models import build_model
from flowers_sweep.models.weights import load_weights, resolve_weights_file
from flowers_sweep.record.runrecord import read_data

from .helpers.cli import SHARED_FIXTURES, TINY, make_cfg, result, run_app, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """The CLI run every test here reads: 3 epochs keeping the last and best weights,
    started from a torchvision ResNet-18 state dict of 1,000 classes (ImageNet's layout;
    torchvision's own starting values: nothing is downloaded)."""
    folder = tmp_path_factory.mktemp("trained")
    weights = folder / "resnet18_imagenet_layout.pt"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    run_dir = folder / "run"
    proc = run_cli(*TINY, "trainer.epochs=3", "trainer.keep_weights=both",
                   f"model.weights={weights}", f"hydra.run.dir={run_dir}",
                   cache=cache_dir)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_a_skipped_relaunch_changes_nothing_and_evaluate_names_the_kept_weights(
    trained, tmp_path, cache_dir, monkeypatch, capsys
):
    """Relaunching a completed run with another keep_weights trains nothing and leaves
    its .hydra/ as it was (Hydra rewrites it first): app.main in this process, the
    skip's real command is test_legacy's; evaluate --weights last on a run that kept only
    its best weights says what to use instead, in one line (the real command)."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    command = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")  # the fixture's
    again = [o.replace("keep_weights=both", "keep_weights=best") for o in command]
    assert again != list(command)
    assert run_app([*again, f"hydra.run.dir={run_dir}"], monkeypatch) == 0
    said = capsys.readouterr()
    assert "already holds a completed run of these settings: skipped" in said.out + said.err
    assert (run_dir / ".hydra" / "config.yaml").read_text() == config
    (run_dir / "model.pt").unlink()  # as trainer.keep_weights=best leaves a run
    proc = run_cli(str(run_dir), cache=cache_dir, module="flowers_sweep.evaluate")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "model.pt not found" in line and "kept only its best_val weights" in line
    assert "use --weights best_val" in line


def test_ema_weights_of_a_run_without_ema_name_the_key_not_keep_weights(trained):
    with pytest.raises(FlowersSweepError, match="had no EMA") as caught:
        restore(trained, "ema")
    assert "trainer.ema_decay=null" in str(caught.value) and "--weights last" in str(caught.value)


def test_a_run_saves_torchvision_resnet18_weights_last_and_best(trained):
    res = result(trained)
    theirs = torchvision.models.resnet18(num_classes=res["num_classes"])
    for name in ("model.pt", "model_best_val.pt"):
        state = torch.load(trained / name, weights_only=True)
        assert list(state) == list(theirs.state_dict()), name
        theirs.load_state_dict(state, strict=True)
    assert 1 <= res["best_epoch"] <= 3 and 0 <= res["test_acc_best_val"] <= 1


@pytest.mark.parametrize(
    ("weights", "key"), [("last", "test_acc"), ("best_val", "test_acc_best_val")]
)
def test_evaluate_reproduces_the_runs_test_accuracy(trained, capsys, cache_dir, weights, key):
    """The real command for the last weights (and for a refusal, above); evaluate's main
    in this process for the best ones."""
    args = [str(trained), "--weights", weights]
    if weights == "last":
        proc = run_cli(*args, cache=cache_dir, module="flowers_sweep.evaluate")
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = proc.stdout
    else:
        assert evaluate.main(args) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
    top1 = float(out.split("top1: ")[1].split()[0])
    assert top1 == pytest.approx(result(trained)[key], abs=5e-5)
    suffix = "" if weights == "last" else "-test-best_val"
    table = pd.read_csv(trained / f"per_class{suffix}.csv")
    assert len(table) == result(trained)["num_classes"]
    assert table["support"].sum() == result(trained)["test_size"]
    assert (trained / f"confusion_matrix{suffix}.png").is_file()


def test_predict_answers_good_images_and_names_bad_ones(trained, tmp_path, cache_dir):
    good = tmp_path / "flower.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    missing = tmp_path / "missing.jpg"
    proc = run_cli(str(trained), str(good), str(bad), str(missing), "--json", cache=cache_dir,
                   module="flowers_sweep.predict")  # fmt: skip
    assert proc.returncode == 1
    (answer,) = json.loads(proc.stdout)
    assert answer["image"] == str(good) and len(answer["top5"]) == 5
    probs = [g["probability"] for g in answer["top5"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    names = open_source(make_cfg().dataset).class_names()
    assert read_data(trained)["class_names"] == names  # what predict named them by
    assert all(g["name"] == names[g["class"]] for g in answer["top5"])
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2 and str(bad) in errors[0] and str(missing) in errors[1]


def test_a_torchvision_imagenet_state_dict_starts_a_10_class_run(trained):
    log = (trained / "flowers_sweep.log").read_text()
    assert "loaded 120 of 122 tensors" in log
    assert "classifier replaced: the file has 1000 classes, this run 10" in log


def test_named_torchvision_weights_offline_say_where_the_file_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        resolve_weights_file("IMAGENET1K_V1", "resnet18")
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="no such file"):
        resolve_weights_file(str(tmp_path / "nope.pt"), "resnet18")


def test_flowers102_classes_are_the_official_names():
    names = open_source(make_cfg("dataset=flowers102").dataset).class_names()
    assert len(names) == 102 and names[0] == "pink primrose"
    if (SHARED_FIXTURES / "class_names.txt").is_file():  # the facts ../shared carries
        assert names == (SHARED_FIXTURES / "class_names.txt").read_text().splitlines()
    logits = torch.eye(102)[torch.arange(102)]
    table = per_class_table(logits, torch.arange(102), names)
    assert table["name"].tolist() == names and (table["accuracy"] == 1).all()


def test_a_run_folder_as_model_weights_names_the_file_to_give(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"is a folder; give a weights file, e\.g\. .*model\.pt"):
        resolve_weights_file(str(tmp_path), "resnet18")


def test_imagenet_weights_start_a_model_whose_classifier_is_a_convolution(tmp_path, caplog):
    """SqueezeNet classifies with a 1x1 convolution: its 1,000-class head is replaced,
    the rest of the file loads (the file here is torchvision's layout, not ImageNet's
    values: nothing is downloaded)."""
    file = tmp_path / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_1(num_classes=1000).state_dict(), file)
    model = build_model(make_cfg("model=torchvision", "model.name=squeezenet1_1").model, 10, 64)
    with caplog.at_level("INFO", logger="flowers_sweep.models.weights"):
        load_weights(model, str(file), "squeezenet1_1")
    assert "classifier replaced: the file has 1000 classes, this run 10" in caplog.text
    theirs = torch.load(file, weights_only=True)
    assert torch.equal(model.state_dict()["features.0.weight"], theirs["features.0.weight"])
