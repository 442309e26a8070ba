"""How far the cached pipeline's training images are from the report's, pixel for pixel.

For each image one flip and one angle are drawn; the report's per-image transform is
applied with exactly those (vertical flip, nearest-neighbour rotation of the full-size
photo with black fill, ToTensor, Normalize, antialiased Resize), and ours with the same
ones (the cache's decode and squash, then the flip and rotation conjugated by the squash,
on the CPU and on the device path). Both are compared on the 0-255 scale.

Then each torchvision move (`MOVES`) on the same images cached as squares: our draw for
the batch, torchvision's functional op with exactly the drawn parameters on each float
square (hflip; pad then crop; resized_crop, bilinear, antialiased), against our one warp
of the batch. A line `move: NAME mean_abs_diff: X` each, goal <= 1.0 (flips and integer
crops land on pixel centres: ~0; a resized crop differs only at the box's edges, where
torchvision repeats the box's last pixel and the warp reads the pixel past it).

    python benchmarks/augment_fidelity.py --root DIR [--limit N] [--device cuda]
    python benchmarks/augment_fidelity.py --root /tmp/fake --generate 40   # no dataset

The last line is `mean_abs_diff: X` (over all images, the report's flip and rotation);
the worst image's is printed too.
"""

from __future__ import annotations

import argparse
import atexit
import random
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from flowers_sweep.data.augment import BatchAugment, apply_geometry
from flowers_sweep.data.images import load_resized, load_rgb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.helpers

SIZE = 224


def report_view(path: Path, flip: bool, angle: float, size: int) -> torch.Tensor:
    """The report's training transform with a fixed flip and angle, back on 0-255.

    Normalize is affine per channel and Resize linear, so undoing the normalisation after
    the resize gives the same pixels as resizing the unnormalised image.
    """
    img = load_rgb(path)
    if flip:
        img = TF.vflip(img)
    img = TF.rotate(img, angle, interpolation=InterpolationMode.NEAREST, fill=0)
    return TF.resize(TF.to_tensor(img), [size, size], antialias=True) * 255


def our_views(
    path: Path, flip: bool, angle: float, size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached pipeline's view, through the CPU path and the device path."""
    pixels, (w, h) = load_resized(path, size)
    batch = torch.from_numpy(pixels.copy())[None]
    flips, angles, sizes = torch.tensor([flip]), torch.tensor([angle]), torch.tensor([[w, h]])
    cpu = apply_geometry(batch, flips, angles, sizes)[0]
    dev = apply_geometry(batch.to(device), flips, angles, sizes)[0].cpu()
    return cpu, dev


def measure(files: list[Path], rotation: float, seed: int, size: int, device: torch.device):
    """Per image: (mean |ours - report| on the CPU path, the same on the device path)."""
    rng = random.Random(seed)
    diffs = []
    for path in files:
        flip, angle = rng.random() < 0.5, rng.uniform(-rotation, rotation)
        ref = report_view(path, flip, angle, size)
        cpu, dev = our_views(path, flip, angle, size, device)
        diffs.append(((cpu - ref).abs().mean().item(), (dev - ref).abs().mean().item()))
    return diffs


# name: BatchAugment keywords. Every image flipped; torchvision's CIFAR and ImageNet crops.
MOVES = {
    "hflip": {"hflip_p": 1.0},
    "pad_crop": {"crop_padding": 4},
    "resized_crop": {"resized_crop_scale": (0.08, 1.0)},
}


def torchvision_move(image: torch.Tensor, name: str, box: list[int], padding: int):
    """torchvision's functional op on one float (3, S, S) image with the given box
    (top, left, height, width; on the image padded by `padding` for the padded crop)."""
    if name == "hflip":
        return TF.hflip(image)
    if name == "pad_crop":
        return TF.crop(TF.pad(image, [padding], fill=0), *box)
    size = list(image.shape[-2:])
    return TF.resized_crop(image, *box, size, InterpolationMode.BILINEAR, antialias=True)


def measure_moves(files: list[Path], seed: int, size: int) -> dict[str, list[float]]:
    """Per move, per image: mean |ours - torchvision's| on 0-255, with our draws."""
    loaded = [load_resized(path, size) for path in files]
    batch = torch.stack([torch.from_numpy(pixels.copy()) for pixels, _ in loaded])
    sizes = torch.tensor([wh for _, wh in loaded])
    diffs = {}
    for name, kwargs in MOVES.items():
        aug = BatchAugment([0.0] * 3, [1.0] * 3, **kwargs)
        ours, draws = aug.warp_view(batch, torch.Generator().manual_seed(seed), sizes)
        boxes = draws.crops.tolist() if draws.crops is not None else [None] * len(files)
        padding = kwargs.get("crop_padding", 0)
        ref = torch.stack(
            [
                torchvision_move(img.float(), name, box, padding)
                for img, box in zip(batch, boxes, strict=True)
            ]
        )
        if draws.hflips is not None:  # with p = 1 every image; kept general
            ref = torch.where(draws.hflips.view(-1, 1, 1, 1), ref, batch.float())
        diffs[name] = (ours - ref).abs().mean((1, 2, 3)).tolist()
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        help="folder holding flowers-102/ (default: generated JPEGs, --generate 40)",
    )
    parser.add_argument("--limit", type=int, default=200, help="images to compare (default 200)")
    parser.add_argument("--rotation", type=float, default=10.0, help="degrees, as the report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="device path to check (cpu, cuda)")
    parser.add_argument("--generate", type=int, default=0, metavar="N",
                        help="first write N generated 667x500 JPEGs a split")  # fmt: skip
    args = parser.parse_args()
    if args.root is None:  # no dataset given: generated JPEGs, removed at the end
        args.root = Path(tempfile.mkdtemp(prefix="flowers_sweep_bench-"))
        atexit.register(shutil.rmtree, args.root, ignore_errors=True)
        args.generate = args.generate or 40
        print(f"no --root: {args.generate} generated JPEGs a split in {args.root}")
    if args.generate:
        from tests.helpers.fake_flowers102 import write_tree  # test data, not shipped

        write_tree(args.root, per_split=args.generate, size=SIZE, upscale_to=(667, 500))
    files = sorted((args.root / "flowers-102" / "jpg").glob("*.jpg"))[: args.limit]
    if not files:
        raise SystemExit(f"no JPEGs under {args.root / 'flowers-102' / 'jpg'}")
    diffs = measure(files, args.rotation, args.seed, SIZE, torch.device(args.device))
    cpu = [d[0] for d in diffs]
    dev = [d[1] for d in diffs]
    print(f"images: {len(files)}, output {SIZE} px, rotation +-{args.rotation:g} degrees")
    print(f"device path ({args.device}): mean {sum(dev) / len(dev):.3f}, worst {max(dev):.3f}")
    print(f"CPU path: worst image {max(cpu):.3f} ({files[cpu.index(max(cpu))].name})")
    for name, per_image in measure_moves(files, args.seed, SIZE).items():
        print(f"move: {name} mean_abs_diff: {sum(per_image) / len(per_image):.3f}")
    print(f"mean_abs_diff: {sum(cpu) / len(cpu):.3f}")


if __name__ == "__main__":
    main()
