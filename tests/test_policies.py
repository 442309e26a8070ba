"""TrivialAugmentWide, RandAugment and random erasing in the batched pipeline, against
torchvision's own ops, draws and distributions.

Error bounds. The colour ops repeat torchvision's uint8 tensor arithmetic (float32, the
same operations in the same order, truncated or rounded back to a level as it does), so
they must agree exactly, level for level. The geometric ops go through the one warp,
which samples nearest like torchvision's policies: each output pixel reads one input
pixel, the same one unless its source lies on a pixel edge, where float32 rounding of
the two grids may break the tie the other way (at 30 degrees sin = 1/2 puts whole rows
of sources on edges). So a geometric op may differ on at most 1% of the pixels, and
everywhere else exactly.
"""

import math

import pytest
import scipy.stats
import torch
from omegaconf import OmegaConf
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms.autoaugment import _apply_op

from flowers_sweep.data import colour, erasing, policies
from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.geometry import Draws, compose, describe_augment

from .helpers.cli import ROOT

IDENTITY = ([0.0] * 3, [1.0] * 3)  # normalisation that leaves 0-255 as it is
MEAN, STD = [0.5] * 3, [0.25] * 3
POLICIES = ("trivial_augment_wide", "rand_augment")
TORCHVISION = {"trivial_augment_wide": T.TrivialAugmentWide, "rand_augment": T.RandAugment}
H, W = 37, 45  # odd and unequal: centres and axes cannot be swapped unnoticed
P_MIN = 0.001  # chi-square tests at a fixed seed: fail only below this p-value


def noise(n=1, h=H, w=W, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=gen)


def ramps(h=H, w=W):
    """(1, 3, h, w) uint8 smooth ramps with few levels used: a photo-like histogram."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([xs * 5, ys * 6, (xs + ys) * 3]).clamp(0, 255).to(torch.uint8)[None]


def seeded(seed=1):
    return torch.Generator().manual_seed(seed)


def one_op(policy, name, bin_, negative, n=1, h=H, w=W):
    """Draws that give n images torchvision's op `name` at `bin_` (each image its own
    bin and sign when they are (n,) tensors), and the magnitudes."""
    table, signed = policies.op_table(policy, h, w)
    i = policies.CODE[name]
    bins = torch.as_tensor(bin_).expand(n).reshape(n, 1)
    negative = torch.as_tensor(negative).expand(n).reshape(n, 1)
    values = table[i, bins] * torch.where(negative & signed[i], -1.0, 1.0)
    pol = policies.PolicyDraws(torch.full((n, 1), i), bins, negative, values)
    draws = Draws(torch.zeros(n, dtype=torch.bool), torch.zeros(n), None, None, pol)
    return draws, values[:, 0].tolist() if n > 1 else float(values[0, 0])


def reference(img, name, value):
    """torchvision's policy op on one uint8 image, as its policies call it."""
    return _apply_op(img, name, value, InterpolationMode.NEAREST, None).float()


# --- the op table and each op against torchvision ---------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_the_op_table_is_torchvisions_augmentation_space(policy):
    mine, signed = policies.op_table(policy, H, W)
    op = TORCHVISION[policy]()
    if policy == "rand_augment":
        space = op._augmentation_space(31, (H, W))
    else:
        space = op._augmentation_space(31)
    assert tuple(space) == policies.OPS
    for i, (name, (magnitudes, is_signed)) in enumerate(space.items()):
        assert bool(signed[i]) == is_signed, name
        expected = magnitudes.double() if magnitudes.ndim else torch.zeros(31, dtype=torch.float64)
        assert torch.equal(mine[i], expected), name


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", policies.OPS)
def test_each_op_is_torchvisions_at_the_same_magnitude(policy, name):
    """Bins 1, 9, 17 and 30, both signs, on noise, ramps and clipped noise (many pixels at
    its top level, which equalize leaves out of its step): one batch of 24."""
    aug = BatchAugment(*IDENTITY, policy=policy)
    bins = torch.tensor([1, 9, 17, 30]).repeat_interleave(6)
    negative = torch.tensor([False, True]).repeat_interleave(3).repeat(4)
    batch = torch.cat([noise(), ramps(), noise(seed=4).clamp(60, 200)]).repeat(8, 1, 1, 1)
    draws, values = one_op(policy, name, bins, negative, len(batch))
    out = aug.apply_draws(batch, draws)
    for img, ours, value in zip(batch, out, values, strict=True):
        same = (ours == reference(img, name, value)).float().mean().item()
        assert same >= (0.99 if name in policies.GEOMETRIC else 1.0), (value, same)


