"""Forward time of int8 IRs side by side, interleaved, on the default model's working-scale input (1x3x976x1200,
2 threads): the shipped IR against probes that keep more of the encoder in fp32. Medians of wall time and of
the process's CPU time (less moved by other tenants of a shared machine).

    .venv/bin/python campaign/int8-exudates/bench_irs.py shipped=checkpoints/redseg-default.openvino/int8-*.xml \
        stage4=runs/int8-stage4/redseg-default.openvino/int8-*.xml [--repeats 7]
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from model.backends import compile_ir, precision_hint

parser = argparse.ArgumentParser()
parser.add_argument("irs", nargs="+", help="name=path.xml")
parser.add_argument("--repeats", type=int, default=7)
args = parser.parse_args()
requests = {name: compile_ir(Path(path), precision_hint("openvino-int8"), 2).create_infer_request()
            for name, path in (ir.split("=", 1) for ir in args.irs)}
x = np.random.default_rng(0).normal(size=(1, 3, 976, 1200)).astype(np.float32)
times = {name: [] for name in requests}
cpu = {name: [] for name in requests}
for request in requests.values():
    request.infer({0: x})  # warm-up
for _ in range(args.repeats):
    for name, request in requests.items():
        started, started_cpu = time.perf_counter(), time.process_time()
        request.infer({0: x})
        times[name].append(time.perf_counter() - started)
        cpu[name].append(time.process_time() - started_cpu)
first = next(iter(times))
for name, values in times.items():
    median, median_cpu = statistics.median(values), statistics.median(cpu[name])
    print(f"{name}: median {median:.3f} s over {args.repeats} (min {min(values):.3f}); "
          f"{median / statistics.median(times[first]):.2f} x {first}; "
          f"CPU {median_cpu:.3f} s, {median_cpu / statistics.median(cpu[first]):.2f} x {first}")
