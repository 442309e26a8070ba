"""Reading what the trackers wrote, offline: W&B's run files and MLflow's store; and a
guard that records any connection a process tries to a non-local address."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The .wandb file: a 7-byte header (":W&B", a 2-byte magic, a version byte), then
# LevelDB's log format: 32 KiB blocks of records, each a 7-byte header (CRC-32C, a
# 2-byte little-endian length, a type: 1 full, 2 first, 3 middle, 4 last) and its
# bytes; a record that would not fit a block's last 6 bytes or fewer starts the next.
# Each whole record is a wandb_internal_pb2.Record. (leveldb doc/log_format.md)
FIRST_BYTES_S = 2.0  # how long the proxy waits for a client's request line (its text only)
WANDB_HEADER = 7
BLOCK = 32 * 1024


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a W&B run file (run-<id>.wandb), in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, at = [], b"", WANDB_HEADER
    while at + 7 <= len(data):
        room = BLOCK - at % BLOCK
        if room < 7:  # the block's trailer: padding
            at += room
            continue
        length, kind = struct.unpack_from("<HB", data, at + 4)
        chunk = data[at + 7 : at + 7 + length]
        at += 7 + length
        if kind == 0 and length == 0:  # zero padding
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run(run_dir: Path) -> dict[str, Any]:
    """What the W&B offline runs under run_dir/wandb hold, all attempts together:
    their ids, config, history rows (each a dict), summary and tags."""
    out: dict[str, Any] = {"ids": [], "config": {}, "history": [], "summary": {}, "tags": []}
    for path in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out["ids"].append(record.run.run_id)
                out["group"] = record.run.run_group
                out["tags"] = list(record.run.tags)
                for item in record.run.config.update:
                    out["config"][item.key] = json.loads(item.value_json)
            elif kind == "config":
                for item in record.config.update:
                    out["config"][item.key] = json.loads(item.value_json)
            elif kind == "history":
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                       for i in record.history.item}  # fmt: skip
                out["history"].append(row)
            elif kind == "summary":
                for item in record.summary.update:
                    key = item.key or "/".join(item.nested_key)
                    out["summary"][key] = json.loads(item.value_json)
    return out


@contextmanager
def recording_proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A local listener to point HTTP(S)_PROXY at: every connection a process makes
    through the proxy settings (W&B's Go core honours them) is recorded, none answered.
    Yields the proxy URL and the list of first bytes each connection sent ("(connected)"
    when it sent none within FIRST_BYTES_S: the connection is what a test fails on)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            seen.append(b"(connected)")  # the outcome: a connection was made at all
            with conn:
                conn.settimeout(FIRST_BYTES_S)  # only what it asked for, for the message
                with contextlib.suppress(OSError):
                    seen[-1] = conn.recv(200)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join()
        server.close()


# Put on a child's PYTHONPATH as sitecustomize.py: every connect() the Python process
# makes to an address that is not this machine is written to $NETWORK_LOG and refused.
NO_NETWORK_SITE = """
import ipaddress, os, sys

def _local(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost",)

def _hook(event, args):
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and not _local(address[0]):
            with open(os.environ["NETWORK_LOG"], "a") as log:
                log.write(repr(address) + "\\n")
            raise OSError("network refused by the test: " + repr(address))

sys.addaudithook(_hook)
"""