def test_autocontrast_and_solarize_are_torchvisions_at_every_level():
    """Every channel min and max pair (the levels between them, so that both are present),
    every solarize threshold: torchvision's uint8 results, level for level."""
    levels = torch.arange(256)
    low, high = torch.triu_indices(256, 256, offset=1)
    channels = levels.clamp(low[:, None], high[:, None]).to(torch.uint8).view(-1, 1, 1, 256)
    ours = colour.autocontrast(channels.float())
    assert torch.equal(ours, TF.autocontrast(channels).float())
    image = levels.to(torch.uint8).expand(256, 1, 1, 256)
    ours = colour.solarize(image.float(), levels.float().view(-1, 1, 1, 1))
    for t in range(256):
        assert torch.equal(ours[t], TF.solarize(image[t], t).float()), t


def test_a_batch_takes_each_images_own_op_and_magnitude():
    """Every op of the table, each image its own, in one call: image by image torchvision's."""
    policy = "trivial_augment_wide"
    n = len(policies.OPS) * 2
    batch = torch.cat([noise(n // 2, seed=3), ramps().expand(n // 2, -1, -1, -1)])
    gen = seeded(5)
    ops = torch.arange(n) % len(policies.OPS)
    bins = torch.randint(0, 31, (n, 1), generator=gen)
    negative = torch.rand(n, 1, generator=gen) < 0.5
    table, signed = policies.op_table(policy, H, W)
    values = torch.where(signed[ops][:, None] & negative, -1, 1) * table[ops[:, None], bins]
    pol = policies.PolicyDraws(ops[:, None], bins, negative, values)
    draws = Draws(torch.zeros(n, dtype=torch.bool), torch.zeros(n), None, None, pol)
    out = BatchAugment(*IDENTITY, policy=policy).apply_draws(batch, draws)
    for i in range(n):
        ref = reference(batch[i], policies.OPS[ops[i]], float(values[i, 0]))
        assert (out[i] == ref).float().mean() >= 0.99, policies.OPS[ops[i]]


def test_randaugment_steps_apply_in_turn_and_geometry_comes_first():
    """Two steps: [Rotate, Equalize] is torchvision's chain exactly; [Brightness, Rotate]
    too (a pixel-wise op keeps black black, so the order does not matter); [Equalize,
    Rotate] is applied as [Rotate, Equalize] (the documented difference)."""
    policy, img = "rand_augment", ramps()
    aug = BatchAugment(*IDENTITY, policy=policy)
    table, _ = policies.op_table(policy, H, W)

    def run(first, second):
        ops = torch.tensor([[policies.CODE[first], policies.CODE[second]]])
        values = table[ops, 9]
        pol = policies.PolicyDraws(ops, torch.full((1, 2), 9), torch.zeros(1, 2, dtype=bool),
                                   values)  # fmt: skip
        draws = Draws(torch.zeros(1, dtype=torch.bool), torch.zeros(1), None, None, pol)
        return aug.apply_draws(img, draws)[0], values[0].tolist()

    def chain(first, second, values):
        out = _apply_op(img[0], first, values[0], InterpolationMode.NEAREST, None)
        return reference(out, second, values[1])

    for first, second in (("Rotate", "Equalize"), ("Brightness", "Rotate")):
        ours, values = run(first, second)
        assert (ours == chain(first, second, values)).float().mean() >= 0.99
    ours, values = run("Equalize", "Rotate")
    assert (ours == chain("Rotate", "Equalize", values[::-1])).float().mean() >= 0.99
    assert (ours != chain("Equalize", "Rotate", values)).any()


def test_the_policy_comes_after_the_crop_and_the_flip():
    """RandomCrop(padding=3) and hflip, then the op, as torchvision's reference chains
    them: integer moves and nearest sampling, so the same pixels."""
    n, p = 6, 3
    batch = noise(n, seed=7)
    aug = BatchAugment(*IDENTITY, crop_padding=p, hflip_p=1.0, policy="trivial_augment_wide")
    moves = aug.draw(n, H, W, seeded(2))
    for name in ("TranslateX", "ShearY", "Rotate"):
        draws, values = one_op("trivial_augment_wide", name, 12, True, n)
        draws = draws._replace(crops=moves.crops, hflips=moves.hflips)
        out = aug.apply_draws(batch, draws)
        for x, y, box, value in zip(batch, out, moves.crops.tolist(), values, strict=True):
            ref = reference(TF.hflip(TF.crop(TF.pad(x, [p]), *box)), name, value)
            assert (y == ref).float().mean() >= 0.99, name


def test_after_a_resized_crop_the_policy_sees_whole_levels_and_fills_black():
    """The bilinear crop's result is rounded to levels (the uint8 image torchvision's
    policy receives), and a translation brings in black although the crop repeats edges."""
    batch = noise(4, seed=8)
    aug = BatchAugment(*IDENTITY, resized_crop_scale=(0.08, 1.0), policy="trivial_augment_wide")
    moves = aug.draw(4, H, W, seeded(6))
    draws, _ = one_op("trivial_augment_wide", "TranslateX", 30, False, 4)  # +32 px
    out = aug.apply_draws(batch, draws._replace(crops=moves.crops))
    assert torch.equal(out, out.round())
    assert (out[..., :32] == 0).all() and (out[..., 32:] > 0).float().mean() > 0.9
    ref = aug.apply_draws(batch, one_op("trivial_augment_wide", "Identity", 0, False, 4)[0]
                          ._replace(crops=moves.crops))  # fmt: skip
    crop_only = BatchAugment(*IDENTITY, resized_crop_scale=(0.08, 1.0))
    assert torch.equal(ref, crop_only.apply_draws(batch, moves._replace(policy=None)).round())
    diff = (out[..., 32:] - ref[..., :-32]).abs()  # float grids: a .5 may round either way
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.99


# --- the draws ------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_op_bin_and_sign_frequencies_are_torchvisions(policy):
    """Uniform over the 14 ops, (TrivialAugmentWide) over the 31 bins, and over the two
    signs, as torchvision's randint draws imply: chi-square at a fixed seed."""
    n = 20000
    d = policies.draw_policy(n, H, W, policy, 2, 9, seeded(11))
    assert d.ops.shape == (n, 1 if policy == "trivial_augment_wide" else 2)
    signs = d.ops * 2 + d.negative.long()  # op and sign independent
    for values, k in ((d.ops, len(policies.OPS)), (d.negative.long(), 2), (signs, 28)):
        counts = torch.bincount(values.flatten(), minlength=k).numpy()
        assert scipy.stats.chisquare(counts).pvalue > P_MIN
    if policy == "trivial_augment_wide":
        counts = torch.bincount(d.bins.flatten(), minlength=31).numpy()
        assert scipy.stats.chisquare(counts).pvalue > P_MIN
        pairs = torch.bincount((d.ops * 31 + d.bins).flatten(), minlength=14 * 31).numpy()
        assert scipy.stats.chisquare(pairs).pvalue > P_MIN  # op and bin independent
    else:
        assert (d.bins == 9).all()
    table, signed = policies.op_table(policy, H, W)
    magnitude = table[d.ops, d.bins]
    assert torch.equal(d.values.abs(), magnitude)
    assert torch.equal(d.values < 0, signed[d.ops] & d.negative & (magnitude > 0))


def test_defaults_draw_nothing_and_keep_todays_numbers():
    """policy null and erase_p 0, whether absent or written: the same output bit for bit
    and the generator where it was, on every shipped preset."""
    batch = noise(4, 24, 24)
    sizes = torch.tensor([[667, 500], [500, 667], [640, 480], [320, 320]])
    for path in sorted((ROOT / "conf" / "augment").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        if cfg.get("policy") is not None or cfg.get("erase_p", 0) > 0:
            continue
        keys = ("vflip_p", "rotation", "grayscale", "hflip_p", "crop_padding",
                "resized_crop_scale", "resized_crop_ratio")  # fmt: skip
        old = {k: cfg[k] for k in keys}
        for sz in (None, sizes):
            gen, ref_gen = seeded(), seeded()
            new = BatchAugment.from_config(cfg, MEAN, STD).train_view(batch, gen, sz)
            ref = BatchAugment.from_config(OmegaConf.create(old), MEAN, STD)
            assert torch.equal(new, ref.train_view(batch, ref_gen, sz)), path.name
            assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=ref_gen))
    assert BatchAugment(MEAN, STD, hflip_p=0.5).draw(4, 24, 24, seeded()).policy is None


@pytest.mark.parametrize("policy", POLICIES)
def test_the_policy_draws_after_the_moves_and_is_seeded(policy):
    batch = noise(6, 24, 24)
    plain = BatchAugment(MEAN, STD, hflip_p=0.5, crop_padding=2).draw(6, 24, 24, seeded())
    aug = BatchAugment(MEAN, STD, hflip_p=0.5, crop_padding=2, policy=policy)
    drawn = aug.draw(6, 24, 24, seeded())
    assert torch.equal(drawn.crops, plain.crops) and torch.equal(drawn.hflips, plain.hflips)
    a = aug.train_view(batch, seeded(3))
    assert torch.equal(a, aug.train_view(batch, seeded(3)))
    assert not torch.equal(a, aug.train_view(batch, seeded(4)))


# --- random erasing ---------------------------------------------------------------------------


def test_erasing_box_sizes_are_torchvisions_from_the_same_draws():
    """One image: the erase-or-not draw and the candidate sizes come from the stream as
    torchvision's RandomErasing draws them, so the box's size is its get_params' size.
    The position is drawn after all ten candidates (torchvision draws it after the first
    that fits): the same uniform distribution, checked below, not the same numbers."""
    h, w, compared = 30, 26, 0
    for seed in range(200):
        box = erasing.draw_erasing(1, h, w, 0.5, seeded(seed))[0].tolist()
        gen = seeded(seed)
        if not torch.rand(1, generator=gen) < 0.5:
            assert box == [0, 0, 0, 0]
            continue
        with torch.random.fork_rng():
            torch.set_rng_state(gen.get_state())
            _, _, bh, bw, _ = T.RandomErasing.get_params(
                torch.zeros(3, h, w), erasing.SCALE, erasing.RATIO, [0.0]
            )
        if (bh, bw) == (h, w):  # no candidate fit: torchvision leaves the image alone
            assert box == [0, 0, 0, 0]
        else:
            assert box[2:] == [bh, bw]
            compared += 1
    assert compared > 80


def test_erasing_boxes_lie_inside_at_uniform_positions():
    h, w, n = 30, 26, 40000
    boxes = erasing.draw_erasing(n, h, w, 1.0, seeded(9))
    top, left, bh, bw = boxes.T
    assert ((top >= 0) & (left >= 0) & (top + bh <= h) & (left + bw <= w)).all()
    assert (bh < h).all() and (bw < w).all()
    area = bh * bw / (h * w)  # rounding h and w moves the area by up to ~1/sqrt(area)
    assert area[bh > 0].min() >= 0.02 * 0.5 and area.max() <= 0.33 * 1.3
    common = torch.mode(bh).values  # the positions of one box height: uniform in 0..h-bh
    counts = torch.bincount(top[bh == common], minlength=h - int(common) + 1).numpy()
    assert len(counts) == h - int(common) + 1
    assert scipy.stats.chisquare(counts).pvalue > P_MIN
    assert (boxes == 0).all(1).float().mean() < 0.05  # few images find no box that fits
    assert erasing.draw_erasing(1000, h, w, 0.0, seeded()).eq(0).all()


def test_erasing_acts_after_normalisation_and_draws_last():
    """Erased pixels are 0 after normalisation (the mean colour); the rest is the
    pipeline's output without erasing, from the same seed."""
    batch = noise(8, 24, 24)
    kwargs = {"hflip_p": 0.5, "policy": "trivial_augment_wide"}
    plain = BatchAugment(MEAN, STD, **kwargs).train_view(batch, seeded())
    gen = seeded()
    erased = BatchAugment(MEAN, STD, erase_p=1.0, **kwargs).train_view(batch, gen)
    ref_gen = seeded()
    BatchAugment(MEAN, STD, **kwargs).train_view(batch, ref_gen)
    boxes = erasing.draw_erasing(8, 24, 24, 1.0, ref_gen)
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        inside = torch.zeros(24, 24, dtype=torch.bool)
        inside[top : top + h, left : left + w] = True
        assert (erased[i][:, inside] == 0).all() and inside.sum() == h * w
        assert torch.equal(erased[i][:, ~inside], plain[i][:, ~inside])
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=ref_gen))
    only = BatchAugment(MEAN, STD, erase_p=1.0).train_view(batch, seeded())
    kept = BatchAugment(MEAN, STD).eval_view(batch)
    assert ((only == kept).float().mean() < 1) and (only == 0).any()


