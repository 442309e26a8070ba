"""What users type: typo'd keys, bad values, wrapped checkpoints, offline downloads;
each gets a run that works or one line that says why (Ctrl-C: test_resilience;
relative paths under hydra.job.chdir: test_flowers102, whose end-to-end run has them)."""

import logging
import urllib.error

import pytest
import torch
from omegaconf import OmegaConf

import flowers_sweep as fs
from flowers_sweep.config.overrides import validate_added_keys
from flowers_sweep.config.validate import validate
from flowers_sweep.data import flowers102
from flowers_sweep.errors import ConfigError, DatasetNotFoundError
from flowers_sweep.models import build_model
from flowers_sweep.models.weights import load_weights
from flowers_sweep.record.runfolder import claim
from flowers_sweep.record.runrecord import RUN_CONFIG_FILE

from .helpers.cli import TINY, make_cfg, result, run_app, run_cli

GROUPS = {"model", "dataset", "trainer", "optimizer", "experiment", "case"}


def test_an_added_key_that_no_config_defines_is_refused_with_the_closest_one():
    cfg = make_cfg("+trainer.epoch=3")
    with pytest.raises(ConfigError, match=r"\+trainer\.epoch .*did you mean trainer\.epochs\?"):
        validate_added_keys(cfg, ["+trainer.epoch=3"], GROUPS)


def test_plus_on_an_existing_key_is_accepted_and_plus_plus_typos_are_not():
    base = make_cfg()
    cfg = make_cfg("+model.layers=[1,1,1,1]")
    validate_added_keys(cfg, ["+model.layers=[1,1,1,1]"], GROUPS, base)
    cfg = make_cfg("++trainer.epoch=3")
    with pytest.raises(ConfigError, match=r"\+trainer\.epoch .*did you mean trainer\.epochs\?"):
        validate_added_keys(cfg, ["++trainer.epoch=3"], GROUPS, base)
    cfg = make_cfg("+augment.vflip=0.1")
    with pytest.raises(ConfigError, match=r"did you mean augment\.vflip_p\?"):
        validate_added_keys(cfg, ["+augment.vflip=0.1"], GROUPS, base)
    # under a _target_ node the constructor's signature judges the key, in validate()
    for key, says in (("optimizer.lrr", "lr"), ("dataset.noize", "noise")):
        cfg = make_cfg(f"+{key}=0.1")
        validate_added_keys(cfg, [f"+{key}=0.1"], GROUPS, base)
        with pytest.raises(ConfigError, match=rf"{key}=0\.1 .*did you mean {says}\?"):
            validate(cfg)


def test_added_groups_and_a_targets_own_keys_are_accepted():
    cfg = make_cfg("experiment=report")
    validate_added_keys(cfg, ["+experiment=report", "seed=3"], GROUPS)
    cfg = make_cfg("+logger.flush_secs=5")
    validate_added_keys(cfg, ["+logger.flush_secs=5"], GROUPS)


@pytest.mark.parametrize("plus", ["+", "++"])
def test_a_typo_added_with_plus_is_refused_by_the_jobs_check_before_any_folder(tmp_path, plus):
    """The check a CLI job makes before it trains (app.validate_job: the job's config
    composed again without its added keys, hydra_job.composed_without_added, tells an
    existing key from a typo), through fs.train, which builds the job as the CLI does.
    `+` and `++` each: the composition must leave out both forms (without it, `++` is
    let through)."""
    cfg = fs.compose([*TINY, f"{plus}trainer.epoch=3"])
    with pytest.raises(ConfigError, match=r"\+trainer\.epoch .*did you mean trainer\.epochs\?"):
        fs.train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_bad_value_leaves_the_folder_unclaimed_for_the_corrected_run(tmp_path):
    """claim's `ready` is where a job's values are checked (app.validate_job): what it
    raises leaves no record, so the corrected settings may claim the folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    bad = make_cfg(*TINY, "model=baseline_cnn", "optimizer.lr=-1")
    settings = OmegaConf.to_container(bad, resolve=True)  # as app.attempt claims it
    with pytest.raises(ConfigError, match=r"optimizer\.lr=-1"):
        claim(run_dir, settings, ready=lambda: validate(bad))
    assert not (run_dir / RUN_CONFIG_FILE).exists()
    fixed = make_cfg(*TINY, "model=baseline_cnn", "optimizer.lr=0.01")
    claim(run_dir, OmegaConf.to_container(fixed, resolve=True), ready=lambda: validate(fixed))
    assert (run_dir / RUN_CONFIG_FILE).is_file()


@pytest.mark.e2e
def test_a_typo_added_with_plus_exits_2_in_one_line_before_training(
    tmp_path, monkeypatch, capsys, cache_dir
):
    """`++` (caught only against the job's own config composed without it); the refused
    run claims no folder (no run_config.json to refuse others by), so the corrected
    command runs there: here through fs.train, which claims the folder as the CLI's
    job does (a bad value is refused at the same point, claim's `ready`: above).
    app.main in this process (helpers/cli.run_app): the real command's exit status and
    line for a value refused before training is test_cli's bad-value test."""
    run_dir = tmp_path / "run"
    code = run_app([*TINY, "model=baseline_cnn", "++trainer.epoch=3",
                    f"hydra.run.dir={run_dir}"], monkeypatch)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    (line,) = [x for x in err.splitlines() if x.startswith("flowers_sweep: error")]
    assert "trainer.epoch " in line and "trainer.epochs" in line
    assert "Traceback" not in err
    assert not (run_dir / "metrics.csv").exists()
    assert result(run_dir)["error_type"] == "ConfigError"
    assert not (run_dir / RUN_CONFIG_FILE).exists()
    fixed = fs.train(fs.compose([*TINY, "model=baseline_cnn"]), run_dir)
    assert fixed["status"] == "completed" == result(run_dir)["status"]


def small_model():
    cfg = make_cfg("model=baseline_cnn")
    torch.manual_seed(0)
    return cfg, build_model(cfg.model, 10, 32)


@pytest.mark.parametrize(
    ("wrap", "said"),
    [
        (lambda s: {f"module.{k}": v for k, v in s.items()}, "'module.' key prefix"),
        (lambda s: {f"_orig_mod.{k}": v for k, v in s.items()}, "'_orig_mod.' key prefix"),
        (lambda s: {f"module._orig_mod.{k}": v for k, v in s.items()}, "'_orig_mod.'"),
        (lambda s: {"state_dict": s, "epoch": 3}, "nested 'state_dict' entry"),
        (
            lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()}},
            "'model.' key prefix (a wrapper's attribute name)",
        ),
        (lambda s: {"model": s, "optimizer": {}}, "nested 'model' entry"),
    ],
)
def test_wrapped_state_dicts_load_and_say_what_was_unwrapped(tmp_path, caplog, wrap, said):
    _, source = small_model()
    path = tmp_path / "w.pt"
    torch.save(wrap(source.state_dict()), path)
    _, target = small_model()
    for p in target.parameters():
        torch.nn.init.zeros_(p)
    with caplog.at_level(logging.INFO):
        load_weights(target, str(path), "baseline_cnn")
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name
    assert said in caplog.text


