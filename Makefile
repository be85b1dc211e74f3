# PneumoEdge: one entry point for people and CI. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
PORT ?= 8080
HOST ?= 127.0.0.1
MODEL ?= models/mobilenetv2-int8
DATA ?= ../shared/data/chest_xray
WEIGHTS ?= ../shared/weights/mobilenet_v2_1.0_224_no_top_from_tfslim.h5
RUN ?= runs/mobilenetv2
KIOSK_DATA ?= kiosk-data
WHEELHOUSE ?= $(HOME)/.cache/pneumoedge/wheelhouse

EDGE_VENV := .venv-edge
TRAIN_VENV := .venv

.PHONY: help kiosk test test-fast wheelhouse lint train evaluate sweep export benchmark bench-kiosk bench-gate clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(EDGE_VENV)/.installed: requirements-edge.txt
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install --quiet --upgrade pip
	$(EDGE_VENV)/bin/pip install --quiet -r requirements-edge.txt
	touch $@

$(TRAIN_VENV)/.installed: requirements-edge.txt requirements-train.txt requirements-test.txt
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install --quiet --upgrade pip
	$(TRAIN_VENV)/bin/pip install --quiet -r requirements-test.txt
	touch $@

kiosk: $(EDGE_VENV)/.installed ## set up the kiosk's environment and serve the shipped model on $(HOST):$(PORT)
	$(EDGE_VENV)/bin/python -m edge serve --model $(MODEL) --host $(HOST) --port $(PORT) --data-dir $(KIOSK_DATA)

test: $(TRAIN_VENV)/.installed $(WHEELHOUSE)/.complete ## set up the training environment, lint, and run the whole test suite
	$(MAKE) --no-print-directory lint
	PNEUMOEDGE_WHEELHOUSE=$(WHEELHOUSE) $(TRAIN_VENV)/bin/python -m pytest -m "slow or not slow"

test-fast: $(TRAIN_VENV)/.installed ## lint and the quick tests only (no slow offline-install or real-data tests)
	$(MAKE) --no-print-directory lint
	$(TRAIN_VENV)/bin/python -m pytest

wheelhouse: $(WHEELHOUSE)/.complete ## download the kiosk's wheels for this machine (the offline-install tests use them)

$(WHEELHOUSE)/.complete: requirements-edge.txt
	mkdir -p $(WHEELHOUSE)
	$(PYTHON) -m pip download --quiet --only-binary=:all: -r requirements-edge.txt -d $(WHEELHOUSE)
	touch $@

lint: $(TRAIN_VENV)/.installed ## ruff and shellcheck
	$(TRAIN_VENV)/bin/ruff check .
	$(TRAIN_VENV)/bin/ruff format --check .
	find firmware_scripts .ci -type f \( -name '*.sh' -o -name run \) -print0 | xargs -0 -r $(TRAIN_VENV)/bin/shellcheck

train: $(TRAIN_VENV)/.installed ## train the shipped model's recipe into $(RUN)
	$(TRAIN_VENV)/bin/python -m trainer train --data $(DATA) --out $(RUN) --weights $(WEIGHTS)

evaluate: $(TRAIN_VENV)/.installed ## evaluate $(RUN) on its held-out validation patients
	$(TRAIN_VENV)/bin/python -m trainer evaluate --run $(RUN) --data $(DATA)

sweep: $(TRAIN_VENV)/.installed ## compare optimizers, learning rates and batch sizes on a small budget -> reports/sweep/
	$(TRAIN_VENV)/bin/python -m trainer sweep --data $(DATA) --out reports/sweep

export: $(TRAIN_VENV)/.installed ## export $(RUN) into float32, int8 and pruned int8 bundles under models/
	$(TRAIN_VENV)/bin/python -m quantize export --run $(RUN) --out models/mobilenetv2

benchmark: $(TRAIN_VENV)/.installed ## compare the shipped bundles on the held-out validation patients
	$(TRAIN_VENV)/bin/python -m quantize benchmark --data $(DATA) --split models/heldout-validation.csv \
	  --models models/mobilenetv2-float32 models/mobilenetv2-int8 models/mobilenetv2-pruned-int8 \
	  --out reports/mobilenetv2-heldout --runs 100

bench-kiosk: $(TRAIN_VENV)/.installed ## whole-request latency, throughput and memory of the kiosk on $(MODEL)
	$(TRAIN_VENV)/bin/python benchmarks/kiosk_latency.py --model $(MODEL)

bench-gate: $(TRAIN_VENV)/.installed ## quality gate: false rejects on real X-rays, catches on non-X-rays
	$(TRAIN_VENV)/bin/python benchmarks/quality_gate.py --data $(DATA) --model $(MODEL)

clean: ## remove the virtual environments (runs/ and kiosk-data/ are kept)
	rm -rf $(EDGE_VENV) $(TRAIN_VENV)
