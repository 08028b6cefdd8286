"""Soak test: many requests to one server, its memory (RSS) watched from start to end.

    .venv/bin/python bench/soak.py [--requests 1000] [--full-size-every 25] [--clients 2]
                                   [--max-minutes 120] [--out bench/soak]
                                   [--checkpoint checkpoints/redseg-default.safetensors]
                                   [--image assets/IDRiD_05.jpg]

Starts ``redseg-serve`` on loopback with the checkpoint, then sends ``--requests`` requests
from ``--clients`` clients, in blocks of ``--block``: small images (the sample photo shrunk to a
few sizes, PNG and JPEG: 160 to 480 pixels wide, or all of them scaled up by one factor where the
model would refuse the smallest as too small to enlarge) and, every ``--full-size-every`` requests,
the full-size photograph (``--image``: by default the 4288x2848 JPEG sample). The server's RSS is
sampled after every answer (the curve) and at rest after every block, once ``--rest-s`` seconds
have passed with nothing in flight. RSS during a request depends on what else is in flight; RSS at
rest is what the server keeps between requests, where a leak shows. Growth after the warm-up (the
first ``--warm-up`` requests): the median RSS at rest over the last fifth of the run against that
over the first fifth after the warm-up (target: < 5 %, with every request answered 200). Writes
``soak.json`` (every sample) and ``soak.png`` (the curve).
No new request starts after ``--max-minutes``: the report then says how many were sent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
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

from bench.service import start_server  # noqa: E402
from tests.processes import free_port, stop  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT, read_metadata  # noqa: E402
from model.config import RedSegConfig  # noqa: E402
from model.fov import PhotographTooSmall, working_mapping  # noqa: E402

SAMPLE = ROOT / "assets" / "IDRiD_05.jpg"
SMALL_SIDES = (160, 240, 320, 480)


def shrunk(photo: np.ndarray, side: int) -> np.ndarray:
    return cv2.resize(photo, (side, side * photo.shape[0] // photo.shape[1]), interpolation=cv2.INTER_AREA)


def small_sides(photo: np.ndarray, config: RedSegConfig) -> list[int]:
    """The widths of the small uploads: ``SMALL_SIDES``, all scaled up by one factor where the model
    would refuse the smallest as too small (``model.fov.MAX_ENLARGEMENT``): the soak measures answers."""
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    factor = 1.0
    while SMALL_SIDES[0] * factor < photo.shape[1]:
        try:
            working_mapping(shrunk(rgb, round(SMALL_SIDES[0] * factor)), config)
            break
        except PhotographTooSmall:
            factor *= 1.25
    return [min(round(side * factor), photo.shape[1]) for side in SMALL_SIDES]


def small_uploads(sample: bytes, config: RedSegConfig) -> list[tuple[str, bytes, str]]:
    photo = cv2.imdecode(np.frombuffer(sample, np.uint8), cv2.IMREAD_COLOR)
    uploads = []
    for side in small_sides(photo, config):
        small = shrunk(photo, side)
        for extension, content_type in ((".png", "image/png"), (".jpg", "image/jpeg")):
            uploads.append((f"small-{side}{extension}", cv2.imencode(extension, small)[1].tobytes(), content_type))
    return uploads


def growth(samples: list[dict], warm_up: int) -> dict:
    """RSS at rest: the median of the last fifth of the run against that of the first fifth after the warm-up."""
    at_rest = [s for s in samples if s["at_rest"] and s["request"] >= warm_up]
    end = samples[-1]["request"]
    fifth = (end - warm_up) / 5
    early = statistics.median(s["rss_mb"] for s in at_rest if s["request"] <= warm_up + fifth)
    late = statistics.median(s["rss_mb"] for s in at_rest if s["request"] >= end - fifth)
    return {
        "rss_mb_start": samples[0]["rss_mb"],
        "rss_mb_at_rest_first_fifth": early,
        "rss_mb_at_rest_last_fifth": late,
        "rss_mb_at_rest_range": [min(s["rss_mb"] for s in at_rest), max(s["rss_mb"] for s in at_rest)],
        "rss_mb_peak_under_load": max(s["rss_mb"] for s in samples),
        "growth_after_warm_up_percent": 100 * (late - early) / early,
    }


def plot(samples: list[dict], warm_up: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    answers = [s for s in samples if not s["at_rest"]]
    rest = [s for s in samples if s["at_rest"]]
    ax.plot([s["request"] for s in answers], [s["rss_mb"] for s in answers], lw=0.8, c="tab:blue", label="after each answer")
    full = [s for s in answers if s["full_size"]]
    ax.scatter([s["request"] for s in full], [s["rss_mb"] for s in full], s=8, c="tab:red", label="full-size answer")
    ax.plot([s["request"] for s in rest], [s["rss_mb"] for s in rest], "o-", c="black", ms=4, label="at rest")
    ax.axvline(warm_up, ls="--", c="grey", lw=1, label="end of warm-up")
    ax.set_xlabel("requests answered")
    ax.set_ylabel("server RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    ax.set_title("redseg-serve RSS during the soak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


class Recorder:
    """The statuses seen and the server's RSS samples, shared by the client threads."""

    def __init__(self, server: psutil.Process, requests: int):
        self.server = server
        self.started = time.monotonic()
        self.samples: list[dict] = []
        self.statuses: dict[str, int] = {}
        self.lock = threading.Lock()
        self.bar = tqdm(total=requests, desc="soak", unit="req")

    def sample(self, full_size: bool, at_rest: bool) -> None:
        self.samples.append({
            "request": sum(self.statuses.values()), "seconds": time.monotonic() - self.started,
            "rss_mb": self.server.memory_info().rss / 2**20, "full_size": full_size, "at_rest": at_rest,
        })

    def answered(self, status: str, full_size: bool) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.sample(full_size, False)
            self.bar.update(1)