# --- the CPU's image-by-image path and the accelerator's gathered one ------------------------


def direct_frame(maps, h, w):
    """(N, H, W) bool: `policies.frame`'s test evaluated pixel by pixel, in float64."""
    xs = (torch.arange(w, dtype=torch.float64) + 0.5 - w / 2).view(1, 1, w)
    ys = (torch.arange(h, dtype=torch.float64) + 0.5 - h / 2).view(1, h, 1)
    m = maps[..., None, None]
    sx = m[:, 0, 0] * xs + (m[:, 0, 1] * ys + m[:, 0, 2])
    sy = m[:, 1, 0] * xs + (m[:, 1, 1] * ys + m[:, 1, 2])
    return (sx >= -w / 2) & (sx < w / 2) & (sy >= -h / 2) & (sy < h / 2)


@pytest.mark.parametrize("policy", POLICIES)
def test_row_spans_are_the_frame_test_solved_for_columns(policy):
    """Every op and bin (rotations past 90 degrees: maps that reverse a row; translations:
    rows parallel to the frame's sides), odd and even sizes: the spans' pixels are the
    frame test's, in float64 exactly, and `frame`'s float32 evaluation but for ties."""
    gen = seeded(9)
    cols_diff = total = 0
    for h, w in ((H, W), (32, 32), (W, H)):
        for bin_ in range(0, 31, 3):
            draws = policies.draw_policy(128, h, w, policy, 2, bin_, gen)
            steps = policies.policy_maps(draws, h, w)
            maps = compose(*steps)
            spans = policies.row_spans(maps, h, w)
            inside = (torch.arange(w) >= spans[..., :1]) & (torch.arange(w) < spans[..., 1:])
            assert torch.equal(inside, direct_frame(maps, h, w)), (h, w, bin_)
            approx = policies.frame(steps, h, w, torch.device("cpu"))[:, 0]
            cols_diff += (inside != approx).sum().item()
            total += inside.numel()
    assert cols_diff <= total * 1e-4


