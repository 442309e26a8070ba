"""Services a test starts on localhost and stops by pid (optuna-dashboard, say)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .cli import HANG_GUARD_S


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=HANG_GUARD_S) as reply:
        return json.loads(reply.read())


@contextmanager
def running(command: Sequence[str]) -> Iterator[subprocess.Popen]:
    """Start `command` in a session of its own, and stop it (and any child) by its pid
    after, whatever happened."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: any child it started, too
        try:
            proc.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def wait_until_answers(proc: subprocess.Popen, ready_url: str) -> None:
    """Wait until `ready_url` answers; fail with the service's output if it exits first."""
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {proc.stdout.read()[-2000:]}")
        try:
            urllib.request.urlopen(ready_url, timeout=HANG_GUARD_S).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def serving(command: Sequence[str], ready_url: str) -> Iterator[subprocess.Popen]:
    """Start `command`, wait until `ready_url` answers, and stop it by its pid after."""
    with running(command) as proc:
        wait_until_answers(proc, ready_url)
        yield proc
