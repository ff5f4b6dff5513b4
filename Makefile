# modelshield developer targets. `make help` lists them.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
BIN := $(VENV)/bin
SOURCES := operator webhooks tests e2e bench
TOOLS_ENV := $(HOME)/.cache/modelshield/tools/env.sh
# The moment the example facts describe (examples/README.md): the demo judges attestation
# ages as of then, so it gives the same verdicts on any day.
DEMO_NOW := 2026-11-25T12:00:00Z
# `make test` runs the node tests (e2e/pods) too; MODELSHIELD_E2E_NODE=0 leaves them out
# (they then skip, saying so). Without root they skip, saying why.
MODELSHIELD_E2E_NODE ?= 1

.DEFAULT_GOAL := help
.PHONY: help setup tools node-tools node-prerequisites e2e-node base-image image demo lint format typecheck test test-unit e2e e2e-kind crds crds-check chart-lint bench bench-admission bench-guard clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## create .venv with modelshield and its dev tools (pinned by constraints.txt)

tools: ## build the control plane, kubectl, helm, cosign, registry and vegeta into ~/.cache/modelshield/tools
	e2e/tools/build-tools.sh

demo: setup ## run `modelshield test` on examples/: the compliant workload passes, the other is denied
	@echo "== compliant workload (expect exit 0)"
	$(BIN)/modelshield test examples/policies --facts examples/facts.yaml --now $(DEMO_NOW) --resources \
	  examples/workloads/namespace.yaml examples/workloads/model-artifacts.yaml examples/workloads/compliant.yaml
	@echo "== non-compliant workload (expect exit 1 and the violations)"
	$(BIN)/modelshield test examples/policies --facts examples/facts.yaml --now $(DEMO_NOW) --resources \
	  examples/workloads/namespace.yaml examples/workloads/model-artifacts.yaml examples/workloads/noncompliant.yaml; \
	  test $$? -eq 1

lint: setup ## ruff (lint and format check) and the import-layer contracts
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/lint-imports --no-cache

format: setup ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

typecheck: setup ## mypy --strict over everything
	$(BIN)/mypy

test: setup tools node-prerequisites ## every test: unit, integration, e2e on a local control plane, then the chart's image as pods on a local node (root)
	$(PYTHON) -m pytest --ignore=e2e/pods; status=$$?; \
	  echo "== the node tests (e2e/pods): the chart's image as pods on a local node"; \
	  MODELSHIELD_E2E_NODE=$(MODELSHIELD_E2E_NODE) $(PYTHON) -m pytest e2e/pods || status=1; \
	  exit $$status

test-unit: setup ## unit and integration tests only (no Kubernetes API server)
	$(PYTHON) -m pytest -m "not e2e"

e2e: setup tools ## e2e tests; KUBECONFIG_E2E=path runs them against that cluster instead
	$(PYTHON) -m pytest e2e $(if $(KUBECONFIG_E2E),--kubeconfig $(KUBECONFIG_E2E))

node-tools: ## build the e2e node's tools (kubelet, kube-scheduler, kube-proxy, kube-router) and install its Debian packages
	e2e/tools/build-node-tools.sh

node-prerequisites: ## as root: the node's tools and the image (for `make test`'s node tests); otherwise says why they skip
	@if [ "$(MODELSHIELD_E2E_NODE)" != 1 ]; then \
	  echo "node tests: not asked for (MODELSHIELD_E2E_NODE=$(MODELSHIELD_E2E_NODE)); they will skip"; \
	elif [ "$$(id -u)" != 0 ]; then \
	  echo "node tests: not root; they will skip (the local node needs root)"; \
	else \
	  e2e/tools/build-node-tools.sh && images/build-image.sh; \
	fi

e2e-node: setup tools node-tools image ## the tests only pods can show, on a local node (root; changes the host while it runs)
	MODELSHIELD_E2E_NODE=1 $(PYTHON) -m pytest e2e/pods

base-image: ## a Python 3.11 base image from Debian's packages (mmdebstrap; no Docker Hub needed)
	images/base-image.sh

image: ## build modelshield:dev with BuildKit (PYTHON_IMAGE=..., CA_BUNDLE=...; default base: base-image)
	images/build-image.sh $(IMAGE)

e2e-kind: setup tools node-tools ## kind v0.33 from its Go module, a node image made here, the chart, the e2e suite against it (root; holds the node lock)
	e2e/kind.sh

crds: setup ## regenerate crds/ and the chart's CRD templates from the models
	$(BIN)/modelshield crds generate

crds-check: setup ## fail when the committed CRDs are stale
	$(BIN)/modelshield crds check

chart-lint: setup tools ## helm lint and render the chart
	. $(TOOLS_ENV) && helm lint charts/modelshield

bench: setup ## run the benchmarks that need no cluster and print their figures
	$(PYTHON) -m bench.bench_engine

bench-admission: setup tools ## admission server alone (vegeta) and pod creates through kube-apiserver
	$(PYTHON) -m bench.bench_admission all

bench-guard: setup tools ## the inference guard's CPU per request vs. a bare proxy and nginx + auth_request (vegeta; apt-get install nginx-light for nginx)
	$(PYTHON) -m bench.bench_guard_cpu

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