@pytest.mark.parametrize("policy", POLICIES)
def test_image_by_image_is_the_gathered_path_exactly(policy):
    """The CPU's way (each image in place, magnitudes as numbers) and the accelerator's
    (an op's images gathered, magnitudes as tensors), run here on the CPU: the same
    levels, the same black frame, the same erased boxes."""
    n, h, w = 96, 24, 28
    batch = torch.cat([noise(n // 2, h, w, seed=3), ramps(h, w).expand(n // 2, -1, -1, -1)])
    batch = batch.float()
    draws = policies.draw_policy(n, h, w, policy, 2, 12, seeded(4))
    steps = policies.policy_maps(draws, h, w)
    outs = []
    for per_image in (True, False):
        x = policies.black_outside(batch.clone(), draws, steps, None, per_image=per_image)
        for k in range(draws.ops.shape[1]):
            x = policies.colour_step(x, draws, k, per_image=per_image)
        outs.append(x)
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], batch)
    boxes = erasing.draw_erasing(n, h, w, 0.7, seeded(5))
    by_box = erasing.erase(batch.clone(), boxes, per_box=True)
    assert torch.equal(by_box, erasing.erase(batch.clone(), boxes, per_box=False))
    assert (by_box == 0).sum() > (batch == 0).sum()


# --- presets and description ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("trivial_augment", "trivial_augment (random resized crop, area 0.08-1, ratio 0.75-1.33, "
         "horizontal flip p=0.5, TrivialAugmentWide)"),
        ("rand_augment", "rand_augment (random resized crop, area 0.08-1, ratio 0.75-1.33, "
         "horizontal flip p=0.5, RandAugment 2 ops, magnitude 9/30)"),
    ],
)  # fmt: skip
def test_the_presets_are_the_reference_recipe_and_say_so(name, text):
    cfg = OmegaConf.load(ROOT / "conf" / "augment" / f"{name}.yaml")
    imagenet = OmegaConf.load(ROOT / "conf" / "augment" / "imagenet_style.yaml")
    assert set(cfg) == set(imagenet)  # every key present
    assert describe_augment(cfg) == text
    changed = {k for k in cfg if cfg[k] != imagenet[k]}
    assert changed == {"policy"}  # on top of the reference's crop and flip; erasing off
    aug = BatchAugment.from_config(cfg, MEAN, STD)
    assert aug.train_view(noise(2, 24, 24), seeded()).shape == (2, 3, 24, 24)
    erased = OmegaConf.merge(cfg, {"erase_p": 0.1})
    moves = text.split(" (", 1)[1][:-1]  # no longer the preset: its moves alone
    assert describe_augment(erased) == moves + ", random erasing p=0.1"