def send_all(args: argparse.Namespace, url: str, record: Recorder, sample: bytes,
             smalls: list[tuple[str, bytes, str]]) -> None:
    """Every request, in blocks, with a sample at rest after each block."""
    stop_at = record.started + 60 * args.max_minutes

    def one(index: int, http: httpx.Client) -> None:
        if time.monotonic() > stop_at:
            return
        full_size = index % args.full_size_every == args.full_size_every - 1
        name, data, content_type = ("full.jpg", sample, "image/jpeg") if full_size else smalls[index % len(smalls)]
        try:
            status = str(http.post("/segment", files={"image": (name, data, content_type)}).status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        record.answered(status, full_size)

    record.sample(False, True)
    with httpx.Client(base_url=url, timeout=300) as http, ThreadPoolExecutor(args.clients) as pool:
        for first in range(0, args.requests, args.block):
            list(pool.map(lambda i: one(i, http), range(first, min(first + args.block, args.requests))))
            time.sleep(args.rest_s)
            record.sample(False, True)
    record.bar.close()


def report(args: argparse.Namespace, record: Recorder) -> bool:
    """Write soak.json and soak.png, print the summary; True when the targets are met."""
    samples, statuses = record.samples, record.statuses
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps({"statuses": statuses, "samples": samples}, indent=1))  # kept if the report fails
    summary = {"requests": args.requests, "sent": sum(statuses.values()), "clients": args.clients,
               "full_size_every": args.full_size_every, "warm_up": args.warm_up, "statuses": statuses,
               "seconds": time.monotonic() - record.started, **growth(samples, args.warm_up)}
    (args.out / "soak.json").write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    print(json.dumps(summary, indent=1))
    answered = statuses.get("200", 0) == args.requests
    print(f"every request answered 200: {answered}; RSS growth after warm-up "
          f"{summary['growth_after_warm_up_percent']:.1f} % (target < 5 %)")
    try:
        plot(samples, args.warm_up, args.out / "soak.png")
    except ImportError:
        print("matplotlib is missing: draw the curve later with --replot")
    return answered and summary["growth_after_warm_up_percent"] < 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--full-size-every", type=int, default=25)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--warm-up", type=int, default=100)
    parser.add_argument("--block", type=int, default=50, help="requests between samples at rest")
    parser.add_argument("--rest-s", type=float, default=3.0, help="idle time before a sample at rest")
    parser.add_argument("--threads", type=int, default=None, help="REDSEG_TORCH_THREADS for the server")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--image", type=Path, default=SAMPLE, help="the full-size photograph, shrunk for the small uploads")
    parser.add_argument("--max-minutes", type=float, default=120.0, help="send no new request after this")
    parser.add_argument("--port", type=int, default=None, help="default: a free port (a server left on a fixed one would be measured instead)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "soak")
    parser.add_argument("--replot", action="store_true", help="only redraw soak.png from --out's soak.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """0 when every request was answered 200 and the RSS at rest grew less than 5 %, else 1."""
    args = parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "soak.json").read_text())
        plot(saved["samples"], saved["summary"]["warm_up"], args.out / "soak.png")
        return 0
    sample = args.image.read_bytes()
    smalls = small_uploads(sample, RedSegConfig.from_dict(read_metadata(args.checkpoint)["config"]))
    print("small uploads: " + ", ".join(name for name, _, _ in smalls[::2]))
    port = args.port or free_port()
    env = {"REDSEG_CHECKPOINT": str(args.checkpoint), "REDSEG_DEVICE": "cpu"}
    if args.threads:
        env["REDSEG_TORCH_THREADS"] = str(args.threads)
    process = start_server(port, env, Path(tempfile.gettempdir()) / f"redseg-soak-server-{port}.log")
    try:
        record = Recorder(psutil.Process(process.pid), args.requests)
        send_all(args, f"http://127.0.0.1:{port}", record, sample, smalls)
    finally:
        stop(process)
    return 0 if report(args, record) else 1


if __name__ == "__main__":
    sys.exit(main())
