"""Static checks of the deployment files: Dockerfile, compose files, Prometheus and Grafana provisioning.

(No Docker engine runs on the build machines: `make container-test` builds and runs the
image with podman; these checks keep the files consistent with each other.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def gpu() -> dict:
    return load("docker-compose.gpu.yml")


def test_compose_services_and_health_gated_start(compose: dict) -> None:
    services = compose["services"]
    assert {"api", "prometheus", "grafana"} <= set(services)
    assert services["api"]["build"]["args"]["TORCH"] == "cpu"
    assert any(str(p).endswith(":8000") for p in services["api"]["ports"])
    assert any(str(p).endswith(":9090") for p in services["prometheus"]["ports"])
    assert any(str(p).endswith(":3000") for p in services["grafana"]["ports"])
    assert services["prometheus"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name in ("api", "prometheus"):
        health = services[name]["healthcheck"]
        assert health["test"][0] in ("CMD", "CMD-SHELL")
    api_test = " ".join(services["api"]["healthcheck"]["test"])
    assert "curl" not in api_test and "/healthz" in api_test
    assert int(services["api"]["healthcheck"]["start_period"].rstrip("s")) >= 60


def test_cpu_compose_needs_no_gpu(compose: dict) -> None:
    text = json.dumps(compose)
    assert "nvidia" not in text, "docker-compose.yml alone must start on a host without a GPU"


def test_gpu_override_reserves_nvidia_gpus(gpu: dict) -> None:
    api = gpu["services"]["api"]
    assert api["build"]["args"]["TORCH"] == "cuda"
    devices = api["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "count" in devices[0] or "device_ids" in devices[0]


def test_mounted_files_exist(compose: dict) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{volume}: {source} does not exist"


def test_prometheus_scrapes_the_api() -> None:
    config = load("deploy/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["redseg"]["static_configs"] for t in sc["targets"]]
    assert "api:8000" in targets
    assert jobs["redseg"].get("metrics_path", "/metrics") == "/metrics"
    for rule_file in config.get("rule_files", []):
        assert (ROOT / "deploy" / rule_file).exists(), rule_file


def test_grafana_provisioning() -> None:
    datasources = load("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    prometheus = [d for d in datasources if d["type"] == "prometheus"]
    assert prometheus and prometheus[0]["url"] == "http://prometheus:9090"
    uid = prometheus[0]["uid"]
    providers = load("deploy/grafana/provisioning/dashboards/redseg.yml")["providers"]
    assert providers[0]["options"]["path"] == "/etc/grafana/dashboards"
    dashboards = list((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = []
        for panel in dashboard["panels"]:
            ids.append(panel["id"])
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
        assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_dockerfile_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"^ARG TORCH=cpu$", text, re.M)
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "OPENCV_IO_MAX_IMAGE_PIXELS=" in text
    assert re.search(r"^HEALTHCHECK .*--start-period=\d+", text, re.M)
    assert "curl" not in text.split("HEALTHCHECK", 1)[1].split('CMD ["python", "-m"', 1)[0]
    assert re.search(r"^EXPOSE 8000$", text, re.M)
    assert re.search(r"^COPY checkpoints/ ", text, re.M)
    assert re.search(r'^CMD \["python", "-m", "service\.serve"\]', text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", ".cache", "runs/"):
        assert entry in ignored, entry


class ComposeLoader(yaml.SafeLoader):
    """A YAML loader that accepts compose's !reset and !override merge tags."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node):
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!reset", _tagged)
ComposeLoader.add_constructor("!override", _tagged)


def test_multi_gpu_compose_one_replica_per_gpu() -> None:
    config = yaml.load((ROOT / "deploy/compose-multi-gpu.yml").read_text(), Loader=ComposeLoader)
    services = config["services"]
    replicas = sorted(name for name in services if name.startswith("api-gpu"))
    assert len(replicas) >= 2
    gpus = []
    for name in replicas:
        service = services[name]
        assert service["extends"]["service"] == "api"
        assert (ROOT / "deploy" / service["extends"]["file"]).exists()
        device = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
        gpus += device["device_ids"]
    assert len(gpus) == len(set(gpus)) == len(replicas), "each replica gets its own GPU"
    nginx = (ROOT / "deploy/nginx.conf").read_text()
    assert sorted(re.findall(r"server (api-gpu\d+):8000", nginx)) == replicas
    prometheus = load("deploy/prometheus-multi-gpu.yml")
    targets = [t for job in prometheus["scrape_configs"] if job["job_name"] == "redseg"
               for sc in job["static_configs"] for t in sc["targets"]]
    assert sorted(t.split(":")[0] for t in targets) == replicas
    for name in ("prometheus", "grafana"):
        assert services[name]["depends_on"]


def test_kubernetes_manifest() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy/k8s/redseg.yaml").read_text())}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(docs)
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    metric = docs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert metric == "redseg_queue_depth"
