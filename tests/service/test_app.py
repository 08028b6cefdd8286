"""Start-up (refusing a missing checkpoint), settings from the environment, and the OpenAPI document."""

from __future__ import annotations

import subprocess
import tomllib
import warnings
from importlib import metadata
from pathlib import Path

import pytest
from pydantic import ValidationError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette now prefers httpx2; httpx still works
    from fastapi.testclient import TestClient

from service import version
from service.app import StartupError, create_app, load_pool
from service.metrics import Metrics
from service.schemas import SegmentResponse
from service.settings import Settings
from tests.service.helpers import free_port, make_settings, serve_subprocess, wait_until


@pytest.mark.slow  # starts redseg-serve
def test_the_server_refuses_to_start_without_a_checkpoint(tmp_path: Path):
    missing = tmp_path / "no-such-model.safetensors"
    process = serve_subprocess({"REDSEG_CHECKPOINT": str(missing), "REDSEG_DEVICE": "cpu"}, free_port())
    try:
        output, _ = process.communicate(timeout=180)  # start-up imports are slow on a loaded machine
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the server started without a checkpoint")
    assert process.returncode != 0
    assert f"cannot start: checkpoint not found: {missing}" in output
    assert "REDSEG_CHECKPOINT" in output


def test_a_corrupt_checkpoint_is_refused_too(tmp_path: Path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(StartupError, match="cannot start"):
        load_pool(make_settings(bad), Metrics())


def test_lifespan_loads_the_model_not_the_import(checkpoint: Path):
    app = create_app(make_settings(checkpoint))
    assert app.state.pool is None
    with TestClient(app) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        wait_until(lambda: http.get("/readyz").status_code == 200, 60, "/readyz")
        assert app.state.pool is not None
    assert app.state.pool is None


def test_settings_come_from_redseg_environment_variables(monkeypatch: pytest.MonkeyPatch, checkpoint: Path):
    monkeypatch.setenv("REDSEG_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("REDSEG_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("REDSEG_DEVICE", "CPU")
    monkeypatch.setenv("REDSEG_API_TOKEN", "tok3n")
    monkeypatch.setenv("REDSEG_TILE_SIZE", "256")
    settings = Settings()
    assert settings.checkpoint == checkpoint and settings.max_upload_bytes == 1234
    assert settings.device == "cpu" and settings.devices() == ["cpu"]
    assert settings.api_token.get_secret_value() == "tok3n" and "tok3n" not in repr(settings)
    assert settings.tiles.tile_size == 256


def test_defaults_serve_the_bundled_checkpoint(monkeypatch: pytest.MonkeyPatch):
    for name in ("REDSEG_CHECKPOINT", "REDSEG_API_TOKEN", "REDSEG_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.checkpoint.name == "redseg-default.safetensors" and settings.checkpoint.is_file()
    assert settings.api_token is None and settings.device == "auto"


@pytest.mark.parametrize(
    "overrides",
    [{"device": "tpu"}, {"max_upload_bytes": 0}, {"queue_size": -1}, {"tile_size": 64, "tile_overlap": 64}],
    ids=["unknown device", "zero byte limit", "negative queue", "overlap not below tile"],
)
def test_bad_settings_are_refused(overrides: dict, checkpoint: Path):
    with pytest.raises(ValidationError):
        make_settings(checkpoint, **overrides)


def test_openapi_documents_the_upload_the_answer_and_an_example(checkpoint: Path):
    spec = create_app(make_settings(checkpoint)).openapi()
    operation = spec["paths"]["/segment"]["post"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["image"] and body["properties"]["image"]["format"] == "binary"
    assert {"threshold_ma", "threshold_he", "outputs"} <= {p["name"] for p in operation["parameters"]}
    assert {"200", "400", "408", "413", "415", "422", "500", "503"} <= set(operation["responses"])
    assert operation["requestBody"]["content"]["multipart/form-data"]["encoding"]["image"]["contentType"].startswith("image/")
    answer = spec["components"]["schemas"]["SegmentResponse"]
    assert answer["examples"][0]["image"] == {"width": 4288, "height": 2848}
    assert SegmentResponse.model_validate(answer["examples"][0]).screening.macular_oedema.at_risk  # the example is an answer
    risk = spec["components"]["schemas"]["MacularOedemaResult"]
    assert set(risk["properties"]) == {"score", "operating_point", "at_risk", "validation"} and "not a DME grading" in str(risk)
    assert "/healthz" in spec["paths"] and "/readyz" in spec["paths"]
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


def test_the_version_is_the_projects(checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    declared = tomllib.loads(version.PYPROJECT.read_text())["project"]["version"]
    assert create_app(make_settings(checkpoint)).openapi()["info"]["version"] == declared

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version.metadata, "version", not_installed)
    assert version.app_version() == declared  # a source tree that is not installed (the Docker image)
    monkeypatch.setattr(version, "PYPROJECT", version.PYPROJECT.with_name("missing.toml"))
    assert version.app_version() == "unknown"


def test_tta_is_a_service_setting(monkeypatch):
    monkeypatch.delenv("REDSEG_TTA", raising=False)
    assert Settings().tiles_for(["cpu"]).tta == "none" and Settings().tiles_for(["cuda:0"]).tta == "hflip"
    monkeypatch.setenv("REDSEG_TTA", "flips")
    assert Settings().tiles.tta == "flips" and Settings().tiles_for(["cpu"]).tta == "flips"
    monkeypatch.setenv("REDSEG_TTA", "mirror")
    with pytest.raises(ValidationError):
        Settings()


def test_openapi_declares_bearer_auth_only_when_a_token_is_set(checkpoint: Path):
    open_spec = create_app(make_settings(checkpoint)).openapi()
    assert "securitySchemes" not in open_spec.get("components", {})
    assert "security" not in open_spec["paths"]["/segment"]["post"]
    assert "401" not in open_spec["paths"]["/segment"]["post"]["responses"]
    guarded = create_app(make_settings(checkpoint, api_token="tok3n")).openapi()
    assert guarded["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert guarded["paths"]["/segment"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "401" in guarded["paths"]["/segment"]["post"]["responses"]
