"""Deployment tests: compose/Grafana/Prometheus files, and the monitoring test (real Prometheus)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "monitoring: starts the service and a real Prometheus server (needs the prometheus binary)"
    )
