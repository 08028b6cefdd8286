"""Monitoring test: a real Prometheus server scrapes the running service.

The service runs from this checkout (uvicorn on loopback, a tiny generated checkpoint),
Debian's ``prometheus`` scrapes it every second with its own config, storage and port,
a few /segment calls are made, and then:

- Prometheus's HTTP query API returns the redseg metrics, with the counts of the calls;
- every metric used by a query of the Grafana dashboard exists on the service's /metrics,
  and every dashboard query (and alert rule) evaluates on the real Prometheus;
- deploy/prometheus.yml and deploy/alerts.yml pass ``promtool check``.

Skipped when the prometheus binary is absent (apt-get install prometheus), unless
REDSEG_REQUIRE_PROMETHEUS=1 (CI sets it), which turns the skip into a failure.
Run alone with ``make monitoring-test``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port, running, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS_YML = ROOT / "deploy" / "prometheus.yml"
ALERTS_YML = ROOT / "deploy" / "alerts.yml"
SAMPLE = ROOT / "assets" / "IDRiD_05.jpg"
SEGMENT_CALLS = 3

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
PROMTOOL = shutil.which("promtool")

pytestmark = [pytest.mark.monitoring, pytest.mark.slow]  # slow: a real Prometheus and the service, about 25 s

if PROMETHEUS is None and os.environ.get("REDSEG_REQUIRE_PROMETHEUS") != "1":
    pytest.skip("prometheus binary not installed (apt-get install prometheus)", allow_module_level=True)


# --------------------------------------------------------------------------- PromQL helpers

PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "le", "atan2",
}
STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
TOKEN = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords or labels)."""
    text = STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    text = GROUPING.sub(" ", text)
    names = set()
    for match in TOKEN.finditer(text):
        name = match.group(1)
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or name.lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(name)
    return names


def selectors(expr: str, name: str) -> list[str]:
    """Every ``name{...}`` selector of ``name`` in ``expr`` (matchers included)."""
    pattern = re.compile(r"(?<![\w:.$])" + re.escape(name) + r"(?![\w:])(\{[^}]*\})?")
    return [m.group(0) for m in pattern.finditer(expr)]


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, ready for Prometheus."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "5m")
    expr = expr.replace("${instance}", ".*").replace("$instance", ".*")
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every Prometheus query of every dashboard."""
    found = []

    def walk(panels: list, file: str) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((file, panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []), file)

    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        walk(dashboard.get("panels", []), path.name)
    return found


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(redseg_inference_duration_seconds_bucket'
        '{instance=~"$instance",stage="infer"}[$__rate_interval]))) / 1e6 + on(job) group_left(x) '
        'sum without (le) (up) and count(redseg_model_info{name="x y"}) > bool 0'
    )
    assert metric_names(expr) == {"redseg_inference_duration_seconds_bucket", "up", "redseg_model_info"}
    assert selectors(expr, "redseg_model_info") == ['redseg_model_info{name="x y"}']


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service from this checkout on loopback, serving a tiny generated checkpoint."""
    tmp = tmp_path_factory.mktemp("monitoring-service")
    checkpoint = tmp / "tiny.safetensors"
    subprocess.run(
        [
            sys.executable, "-c",
            "import sys, torch\n"
            "from model import RedSeg, RedSegConfig, save_checkpoint\n"
            "torch.manual_seed(0)\n"
            "save_checkpoint(sys.argv[1], RedSeg(RedSegConfig(width=0.0625, working_long_side=256)),"
            " name='redseg-monitoring-test', version='test')\n",
            str(checkpoint),
        ],
        cwd=ROOT, check=True, timeout=120,
    )
    port = free_port()
    env = os.environ | {
        "REDSEG_CHECKPOINT": str(checkpoint),
        "REDSEG_DEVICE": "cpu",
        "REDSEG_API_TOKEN": "",
        "REDSEG_QUEUE_SIZE": "8",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "service.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with running(command, port, "/readyz", 180, tmp / "service.log", cwd=ROOT, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def prometheus_url(service_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping the service every second, with the project's alert rules."""
    if PROMETHEUS is None:
        pytest.fail("REDSEG_REQUIRE_PROMETHEUS=1 but the prometheus binary is not installed")
    tmp = tmp_path_factory.mktemp("monitoring-prometheus")
    config = tmp / "prometheus.yml"
    target = service_url.removeprefix("http://")
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "rule_files:\n"
        f"  - {json.dumps(str(ALERTS_YML))}\n"
        "scrape_configs:\n"
        "  - job_name: redseg\n"
        "    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: [{json.dumps(target)}]\n"
    )
    port = free_port()
    command = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
    ]
    with running(command, port, "/-/ready", 60, tmp / "prometheus.log", cwd=tmp) as url:
        yield url


def query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body.get("status") == "success", f"{promql!r}: {body}"
    return body["data"]["result"]


@pytest.fixture(scope="module")
def traffic(service_url: str, prometheus_url: str) -> dict:
    """A few /segment calls (and one bad upload), then waits until Prometheus has scraped them."""
    image = SAMPLE.read_bytes()
    with httpx.Client(base_url=service_url, timeout=120) as http:
        for _ in range(SEGMENT_CALLS):
            r = http.post("/segment", files={"image": ("IDRiD_05.jpg", image, "image/jpeg")})
            assert r.status_code == 200, r.text[:500]
        bad = http.post("/segment", files={"image": ("notes.txt", b"not an image at all", "text/plain")})
        assert 400 <= bad.status_code < 500, bad.text[:500]
        metrics_text = http.get("/metrics").text

    def scraped() -> bool:
        result = query(prometheus_url, 'sum(redseg_inference_duration_seconds_count{stage="infer"})')
        return bool(result) and float(result[0]["value"][1]) >= SEGMENT_CALLS

    wait_until(scraped, 30, "Prometheus scraping the /segment calls")
    time.sleep(2.5)  # two more scrapes, so that rate() over the calls has points
    return {"bad_status": bad.status_code, "metrics_text": metrics_text}


