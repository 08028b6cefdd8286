"""Service benchmark: a whole HTTP request against the network's old cost, and throughput under 4 clients.

    .venv/bin/python bench/service.py [--checkpoint PATH] [--image assets/IDRiD_05.jpg]
                                      [--requests 3] [--concurrent-requests 8] [--clients 4]

In one run on the same image and model, interleaved, medians compared:
(a) the reference: one whole-image forward of the network at the working scale in fp32 with the
    NCHW layout (what the network alone cost before the fast CPU path), in this process, which runs as a
    script with the servers' heap settings (``service.memory.configure_heap``);
(j) HTTP POST /segment with the default outputs and the JSON answer, on ``redseg-serve`` started
    here on loopback (the fast path, as served);
(z) the same request with ``Accept: application/zip``;
(p) for reference, the in-process pipeline the service runs (decode, inference, masks, render, summary);
(t) with an OpenVINO ``--backend`` (the default where openvino is installed), the same JSON request to a
    second server on the torch path (``REDSEG_BACKEND=torch``: today's /segment), interleaved with the rest.
Targets: (j)/(a) <= 1.0 and (z)/(a) <= 1.0: the whole request costs no more than the network used to;
with OpenVINO int8, (j)/(t) <= 0.5 and (j)/(a) <= 0.20. Each server's peak RSS is reported.
Then throughput with ``--clients`` concurrent clients against the single client of (j)
(target: >= 0.95 of the single-client rate, no request lost).

Uses the bundled checkpoint when present, else ``--checkpoint``; with neither, a freshly saved
full-width random-init network (timing only: its masks mean nothing, and the output says so).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import service  # noqa: E402,F401  (first: OpenCV limits, as in the server)

import httpx  # noqa: E402
import torch  # noqa: E402

from model import RedSeg, RedSegConfig, predict_probabilities, save_checkpoint  # noqa: E402
from bench.inference import default_backend, nchw_reference, working_scale_input  # noqa: E402
from model.backends import backend_of, load_for_inference  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from model.cli_help import plain_help  # noqa: E402
from model.screening.masks import lesion_masks  # noqa: E402
from model.screening.summary import summarise  # noqa: E402
from service.decoding import decode_upload  # noqa: E402
from service.memory import configure_heap  # noqa: E402
from service.rendering import DEFAULT_OUTPUTS, parse_outputs, render  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.processes import free_port, stop, wait_until  # noqa: E402


def pick_checkpoint(args: argparse.Namespace, scratch: Path) -> tuple[Path, str]:
    if args.checkpoint:
        return Path(args.checkpoint), f"checkpoint {args.checkpoint}"
    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT, f"bundled checkpoint {DEFAULT_CHECKPOINT.name}"
    torch.manual_seed(0)
    path = save_checkpoint(scratch / "random-init.safetensors", RedSeg(RedSegConfig(width=args.width)),
                           name="random-init-timing-only", version="untrained")
    return path, f"RANDOM-INIT network, width {args.width} (no trained checkpoint found; timing only)"


def start_server(port: int, env: dict[str, str], log: Path, timeout_s: float = 600) -> subprocess.Popen:
    """``redseg-serve`` on ``port`` with these REDSEG_* settings (no token), its output in ``log``; ready."""
    command = [sys.executable, "-m", "service.serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=os.environ | {"REDSEG_API_TOKEN": ""} | env,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, timeout_s, "redseg-serve /readyz",
                   alive=lambda: process.poll() is None, log=log)
    except (RuntimeError, TimeoutError):
        stop(process)
        raise
    return process


def peak_rss_mb(process: subprocess.Popen) -> float:
    """A server's peak resident set (VmHWM), in MB; 0 where /proc cannot tell."""
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def checked(result: tuple[float, int]) -> float:
    seconds, status = result
    assert status == 200, status
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=plain_help(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint to serve (default: the bundled one, else random init)")
    parser.add_argument("--image", default=str(ROOT / "assets" / "IDRiD_05.jpg"))
    parser.add_argument("--requests", type=int, default=3, help="interleaved rounds of (a), (j), (z), (p)")
    parser.add_argument("--concurrent-requests", type=int, default=8, help="requests sent by the clients in (b)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--outputs", default=DEFAULT_OUTPUTS)
    parser.add_argument("--width", type=float, default=1.0, help="width of the random-init network")
    parser.add_argument("--backend", choices=("torch", "openvino-int8", "openvino-bf16"), default=default_backend(),
                        help="the served engine (default: $REDSEG_BACKEND, else openvino-int8 where openvino is "
                        "installed); an OpenVINO one is compared with a second server on torch, (t)")
    args = parser.parse_args(argv)

    data = Path(args.image).read_bytes()
    outputs = parse_outputs(args.outputs)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint_path, label = pick_checkpoint(args, Path(scratch))
        settings = Settings(checkpoint=checkpoint_path)
        device = settings.devices()[0]
        ckpt = load_for_inference(checkpoint_path, device, args.backend)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(port, {
            "REDSEG_CHECKPOINT": str(checkpoint_path),
            "REDSEG_DEVICE": "auto",
            "REDSEG_QUEUE_SIZE": str(args.clients),
            "REDSEG_REQUEST_TIMEOUT_S": "86400",  # measure throughput, not the timeout
            "REDSEG_BACKEND": args.backend,
        }, Path(scratch) / "server.log")
        servers = {args.backend: server}
        try:
            print(f"model: {label}; device {device}; torch threads {torch.get_num_threads()}; image {args.image}; "
                  f"served on {backend_of(ckpt.model)}")
            if args.backend != "torch":
                torch_port = free_port()
                servers["torch"] = start_server(torch_port, {"REDSEG_CHECKPOINT": str(checkpoint_path),
                                                             "REDSEG_DEVICE": "auto", "REDSEG_BACKEND": "torch",
                                                             "REDSEG_REQUEST_TIMEOUT_S": "86400"},
                                                Path(scratch) / "torch-server.log")
                torch_http = httpx.Client(base_url=f"http://127.0.0.1:{torch_port}", timeout=600)

            reference_model = nchw_reference(checkpoint_path, device)
            working = working_scale_input(ckpt.model, decode_upload(data, settings.max_pixels))

            def reference() -> float:
                started = time.perf_counter()
                with torch.inference_mode():
                    torch.sigmoid(reference_model(working).fused)
                return time.perf_counter() - started

            def in_process() -> float:
                started = time.perf_counter()
                image = decode_upload(data, settings.max_pixels)
                probabilities = predict_probabilities(ckpt.model, image, settings.tiles, ckpt.calibration)
                masks = lesion_masks(probabilities, ckpt.thresholds)
                render(image, masks, outputs)
                summarise(image, probabilities, ckpt, masks)
                return time.perf_counter() - started

            http = httpx.Client(base_url=url, timeout=600)

            def over_http(client: httpx.Client = http, accept: str = "application/json") -> tuple[float, int]:
                started = time.perf_counter()
                response = client.post("/segment", files={"image": ("image.jpg", data, "image/jpeg")},
                                       params={"outputs": args.outputs}, headers={"Accept": accept})
                return time.perf_counter() - started, response.status_code

            variants = {"(a) network alone, fp32 NCHW": reference,
                        "(j) HTTP /segment, JSON": lambda: checked(over_http()),
                        "(z) HTTP /segment, zip": lambda: checked(over_http(accept="application/zip")),
                        "(p) in-process pipeline": in_process}
            if args.backend != "torch":
                variants["(t) HTTP /segment, JSON, torch path"] = lambda: checked(over_http(torch_http))
            times = {name: [] for name in variants}
            for fn in variants.values():
                fn()  # warm-up
            for i in range(args.requests):
                for name, fn in variants.items():
                    times[name].append(fn())
                print("  round " + str(i + 1) + ": " + ", ".join(f"{name.split()[0]} {t[-1]:.3f} s" for name, t in times.items()))
            medians = {name: statistics.median(t) for name, t in times.items()}
            single_peaks = {backend: peak_rss_mb(process) for backend, process in servers.items()}
            single_rate = 1 / medians["(j) HTTP /segment, JSON"]

            lock = threading.Lock()
            statuses: list[int] = []
            clients = [httpx.Client(base_url=url, timeout=600) for _ in range(args.clients)]
            queue = list(range(args.concurrent_requests))

            def client_loop(client: httpx.Client) -> None:
                while True:
                    with lock:
                        if not queue:
                            return
                        queue.pop()
                    _, status = over_http(client)
                    with lock:
                        statuses.append(status)

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(client_loop, clients))
            elapsed = time.perf_counter() - started
            ok = statuses.count(200)
            multi_rate = ok / elapsed
            peaks = {backend: peak_rss_mb(process) for backend, process in servers.items()}
        finally:
            for process in servers.values():
                stop(process)

    print()
    print(f"| measurement (median of {args.requests}, interleaved) | seconds | / (a) |")
    print("|---|---:|---:|")
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} | {value / medians['(a) network alone, fp32 NCHW']:.3f} |")
    for name in ("(j) HTTP /segment, JSON", "(z) HTTP /segment, zip"):
        ratio = medians[name] / medians["(a) network alone, fp32 NCHW"]
        print(f"{name} / (a) = {ratio:.3f} (target <= 1.0) {'OK' if ratio <= 1.0 else 'MISSED'}")
    if args.backend != "torch":
        j, t, a = (medians[name] for name in ("(j) HTTP /segment, JSON", "(t) HTTP /segment, JSON, torch path",
                                              "(a) network alone, fp32 NCHW"))
        print(f"(j)/(t) = {j / t:.3f} (target <= 0.5) {'OK' if j / t <= 0.5 else 'MISSED'}; "
              f"(j)/(a) = {j / a:.3f} (target <= 0.20) {'OK' if j / a <= 0.20 else 'MISSED'} ({args.backend})")
    print("server peak RSS, one request at a time: " + ", ".join(f"{b} {mb:.0f} MB" for b, mb in single_peaks.items())
          + f"; after the {args.clients} clients: {args.backend} {peaks[args.backend]:.0f} MB")
    share = multi_rate / single_rate
    lost = args.concurrent_requests - ok
    others = {status: statuses.count(status) for status in sorted(set(statuses)) if status != 200}
    print(f"(b) 1 client {single_rate:.3f} req/s, {args.clients} clients {multi_rate:.3f} req/s "
          f"({ok}/{args.concurrent_requests} answered 200, {lost} lost{f' {others}' if others else ''}): {share:.3f} of the single-client rate "
          f"(target >= 0.95) {'OK' if share >= 0.95 and lost == 0 else 'MISSED'}")


if __name__ == "__main__":
    configure_heap()  # the servers' heap settings, so (a) and (p) run on the same allocator as (j) and (t)
    main()
