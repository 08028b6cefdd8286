"""Real servers in the tests: start a process on a loopback port, wait until it is ready, stop it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_until(check, timeout_s: float, what: str, alive=lambda: True, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what}: the process exited\n{tail}")
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what}: not done after {timeout_s} s\n{tail}")


@contextmanager
def running(command: list[str], port: int, ready_path: str, timeout_s: float, log: Path, **popen) -> Iterator[str]:
    """Start ``command`` (output to ``log``), wait until ``ready_path`` answers 200, yield its URL, stop it."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **popen)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200, timeout_s,
            f"{Path(command[0]).name} {ready_path}", alive=lambda: process.poll() is None, log=log,
        )
        yield url
    finally:
        stop(process)
