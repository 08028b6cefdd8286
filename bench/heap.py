"""The heap between requests: /segment with freed memory kept warm against handed back after each request.

    .venv/bin/python bench/heap.py [--requests 8] [--checkpoint PATH] [--image assets/IDRiD_05.jpg] [--torch]

Two ``redseg-serve`` on loopback, the same code and model, differing only in ``REDSEG_WARM_MEMORY_BYTES``:
(w) the default (``service.memory``: up to 1 GiB of freed memory kept for the next request) and
(c) 0 (all of it handed back to the OS after each request, as the server did before, so every request
faults its pages in afresh). One JSON request to each in turn, a pause after each; the first round is
a warm-up. Medians of wall time, (w)/(c), and each server's RSS at rest (read in the pause). With
``--torch``, the same pair again on the torch engine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench.service import checked, start_server  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from model.cli_help import plain_help  # noqa: E402
from tests.processes import free_port, stop  # noqa: E402

PAUSE_S = 2.5
"""Between requests: longer than the trim loop's interval (1 s), so the cold server has trimmed."""


def variants(torch_too: bool) -> dict[str, dict[str, str]]:
    pairs = {"(w) kept warm": {}, "(c) handed back": {"REDSEG_WARM_MEMORY_BYTES": "0"}}
    engines = {"": {"REDSEG_BACKEND": "auto"}} | ({", torch": {"REDSEG_BACKEND": "torch"}} if torch_too else {})
    return {name + label: env | engine for label, engine in engines.items() for name, env in pairs.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=plain_help(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--image", default=str(ROOT / "assets" / "IDRiD_05.jpg"))
    parser.add_argument("--requests", type=int, default=8, help="rounds, the first a warm-up")
    parser.add_argument("--torch", action="store_true", help="also the pair on the torch engine")
    parser.add_argument("--pause-s", type=float, default=PAUSE_S, help="after each request (over 1 s)")
    args = parser.parse_args(argv)
    data = Path(args.image).read_bytes()
    servers, clients = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for name, env in variants(args.torch).items():
                port = free_port()
                env = {"REDSEG_CHECKPOINT": args.checkpoint, "REDSEG_REQUEST_TIMEOUT_S": "86400"} | env
                servers[name] = start_server(port, env, Path(scratch) / f"server-{len(servers)}.log")
                clients[name] = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
            times, rest = measure(servers, clients, data, args.requests, args.pause_s)
        finally:
            for server in servers.values():
                stop(server)
    report(times, rest)


def measure(servers: dict, clients: dict, data: bytes, rounds: int, pause_s: float) -> tuple[dict, dict]:
    times: dict[str, list[float]] = {name: [] for name in servers}
    rest: dict[str, list[float]] = {name: [] for name in servers}
    for round_ in range(rounds):
        seen = {}
        for name, client in clients.items():
            started = time.perf_counter()
            response = client.post("/segment", files={"image": ("image.jpg", data, "image/jpeg")})
            seen[name] = checked((time.perf_counter() - started, response.status_code))
            time.sleep(pause_s)
            if round_:
                times[name].append(seen[name])
                rest[name].append(psutil.Process(servers[name].pid).memory_info().rss / 2**20)
        label = "warm-up" if round_ == 0 else f"round {round_}"
        print(f"  {label}: " + ", ".join(f"{name.split()[0]} {seconds:.3f} s" for name, seconds in seen.items()))
    return times, rest


def report(times: dict[str, list[float]], rest: dict[str, list[float]]) -> None:
    print()
    print(f"| server (median of {len(next(iter(times.values())))}, alternating) | /segment s | RSS at rest MB |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(rest[name]):.0f}-{max(rest[name]):.0f} |")
    names = list(times)
    for warm, cold in zip(names[::2], names[1::2]):
        ratio = statistics.median(times[warm]) / statistics.median(times[cold])
        print(f"{warm} / {cold}: {ratio:.3f}")


if __name__ == "__main__":
    main()