def test_the_baseline_cnns_classifier_is_replaced_when_the_class_count_differs(tmp_path, caplog):
    cfg, source = small_model()  # 10 classes
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = build_model(cfg.model, 5, 32)
    with caplog.at_level(logging.INFO):
        load_weights(target, str(tmp_path / "w.pt"), "baseline_cnn")
    assert "classifier replaced: the file has 10 classes, this run 5" in caplog.text


@pytest.mark.parametrize("layers", [[1, 1, 1, 1], [3, 4, 6, 3]], ids=["shallower", "deeper"])
def test_weights_of_another_depth_are_refused(tmp_path, layers):
    cfg = make_cfg("model=resnet18")
    other = build_model(make_cfg("model=resnet18", f"model.layers={layers}").model, 10, 32)
    torch.save(other.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="is for another architecture"):
        load_weights(build_model(cfg.model, 10, 32), str(tmp_path / "w.pt"), "resnet18")


def test_another_architecture_is_still_named_as_such(tmp_path):
    _, target = small_model()
    resnet = build_model(make_cfg("model=resnet18").model, 10, 32)
    path = tmp_path / "r.pt"
    torch.save({f"module.{k}": v for k, v in resnet.state_dict().items()}, path)
    with pytest.raises(ConfigError, match="is for another architecture"):
        load_weights(target, str(path), "baseline_cnn")


@pytest.mark.e2e
def test_joblib_runs_the_reference_pipeline_with_dataloader_workers(tmp_path, cache_dir):
    from .helpers.fake_flowers102 import write_tree

    write_tree(tmp_path / "tree", per_split=6, size=40)
    sweep = tmp_path / "sweep"
    # one job: joblib runs it in a loky worker all the same (where DataLoader workers
    # need the fork start method: loaders.worker_start_method); a second adds nothing
    proc = run_cli(
        "-m", "dataset=flowers102", f"dataset.root={tmp_path / 'tree'}",
        "dataset.verify_checksums=false", "dataset.pipeline=reference", "dataset.image_size=16",
        "model=baseline_cnn", "trainer.epochs=1", "trainer.num_workers=2", "seed=0",
        "hydra/launcher=joblib", "aggregate=false", f"hydra.sweep.dir={sweep}", cache=cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result(sweep / "0")["status"] == "completed"


def test_an_offline_download_says_where_to_get_the_files_and_leaves_no_folder(
    tmp_path, monkeypatch
):
    from torchvision.datasets import utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(utils.urllib.request, "urlopen", offline)
    root = tmp_path / "new" / "data"  # folders the download would have made
    cfg = make_cfg("dataset=flowers102", f"dataset.root={root}", "dataset.download=true")
    with pytest.raises(DatasetNotFoundError) as info:
        flowers102.open_split(cfg.dataset, "train")
    message = str(info.value)
    assert "\n" not in message and "URLError" in message
    assert "https://" in message and str(root / "flowers-102") in message
    assert list(tmp_path.iterdir()) == []


def test_validate_added_keys_ignores_hydra_and_plain_overrides():
    cfg = make_cfg("seed=1")
    validate_added_keys(cfg, ["seed=1", "hydra.job.chdir=true"], GROUPS)
