"""Where and how fast to compute: device, number format and memory layout.

The same code runs on a laptop CPU and a GPU; these choices are made once per run from
`trainer.device`, `trainer.precision` and `trainer.channels_last`, with `auto` picking
what is fastest on the hardware at hand.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from flowers_sweep.errors import FlowersSweepError


def available_cpus() -> int:
    """CPUs this process may run on: SLURM's and taskset's allocation, not the node's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device` without stalling the host.

    A copy from ordinary (pageable) memory to a GPU waits for the whole stream to drain;
    from page-locked memory it is queued like a kernel. The caching host allocator keeps
    the pinned buffer alive until the copy has run.
    """
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def image_by_image(choice: bool | None, batch: torch.Tensor) -> bool:
    """Whether a per-image step (a policy's op, an erased box) takes the images that drew
    it one by one, in place (`choice` None: on the CPU, where a gathered copy of them
    costs more than the step: benchmarks/augment_policy.py), or gathered into one kernel
    (an accelerator, where a kernel's launch is the cost). `choice`: the caller's say."""
    return batch.device.type == "cpu" if choice is None else choice


def resolve_device(name: str) -> torch.device:
    """`trainer.device` as a torch.device; `cuda` gets the current GPU's index.

    Raises FlowersSweepError for a CUDA device where CUDA is not available, or an index
    past the GPUs this process sees.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise FlowersSweepError(f"trainer.device={name!r} but CUDA is not available here")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise FlowersSweepError(
            f"trainer.device={name!r} but this process sees {count} GPU(s): cuda:0 to "
            f"cuda:{count - 1} (CUDA_VISIBLE_DEVICES renumbers them from 0)"
        )
    index = torch.cuda.current_device() if device.index is None else device.index
    return torch.device("cuda", index)


def native_bf16(device: torch.device) -> bool:
    """bf16 with hardware support: CUDA (Ampere and later) or a CPU with AVX512-BF16/AMX.

    Without it bf16 is emulated, slower than fp32, so `auto` keeps fp32 there. PyTorch's
    `is_bf16_supported()` counts emulation (a V100 or T4 says yes) and asks the current
    GPU, so the run's own GPU is asked for its compute capability instead.
    """
    if device.type == "cuda":
        if torch.version.hip:  # ROCm: capability numbers mean something else there
            with torch.cuda.device(device):
                return torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(probe and probe())
    return False


def resolve_precision(setting: str | int, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `trainer.precision` (`32`, `bf16`, `fp16` or `auto`), or
    None for plain fp32.

    `auto`: bf16 where the hardware has it natively (`native_bf16`); on a CUDA GPU
    without it (a V100, T4 or P100: the usual Colab and older cluster cards) fp16, which
    their tensor cores run natively and which trains with a gradient scaler
    (`grad_scaler`); fp32 elsewhere (a CPU without native bf16, MPS).
    """
    setting = str(setting)
    if setting == "auto":
        if native_bf16(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setting)


PRECISION_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "32"}


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 autocast (torch.amp.GradScaler), None otherwise.

    fp16 has 5 exponent bits: gradients below about 6e-8 flush to zero, so the loss is
    multiplied by a scale (2**16 to start) before the backward pass and the gradients
    divided by it before the step; a step whose gradients overflowed is skipped and the
    scale halved, and after 2000 good steps it doubles (PyTorch's defaults; Micikevicius
    et al. 2018, "Mixed Precision Training"). bf16 has fp32's exponent range and needs
    none.
    """
    if dtype is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> Callable[[], AbstractContextManager]:
    """A factory of contexts for the forward pass: bf16 or fp16 autocast, or nothing."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def resolve_channels_last(setting: bool | str, convolutional: Callable[[], bool]) -> bool:
    """NHWC helps convolutions (oneDNN, cuDNN tensor cores); `auto`: on where they hold
    most of the model's weights (asked only then: `convolutional()` builds the model)."""
    if setting == "auto":
        return convolutional()
    return bool(setting)
