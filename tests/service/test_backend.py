"""REDSEG_BACKEND: the service loads the engine it names, and refuses one it cannot run."""

import pytest

from model.backends import OpenVINORedSeg, backend_of
from service.app import StartupError, load_pool
from service.metrics import Metrics
from service.settings import Settings

from tests.service.helpers import tiny_checkpoint

pytest.importorskip("openvino")


def test_the_default_backend_is_auto(monkeypatch):
    monkeypatch.delenv("REDSEG_BACKEND", raising=False)  # tests/conftest.py pins torch for the rest
    assert Settings().backend == "auto"


@pytest.mark.slow  # converts the tiny network (about 10 s on 2 cores)
def test_the_pool_serves_the_openvino_engine(tmp_path):
    path = tiny_checkpoint(tmp_path / "tiny.safetensors")
    pool = load_pool(Settings(checkpoint=path, device="cpu", backend="openvino-bf16"), Metrics())
    assert isinstance(pool.checkpoint.model, OpenVINORedSeg) and backend_of(pool.checkpoint.model) == "openvino-bf16"
    assert (tmp_path / "tiny.openvino").is_dir()


def test_openvino_on_a_gpu_is_refused_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(Settings, "devices", lambda self: ["cuda:0"])
    path = tiny_checkpoint(tmp_path / "tiny.safetensors")
    with pytest.raises(StartupError, match="runs on the CPU"):
        load_pool(Settings(checkpoint=path, backend="openvino-int8"), Metrics())
