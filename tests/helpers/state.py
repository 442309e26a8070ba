"""Process-wide state a test could leave behind for the tests after it: environment
variables, the working directory, the umask, signal handlers, sys.path, torch's global
settings, and the global random number generators."""

from __future__ import annotations

import os
import random
import signal
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Variables a library sets for itself the first time it is used, whichever test that is:
# pytest (at each phase of a test), torch's inductor (importing torchvision sets its cache
# folder), our Optuna plugin (imported when Hydra first looks for plugins), threadpoolctl
# (imported by scipy.io, which reads Flowers102's .mat files, when installed: the
# mlflow extra brings it).
SET_BY_LIBRARIES = {
    "PYTEST_CURRENT_TEST",
    "TORCHINDUCTOR_CACHE_DIR",
    "SQLALCHEMY_SILENCE_UBER_WARNING",
    "KMP_DUPLICATE_LIB_OK",
}


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SET_BY_LIBRARIES}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def torch_settings() -> dict[str, Any]:
    """torch's global switches, by the name of the call that sets each."""
    return {
        "torch.set_num_threads": torch.get_num_threads(),
        "torch.set_default_dtype": torch.get_default_dtype(),
        "torch.use_deterministic_algorithms": (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        "torch.utils.deterministic.fill_uninitialized_memory": (
            torch.utils.deterministic.fill_uninitialized_memory
        ),
        "torch.backends.cudnn.benchmark": torch.backends.cudnn.benchmark,
        "torch.backends.cudnn.deterministic": torch.backends.cudnn.deterministic,
        "torch.set_float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch.set_grad_enabled": torch.is_grad_enabled(),
    }


def _set_torch(name: str, value: Any) -> None:
    if name == "torch.set_num_threads":
        torch.set_num_threads(value)
    elif name == "torch.set_default_dtype":
        torch.set_default_dtype(value)
    elif name == "torch.use_deterministic_algorithms":
        torch.use_deterministic_algorithms(value[0], warn_only=value[1])
    elif name == "torch.utils.deterministic.fill_uninitialized_memory":
        torch.utils.deterministic.fill_uninitialized_memory = value
    elif name == "torch.backends.cudnn.benchmark":
        torch.backends.cudnn.benchmark = value
    elif name == "torch.backends.cudnn.deterministic":
        torch.backends.cudnn.deterministic = value
    elif name == "torch.set_float32_matmul_precision":
        torch.set_float32_matmul_precision(value)
    elif name == "torch.set_grad_enabled":
        torch.set_grad_enabled(value)


@dataclass
class ProcessState:
    """A snapshot: `changes()` against the process now, `restore()` to put it back."""

    environ: dict[str, str]
    cwd: str
    umask: int
    handlers: dict[int, Any]
    path: list[str]
    torch: dict[str, Any]
    rngs: tuple[Any, ...]

    @classmethod
    def capture(cls) -> ProcessState:
        return cls(
            environ=_environ(),
            cwd=os.getcwd(),
            umask=_umask(),
            handlers={s: signal.getsignal(s) for s in SIGNALS},
            path=list(sys.path),
            torch=torch_settings(),
            rngs=(torch.get_rng_state(), np.random.get_state(), random.getstate()),
        )

    def changes(self) -> list[str]:
        """What differs now, one line each (the random generators are not listed: a
        test may seed them, and restore() puts them back)."""
        now = ProcessState.capture()
        out = [
            f"os.environ[{k!r}]: {self.environ.get(k)!r} -> {now.environ.get(k)!r}"
            for k in sorted(self.environ.keys() | now.environ.keys())
            if self.environ.get(k) != now.environ.get(k)
        ]
        if now.cwd != self.cwd:
            out.append(f"working directory: {self.cwd} -> {now.cwd}")
        if now.umask != self.umask:
            out.append(f"umask: {self.umask:o} -> {now.umask:o}")
        signals = {f"signal {signal.Signals(k).name} handler": v for k, v in self.handlers.items()}
        now_signals = {
            f"signal {signal.Signals(k).name} handler": v for k, v in now.handlers.items()
        }
        out += changed(signals, now_signals)
        if now.path != self.path:
            out.append(f"sys.path: {self.path} -> {now.path}")
        out += changed(self.torch, now.torch)
        return out

    def restore(self) -> None:
        for key in set(_environ()) - set(self.environ):
            del os.environ[key]
        for key, value in self.environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        os.chdir(self.cwd)
        os.umask(self.umask)
        for s, handler in self.handlers.items():
            if handler is not None and signal.getsignal(s) != handler:
                signal.signal(s, handler)
        sys.path[:] = self.path
        now = torch_settings()
        for name, value in self.torch.items():
            if now[name] != value:
                _set_torch(name, value)
        torch.set_rng_state(self.rngs[0])
        np.random.set_state(self.rngs[1])
        random.setstate(self.rngs[2])


def changed(before: dict, after: dict) -> list[str]:
    """ "key: old -> new" for each key of `before` whose value differs in `after`."""
    return [f"{k}: {v!r} -> {after[k]!r}" for k, v in before.items() if after[k] != v]
