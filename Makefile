# The two set-up commands: `make serve` and `make test` (each builds .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: venv test serve bench clean container-test monitoring-test

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

test: venv
	$(BIN)/python -m pytest

serve: venv
	$(BIN)/uvicorn service.main:app --host $(HOST) --port $(PORT)

# Deployment checks (see README, "Deployment"): the image built with podman and run from
# its filesystem (needs root, podman, debootstrap), and a real Prometheus scraping the service.
container-test:
	bash deploy/container-test.sh

monitoring-test: venv
	REDSEG_REQUIRE_PROMETHEUS=1 $(BIN)/python -m pytest tests/deploy -m monitoring

bench: venv
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
