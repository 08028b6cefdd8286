# The two set-up commands: `make serve` and `make test` (each builds .venv first).
# `make test-fast`: the edit-test loop, every test but those marked slow (a server per test, the
# bundled model on full-size photographs, a browser, Prometheus, Orthanc): under 2 minutes on 2 cores.
# `make test` runs them all, as CI does.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PIP := $(BIN)/python -m pip install --quiet

# torch: the CPU build, unless this machine has an NVIDIA GPU (nvidia-smi), where the project's
# own install takes PyPI's default build (CUDA on Linux). TORCH_INDEX picks another:
# `make venv TORCH_INDEX=https://download.pytorch.org/whl/cu126`, or TORCH_INDEX= for PyPI's.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,$(TORCH_CPU_INDEX))
TORCH_REQ := $(shell grep -o '"torch[<>=!~][^"]*"' pyproject.toml)

.PHONY: venv test test-fast serve bench clean container-test monitoring-test

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
ifeq ($(TORCH_INDEX),$(TORCH_CPU_INDEX))
# A torch wheel that pip already holds offline (its find-links, as on the build machines) comes first.
	$(PIP) --no-index --no-deps $(TORCH_REQ) 2>/dev/null || $(PIP) --index-url $(TORCH_INDEX) $(TORCH_REQ)
else ifneq ($(TORCH_INDEX),)
	$(PIP) --index-url $(TORCH_INDEX) $(TORCH_REQ)
endif
	$(PIP) -e ".[dev]"
	touch $@

test: venv
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

# Listens on this machine only; HOST=0.0.0.0 opens it to the network (set REDSEG_API_TOKEN then).
serve: venv
	$(BIN)/redseg-serve --host $(HOST) --port $(PORT)

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

# The model card's figures and hold-out numbers, from a finished training run (see MODEL_CARD.md):
# the fast model's by default; MODEL=checkpoints/redseg-default.safetensors CARD=docs/model-card-gpu
# for the default (full-width) model's.
RUN ?= runs/cpu-default
DATA ?= ../shared/data/idrid
CARD ?= docs/model-card
MODEL ?= checkpoints/redseg-fast.safetensors
EXAMPLES ?= IDRiD_05,IDRiD_20,IDRiD_40

.PHONY: model-card
model-card: venv
	for stage in warmup topk fnfp; do \
	  $(BIN)/redseg-evaluate --checkpoint $(RUN)/checkpoints/$$stage-best.safetensors --data $(DATA) \
	    --split train --holdout --out $(CARD)/eval-$$stage --no-progress || exit 1; \
	done
	# rewrites $(MODEL) with its calibration and drops a referral score fitted before it: run make screen after
	$(BIN)/redseg-calibrate --checkpoint $(MODEL) --data $(DATA) --out $(CARD)/calibration --no-progress
	$(BIN)/redseg-evaluate --checkpoint $(MODEL) --data $(DATA) --split train --holdout --compare-fov \
	  --out $(CARD)/eval-default --no-progress
	$(BIN)/redseg-evaluate --checkpoint $(MODEL) --data $(DATA) --split train --holdout --tta flips \
	  --out $(CARD)/eval-default-tta-flips --no-progress
	$(BIN)/redseg-baseline --data $(DATA) --split train --holdout --out $(CARD)/baseline --no-progress
	$(BIN)/redseg-examples --checkpoint $(MODEL) --data $(DATA) --images $(EXAMPLES) --out $(CARD)/examples
	cp $(RUN)/curves.png $(CARD)/loss-curves.png

# Hard and soft exudate branches added to a red-lesion checkpoint, its encoder frozen (docs/exudates.md):
# trained on the IDRiD training split, calibrated on the hold-out (EX and SE only: MA and HE keep theirs),
# measured on the hold-out at full resolution. Then `make screen` refits the referral score on all four.
FROM ?= $(MODEL)
.PHONY: exudates
exudates: venv
	$(BIN)/redseg-train-branches --checkpoint $(FROM) --write $(MODEL) --data $(DATA) --out $(CARD)/exudates/train \
	  --threads 2 --no-progress
	$(BIN)/redseg-calibrate --checkpoint $(MODEL) --lesions EX,SE --data $(DATA) --out $(CARD)/exudates/calibration --no-progress
	$(BIN)/redseg-evaluate --checkpoint $(MODEL) --backend torch --data $(DATA) --split train --holdout \
	  --out $(CARD)/exudates/eval-holdout --no-progress

# The referral score for a checkpoint (see MODEL_CARD.md, "Screening summary and referral score"):
# validated on IDRiD's graded photographs by cross-validation, refitted on all of them and written
# into the checkpoint's metadata. Features are cached per model in .cache/screening.
GRADING ?= ../shared/data/idrid-grading
.PHONY: screen
screen: venv
	$(BIN)/redseg-screen --checkpoint $(MODEL) --data $(GRADING) --out $(CARD)/screening --write
