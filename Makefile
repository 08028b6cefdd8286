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

# The model card's figures and hold-out numbers, from a finished training run (see MODEL_CARD.md).
RUN ?= runs/cpu-default
DATA ?= ../shared/data/idrid
CARD ?= docs/model-card
MODEL ?= checkpoints/redseg-default.safetensors
EXAMPLES ?= IDRiD_05,IDRiD_20,IDRiD_40

.PHONY: model-card
model-card: venv
	for stage in warmup topk fnfp; do \
	  $(BIN)/redseg-evaluate --checkpoint $(RUN)/checkpoints/$$stage-best.safetensors --data $(DATA) \
	    --split train --holdout --out $(CARD)/eval-$$stage --no-progress || exit 1; \
	done
	$(BIN)/redseg-evaluate --checkpoint $(MODEL) --data $(DATA) --split train --holdout --compare-fov \
	  --out $(CARD)/eval-default --no-progress
	$(BIN)/redseg-baseline --data $(DATA) --split train --holdout --out $(CARD)/baseline --no-progress
	$(BIN)/redseg-examples --checkpoint $(MODEL) --data $(DATA) --images $(EXAMPLES) --out $(CARD)/examples
	cp $(RUN)/curves.png $(CARD)/loss-curves.png