def test_magnitude_and_image_size_reach_randaugments_translation():
    """RandAugment translates by up to 150/331 of the image's own width and height."""
    table, _ = policies.op_table("rand_augment", 40, 80)
    assert math.isclose(
        float(table[policies.CODE["TranslateX"], 30]), 150 / 331 * 80, rel_tol=1e-6
    )
    assert math.isclose(
        float(table[policies.CODE["TranslateY"], 30]), 150 / 331 * 40, rel_tol=1e-6
    )
    with pytest.raises(ValueError, match="policy='auto'"):
        policies.op_table("auto", 8, 8)


# --- on a GPU (skipped without one; bash benchmarks/gpu_check.sh runs `gpu` tests) -------


@pytest.mark.gpu
@pytest.mark.parametrize("policy", POLICIES)
def test_the_policy_on_cuda_matches_the_cpu_without_a_host_sync(policy):
    cuda = torch.device("cuda")
    aug = BatchAugment(MEAN, STD, hflip_p=0.5, resized_crop_scale=(0.08, 1), policy=policy,
                       erase_p=0.5, memory_format=torch.channels_last)  # fmt: skip
    batch = noise(16, 32, 32)
    cpu = aug.train_view(batch, seeded())
    on_gpu = batch.to(cuda)
    aug.train_view(on_gpu, seeded())  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        dev = aug.train_view(on_gpu, seeded())
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert dev.is_cuda and dev.is_contiguous(memory_format=torch.channels_last)
    # a level's rounding may go the other way after the bilinear warp's float error
    assert ((dev.cpu() - cpu).abs() <= 1e-3).float().mean() > 0.98
