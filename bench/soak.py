"""Soak test: many requests to one server, its memory (RSS) watched from start to end.

    .venv/bin/python bench/soak.py [--requests 1000] [--full-size-every 25] [--clients 2]
                                   [--max-minutes 120] [--out bench/soak]
                                   [--checkpoint checkpoints/redseg-default.safetensors]

Starts ``redseg-serve`` on loopback with the checkpoint, then sends ``--requests`` requests
from ``--clients`` clients: small images (the sample photo shrunk to a few sizes, PNG and
JPEG) and, every ``--full-size-every`` requests, the full-size sample (4288x2848 JPEG).
The server's RSS is sampled after every answer. It reports every status seen, and the RSS
growth after the warm-up (the first ``--warm-up`` requests): the largest RSS of the last
tenth of the run against the median RSS right after the warm-up (target: < 5 %, with every
request answered 200). Writes ``soak.json`` (every sample) and ``soak.png`` (the curve).
No new request starts after ``--max-minutes``: the report then says how many were sent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.service import free_port, wait_ready  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402

SAMPLE = ROOT / "assets" / "IDRiD_05.jpg"
SMALL_SIDES = (160, 240, 320, 480)


def small_uploads(sample: bytes) -> list[tuple[str, bytes, str]]:
    photo = cv2.imdecode(np.frombuffer(sample, np.uint8), cv2.IMREAD_COLOR)
    uploads = []
    for side in SMALL_SIDES:
        small = cv2.resize(photo, (side, side * photo.shape[0] // photo.shape[1]), interpolation=cv2.INTER_AREA)
        for extension, content_type in ((".png", "image/png"), (".jpg", "image/jpeg")):
            uploads.append((f"small-{side}{extension}", cv2.imencode(extension, small)[1].tobytes(), content_type))
    return uploads


def start_server(checkpoint: Path, port: int, threads: int | None) -> subprocess.Popen:
    env = os.environ | {"REDSEG_CHECKPOINT": str(checkpoint), "REDSEG_DEVICE": "cpu", "REDSEG_API_TOKEN": ""}
    if threads:
        env["REDSEG_TORCH_THREADS"] = str(threads)
    command = [sys.executable, "-m", "service.serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def growth(samples: list[dict], warm_up: int) -> dict:
    after_warm_up = [s["rss_mb"] for s in samples if warm_up <= s["request"] < warm_up + 50]
    last = [s["rss_mb"] for s in samples if s["request"] >= samples[-1]["request"] * 0.9]
    baseline = statistics.median(after_warm_up)
    return {
        "rss_mb_start": samples[0]["rss_mb"],
        "rss_mb_after_warm_up": baseline,
        "rss_mb_last_tenth_max": max(last),
        "rss_mb_peak": max(s["rss_mb"] for s in samples),
        "growth_after_warm_up_percent": 100 * (max(last) - baseline) / baseline,
    }


def plot(samples: list[dict], warm_up: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([s["request"] for s in samples], [s["rss_mb"] for s in samples], lw=1)
    full = [s for s in samples if s["full_size"]]
    ax.scatter([s["request"] for s in full], [s["rss_mb"] for s in full], s=8, c="tab:red", label="full-size answer")
    ax.axvline(warm_up, ls="--", c="grey", lw=1, label="end of warm-up")
    ax.set_xlabel("requests answered")
    ax.set_ylabel("server RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    ax.set_title("redseg-serve RSS during the soak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--full-size-every", type=int, default=25)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--warm-up", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="REDSEG_TORCH_THREADS for the server")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--max-minutes", type=float, default=120.0, help="send no new request after this")
    parser.add_argument("--port", type=int, default=None, help="default: a free port (a server left on a fixed one would be measured instead)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "soak")
    parser.add_argument("--replot", action="store_true", help="only redraw soak.png from --out's soak.json")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads((args.out / "soak.json").read_text())
        plot(saved["samples"], saved["summary"]["warm_up"], args.out / "soak.png")
        return

    sample = SAMPLE.read_bytes()
    smalls = small_uploads(sample)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(args.checkpoint, port, args.threads)
    samples: list[dict] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    started = time.monotonic()
    try:
        wait_ready(url, process)
        server = psutil.Process(process.pid)
        samples.append({"request": 0, "seconds": 0.0, "rss_mb": server.memory_info().rss / 2**20, "full_size": False})
        bar = tqdm(total=args.requests, desc="soak", unit="req")

        stop_at = started + 60 * args.max_minutes

        def one(index: int, http: httpx.Client) -> None:
            if time.monotonic() > stop_at:
                return
            full_size = index % args.full_size_every == args.full_size_every - 1
            name, data, content_type = ("full.jpg", sample, "image/jpeg") if full_size else smalls[index % len(smalls)]
            try:
                status = str(http.post("/segment", files={"image": (name, data, content_type)}).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                samples.append({
                    "request": sum(statuses.values()), "seconds": time.monotonic() - started,
                    "rss_mb": server.memory_info().rss / 2**20, "full_size": full_size,
                })
                bar.update(1)

        with httpx.Client(base_url=url, timeout=300) as http, ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda i: one(i, http), range(args.requests)))
        bar.close()
    finally:
        process.terminate()
        process.wait(60)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps({"statuses": statuses, "samples": samples}, indent=1))  # kept if the report fails
    summary = {"requests": args.requests, "sent": sum(statuses.values()), "clients": args.clients, "full_size_every": args.full_size_every,
               "warm_up": args.warm_up, "statuses": statuses, "seconds": time.monotonic() - started,
               **growth(samples, args.warm_up)}
    (args.out / "soak.json").write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    print(json.dumps(summary, indent=1))
    answered = statuses.get("200", 0) == args.requests
    print(f"every request answered 200: {answered}; RSS growth after warm-up "
          f"{summary['growth_after_warm_up_percent']:.1f} % (target < 5 %)")
    try:
        plot(samples, args.warm_up, args.out / "soak.png")
    except ImportError:
        print("matplotlib is missing: draw the curve later with --replot")
    sys.exit(0 if answered and summary["growth_after_warm_up_percent"] < 5 else 1)


if __name__ == "__main__":
    main()