def metrics_on_endpoint(text: str) -> tuple[set[str], set[str]]:
    """(sample names, family names declared by # TYPE) on a /metrics page."""
    samples, declared = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return samples, declared


def family_of(name: str, declared: set[str]) -> str | None:
    for suffix in ("", "_total", "_bucket", "_sum", "_count", "_created", "_info"):
        if suffix and not name.endswith(suffix):
            continue
        base = name[: len(name) - len(suffix)] if suffix else name
        if base in declared:
            return base
    return None


# --------------------------------------------------------------------------- tests


def test_prometheus_target_is_up(prometheus_url: str, traffic: dict) -> None:
    result = query(prometheus_url, 'up{job="redseg"}')
    assert [float(r["value"][1]) for r in result] == [1.0], result


@pytest.mark.parametrize(
    "promql, least",
    [
        ('sum(redseg_inference_duration_seconds_count{stage="decode"})', SEGMENT_CALLS),
        ('sum(redseg_inference_duration_seconds_count{stage="infer"})', SEGMENT_CALLS),
        ('sum(redseg_inference_duration_seconds_count{stage="encode"})', SEGMENT_CALLS),
        ("sum(redseg_queue_wait_seconds_count)", SEGMENT_CALLS),
        ("sum(redseg_tiles_total)", SEGMENT_CALLS),
        ("sum(redseg_lesion_area_fraction_count)", 2 * SEGMENT_CALLS),  # MA and HE
        ('sum(redseg_model_info{name="redseg-monitoring-test"})', 1),
        ("count(redseg_queue_depth)", 1),
        ("sum(redseg_requests_rejected_total)", 1),
        ('sum(http_requests_total{handler="/segment"})', SEGMENT_CALLS + 1),
        ('sum(http_request_duration_seconds_count{handler="/segment"})', SEGMENT_CALLS + 1),
    ],
)
def test_prometheus_returns_redseg_metrics(prometheus_url: str, traffic: dict, promql: str, least: float) -> None:
    result = query(prometheus_url, promql)
    assert result, f"{promql}: no series in Prometheus"
    assert float(result[0]["value"][1]) >= least, f"{promql} = {result[0]['value'][1]}, expected >= {least}"


def test_dashboard_has_the_expected_panels() -> None:
    queries = dashboard_queries()
    assert queries, f"no dashboard queries under {DASHBOARD_DIR}"
    text = " ".join(expr for _, _, expr in queries)
    for needed in (
        "http_requests_total", "http_request_duration_seconds_bucket", "histogram_quantile(0.99",
        "redseg_queue_depth", "redseg_queue_wait_seconds_bucket", "redseg_inference_duration_seconds_bucket",
        "redseg_lesion_area_fraction", "redseg_requests_rejected_total",
    ):
        assert needed in text, f"the dashboard has no query on {needed}"


def test_every_dashboard_metric_exists_on_metrics(traffic: dict) -> None:
    samples, declared = metrics_on_endpoint(traffic["metrics_text"])
    missing = []
    for file, title, expr in dashboard_queries():
        for name in metric_names(expr):
            if name in samples or family_of(name, declared):
                continue
            missing.append(f"{file} / {title!r}: {name}")
    assert not missing, "dashboard metrics missing from /metrics:\n" + "\n".join(missing)


def test_every_dashboard_query_runs_on_prometheus(prometheus_url: str, traffic: dict) -> None:
    samples, declared = metrics_on_endpoint(traffic["metrics_text"])
    problems = []
    for file, title, expr in dashboard_queries():
        promql = grafana_to_promql(expr)
        try:
            query(prometheus_url, promql)
        except AssertionError as error:
            problems.append(f"{file} / {title!r}: invalid query: {error}")
            continue
        for name in metric_names(expr):
            if name not in samples:
                continue  # declared without samples (e.g. GPU memory on a CPU host)
            for selector in selectors(promql, name):
                if re.search(r'status=~"(?:5|\[45\])', selector):
                    continue  # error series exist only once errors happened
                if not query(prometheus_url, f"count({selector})"):
                    problems.append(f"{file} / {title!r}: {selector} selects nothing")
    assert not problems, "\n".join(problems)


def test_alert_rules_load_and_evaluate(prometheus_url: str, traffic: dict) -> None:
    groups = httpx.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules, "deploy/alerts.yml was not loaded"
    time.sleep(1.5)  # one evaluation round
    groups = httpx.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    bad = [f"{r['name']}: {r.get('health')} {r.get('lastError', '')}" for g in groups for r in g["rules"] if r.get("health") == "err"]
    assert not bad, bad
    samples, declared = metrics_on_endpoint(traffic["metrics_text"])
    for rule in (r for g in groups for r in g["rules"]):
        for name in metric_names(rule["query"]):
            if name == "up":
                continue  # made by Prometheus
            assert name in samples or family_of(name, declared), f"alert {rule['name']}: {name} not on /metrics"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_promtool_checks_the_compose_configuration() -> None:
    for args in (["check", "config", str(PROMETHEUS_YML)], ["check", "rules", str(ALERTS_YML)]):
        result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
