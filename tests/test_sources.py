"""The one way in for every dataset (data/sources.py): built-in sources, a user's own
`_target_`, the class count before any image is read, normalisation, data.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from flowers_sweep.config.validate import validate
from flowers_sweep.data import build_loaders, class_count, load_splits, normalisation
from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.data.synthetic import SyntheticFlowers
from flowers_sweep.errors import ConfigError
from flowers_sweep.record.legacy import upgrade_settings, upgrade_tree
from flowers_sweep.record.runrecord import read_data

from .helpers.cli import TINY, make_cfg, result, run_cli

# A user's dataset module, as docs/data.md shows it: a function returning Splits, and
# one returning torchvision-style datasets that the framework decodes and caches.
USER_MODULE = '''
import torch
from PIL import Image

from flowers_sweep.data.splits import Split, Splits

CALLS = []


def squares(n: int, size: int, label: int) -> torch.Tensor:
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, label % 3] = 60 + 90 * label  # one bright channel a class
    return images


def stripes(image_size: int, per_class: int = 8) -> Splits:
    """Two classes of flat colour, already in the in-memory form."""
    def split(n):
        images = torch.cat([squares(n, image_size, k) for k in range(2)])
        return Split(images, torch.arange(2).repeat_interleave(n))
    return Splits(split(per_class), split(4), split(4), class_names=["red", "green"])


class Pictures(torch.utils.data.Dataset):
    classes = ["dark", "light"]

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        CALLS.append(i)
        label = i % 2
        return Image.new("L", (20 + i, 12), 40 + 160 * label), label


def fixed(size: int = 32) -> Splits:
    return stripes(size)  # whatever image_size the config says


def number() -> int:
    return 3


def empty(image_size: int) -> Splits:
    full = stripes(image_size)
    return Splits(full.train, Split(full.val.images[:0], full.val.labels[:0]), full.test,
                  class_names=full.class_names)


def mislabelled(image_size: int) -> Splits:
    full = stripes(image_size)
    full.train.labels[0] = 7
    return full


def pictures(per_split: int = 6) -> dict:
    return {"train": Pictures(per_split), "val": Pictures(4), "test": Pictures(4)}
'''


@pytest.fixture
def user_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = tmp_path / "project"
    (project / "myconf" / "dataset").mkdir(parents=True)
    (project / "my_data.py").write_text(USER_MODULE)
    (project / "myconf" / "dataset" / "stripes.yaml").write_text(
        "_target_: my_data.stripes\nper_class: 8\nnum_classes: 2\nimage_size: 32\n"
        "cache_dir: null\nmean: auto\nstd: auto\n"
    )
    monkeypatch.syspath_prepend(str(project))
    return project


def node(**values: object) -> OmegaConf:
    base = {"cache_dir": None, "mean": [0.5] * 3, "std": [0.25] * 3}
    return OmegaConf.create({**base, **values})


def test_a_users_dataset_trains_from_their_config_folder(user_project: Path, cache_dir: Path):
    run_dir = user_project / "run"
    proc = run_cli(
        "-cd", "myconf", "dataset=stripes", *TINY[:2], "model=baseline_cnn",
        f"hydra.run.dir={run_dir}", cache=cache_dir, cwd=user_project,
        env={"PYTHONPATH": str(user_project)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert result(run_dir)["train_size"] == 16
    data = read_data(run_dir)
    assert data["class_names"] == ["red", "green"]
    # mean=auto: the training split's own statistics, recorded for evaluate and predict
    assert data["mean"] == pytest.approx([(60 / 255) / 2, (150 / 255) / 2, 0.0], abs=1e-6)
    assert data["std"][2] == 1.0  # a constant channel is centred, not divided by 0


def test_torchvision_style_datasets_are_decoded_once_into_the_cache(user_project, tmp_path):
    import my_data

    cfg = node(_target_="my_data.pictures", image_size=16, cache_dir=str(tmp_path / "c"))
    splits = load_splits(cfg)
    assert splits.counts() == {"train": 6, "val": 4, "test": 4}
    assert splits.class_names == ["dark", "light"]
    assert splits.train.images.shape == (6, 3, 16, 16)
    assert splits.train.images.dtype == torch.uint8
    assert splits.train.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert splits.train.image_sizes[3].tolist() == [23, 12]  # its own width and height
    assert int(splits.train.images[1, 0, 8, 8]) == 200  # greyscale brought to RGB
    first = len(my_data.CALLS)
    again = load_splits(cfg)
    assert len(my_data.CALLS) == first  # served from the cache: no image read
    assert torch.equal(again.train.images, splits.train.images)
    load_splits(node(_target_="my_data.pictures", image_size=16, per_split=8,
                     cache_dir=str(tmp_path / "c")))  # fmt: skip
    assert len(my_data.CALLS) > first  # other data, another entry


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"_target_": "my_data.stripes", "image_size": 32},
         r"^dataset.num_classes is missing: my_data.stripes is a function"),
        ({"_target_": "flowers_sweep.data.synthetic.SyntheticFlowers", "num_classes": 3,
          "image_size": 32, "colours": 2}, r"^dataset.colours=2 is invalid: .*takes no argument"),
        ({"_target_": "flowers_sweep.data.synthetic.SyntheticFlowers", "num_classes": 500,
          "image_size": 32}, r"^dataset.num_classes=500 is out of range: .* 2 to 192 classes"),
        ({"_target_": "my_data.nothing", "image_size": 32},
         r"^dataset._target_='my_data.nothing' is invalid: it does not import"),
    ],
)  # fmt: skip
def test_a_bad_dataset_node_is_refused_in_one_line_before_any_image_is_read(
    user_project, values, message
):
    cfg = make_cfg("model=baseline_cnn")
    cfg.dataset = node(**values)
    with pytest.raises(ConfigError, match=message) as err:
        validate(cfg)
    assert "\n" not in str(err.value)


def test_what_a_target_returns_is_checked_against_the_node(user_project):
    with pytest.raises(ConfigError, match=r"^dataset.image_size=24 is invalid: the train "):
        load_splits(node(_target_="my_data.fixed", image_size=24, num_classes=2))
    with pytest.raises(ConfigError, match=r"^dataset.num_classes=3 is invalid: the data has 2"):
        load_splits(node(_target_="my_data.stripes", image_size=32, num_classes=3))
    with pytest.raises(ConfigError, match=r"returned int, not Splits or three"):
        load_splits(node(_target_="my_data.number", image_size=32, num_classes=2))


def test_the_class_count_comes_from_the_source_without_reading_images():
    cfg = make_cfg()
    assert class_count(cfg.dataset) == 10
    cfg.dataset.num_classes = 7
    assert class_count(cfg.dataset) == 7
    assert SyntheticFlowers(num_classes=7).class_names()[0] == "crimson-round-5"


def test_channel_stats_are_the_population_statistics_of_the_pixels():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (5, 3, 7, 9), dtype=np.uint8))
    mean, std = Split(images, torch.zeros(5, dtype=torch.int64)).channel_stats(chunk=2)
    pixels = images.numpy().transpose(1, 0, 2, 3).reshape(3, -1) / 255
    assert mean == pytest.approx(pixels.mean(1), abs=1e-6)  # rounded to 6 places
    assert std == pytest.approx(pixels.std(1), abs=1e-6)
    cfg = node(mean="auto", std=[0.2] * 3)
    assert normalisation(cfg, Split(images, torch.zeros(5)))[1] == [0.2] * 3
    with pytest.raises(ConfigError, match=r"dataset.mean=auto is invalid with"):
        normalisation(cfg, None)


def test_loaders_carry_the_normalisation_they_apply(cache_dir):
    cfg = make_cfg(*TINY, "dataset.mean=auto", "dataset.std=auto")
    loaders = build_loaders(cfg, torch.device("cpu"))
    splits = load_splits(cfg.dataset)
    assert (loaders.mean, loaders.std) == splits.train.channel_stats()
    x, _ = next(loaders.train())
    assert abs(float(x.mean())) < 0.5  # roughly centred, as the statistics promise


def test_a_config_from_before_dataset_targets_reads_in_todays_keys():
    old = {"dataset.name": "synthetic", "dataset.num_classes": 10, "augment.vflip_p": 0.5}
    new = upgrade_settings(old)
    assert new["dataset._target_"] == "flowers_sweep.data.synthetic.SyntheticFlowers"
    assert "dataset.name" not in new
    assert new["augment.hflip_p"] == 0.0 and new["augment.resized_crop_scale"] is None
    tree = upgrade_tree({"dataset": {"name": "flowers102", "root": "data"}})
    assert tree["dataset"]["_target_"] == "flowers_sweep.data.flowers102.Flowers102"
    today = OmegaConf.to_container(make_cfg().augment)
    assert upgrade_settings({f"augment.{k}": v for k, v in today.items()}) == {
        f"augment.{k}": v for k, v in today.items()
    }


def test_reference_pipeline_is_refused_for_other_datasets():
    cfg = make_cfg("+dataset.pipeline=reference")
    with pytest.raises(
        ConfigError, match=r"^dataset.pipeline='reference' is invalid: .*flowers102"
    ):
        validate(cfg)


def test_the_splits_a_function_returns_are_used_as_they_are(user_project):
    cfg = node(_target_="my_data.stripes", image_size=32, num_classes=2, per_class=3)
    splits = load_splits(cfg)
    assert isinstance(splits, Splits) and splits.counts()["train"] == 6
    assert splits.train.image_sizes is None  # at their own size: nothing squashed
    assert json.dumps(splits.class_names) == '["red", "green"]'


def test_an_empty_split_or_a_label_out_of_range_is_refused_before_training(user_project):
    with pytest.raises(ConfigError, match=r"^dataset: the val split is empty \(my_data.empty"):
        load_splits(node(_target_="my_data.empty", image_size=32, num_classes=2))
    with pytest.raises(ConfigError, match=r"a train label is 7; labels are class indices 0..1$"):
        load_splits(node(_target_="my_data.mislabelled", image_size=32, num_classes=2))


def test_a_resume_on_other_classes_is_refused_and_leaves_data_json(tmp_path):
    from flowers_sweep.errors import RunFolderMismatchError
    from flowers_sweep.record.runrecord import write_data
    from flowers_sweep.trainer.runstate import same_classes

    write_data(tmp_path, ["daisy", "rose"], [0.5] * 3, [0.2] * 3)
    before = (tmp_path / "data.json").read_bytes()
    same_classes(tmp_path, ["daisy", "rose"])
    for names, says in ((["daisy", "rose", "aster"], "new: aster"),
                        (["rose", "daisy"], "the same names in another order")):  # fmt: skip
        with pytest.raises(RunFolderMismatchError, match=f"started on 2 classes.*{says}"):
            same_classes(tmp_path, names)
    assert (tmp_path / "data.json").read_bytes() == before


def test_a_run_without_data_json_that_normalised_with_auto_says_so(tmp_path):
    from flowers_sweep.errors import FlowersSweepError
    from flowers_sweep.evaluate import data_of

    cfg = make_cfg("dataset.mean=auto", "dataset.std=auto")
    with pytest.raises(FlowersSweepError, match=r"data.json is missing or unreadable, and"):
        data_of(cfg, tmp_path)
    (tmp_path / "data.json").write_text('{"class_names": ["a"]}')  # no normalisation
    with pytest.raises(FlowersSweepError, match=r"the numbers it used are unknown"):
        data_of(cfg, tmp_path)
    names, mean, _ = data_of(make_cfg(), tmp_path)  # numbers in the config: they stand
    assert len(names) == 10 and mean == [0.4914, 0.4822, 0.4465]


def test_grayscale_must_be_true_or_false():
    from flowers_sweep.data.augment import check_augment

    with pytest.raises(ConfigError, match=r"^augment.grayscale='maybe' is invalid: true or false"):
        check_augment({"grayscale": "maybe"})


def test_an_hwc_tensor_or_an_unusable_cache_folder_is_one_line(user_project, tmp_path):
    import my_data

    my_data.hwc = lambda: {r: [(torch.zeros(8, 8, 3, dtype=torch.uint8), 0)] * 2
                           for r in ("train", "val", "test")}  # fmt: skip
    cfg = node(_target_="my_data.hwc", image_size=16, num_classes=2, cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"item 0 of list: an image tensor of shape \(8, 8, 3\)"):
        load_splits(cfg)
    (tmp_path / "file").write_text("")
    cfg = make_cfg(*TINY[:2], f"dataset.cache_dir={tmp_path / 'file' / 'cache'}")
    with pytest.raises(ConfigError, match=r"^dataset.cache_dir='.*' is unusable \("):
        load_splits(cfg.dataset)
