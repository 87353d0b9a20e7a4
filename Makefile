# aim-controller: everything a developer or CI runs goes through here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE_DIR ?= _out/cluster
KUBECONFIG_LOCAL := $(STATE_DIR)/kubeconfig
OPERATOR_NAMESPACE ?= aim-system
IMG ?= aim-controller:dev
PYTEST_ARGS ?=

help: ## Show the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-14s %s\n",$$1,$$2}'

# Dependencies come from the hashed lock (the versions CI and the image use); the
# project itself is installed on top, without resolving anything again.
$(VENV)/.stamp: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q --require-hashes -r requirements-dev.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.stamp ## Create the Python virtualenv with all dependencies

# What the image installs (requirements.lock, no dev tools): the benchmarks run the
# operator from here so its RSS is the shipped one (the dev venv's rich, which structlog
# loads when installed, alone adds ~3 MB).
RUNTIME_VENV := .venv-runtime
$(RUNTIME_VENV)/.stamp: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install -q --upgrade pip
	$(RUNTIME_VENV)/bin/pip install -q --require-hashes -r requirements.lock
	$(RUNTIME_VENV)/bin/pip install -q --no-deps -e .
	touch $@

runtime-venv: $(RUNTIME_VENV)/.stamp ## The runtime-only virtualenv (the image's dependencies) the benchmarks run the operator from

binaries: ## Build (or reuse) the pinned kube-apiserver, etcd, kcm, scheduler, kubectl, kwok, helm, metrics-server
	@bash hack/build-binaries.sh

manifests: venv ## Regenerate the CRD YAML (and the catalog manifest) from the pydantic models
	$(PY) -m aim_controller.api.crdgen manifests/crd
	$(PY) -m aim_controller.recipes.catalog_manifest manifests/catalog/recipes.yaml
	$(PY) hack/sync_chart.py

chart: venv ## Regenerate the Helm chart's CRDs, RBAC rules, flags and catalog from manifests/
	$(PY) hack/sync_chart.py

lint: venv ## ruff, mypy --strict, the import-layer contracts and hadolint
	$(VENV)/bin/ruff check aim_controller tests hack bench
	$(VENV)/bin/mypy aim_controller
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

lock: venv ## Re-resolve the hashed lock files from pyproject.toml (runtime: the image; dev: CI)
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \
	  --quiet --output-file requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 \
	  --generate-hashes --quiet --output-file requirements-dev.lock

prometheus: ## Install (or find) prometheus and promtool (Debian's prometheus package)
	@bash hack/install-prometheus.sh

linters: ## Build (or reuse) kubeconform and checkov, pinned and cached by version
	@bash hack/install-linters.sh

# Needs a kube-apiserver (kubeconform's schemas come from its OpenAPI), so it is not part
# of `make lint`; `make test` runs the same test.
lint-manifests: venv binaries linters ## kubeconform (strict) and checkov over kustomize, the chart and the operator's children
	$(VENV)/bin/pytest -p no:cacheprovider tests/integration/test_manifest_lint.py $(PYTEST_ARGS)

test: venv binaries prometheus lint linters ## Run every test (unit, property, and on the real local control plane)
	AIM_REQUIRE_PROMETHEUS=1 $(VENV)/bin/pytest $(PYTEST_ARGS) tests

unit: venv ## Only the fast pure tests
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

up: venv binaries ## Start the local control plane with simulated AMD GPU nodes (kwok) and metrics-server
	$(PY) hack/localcluster.py up --metrics --state-dir $(STATE_DIR)

down: ## Stop the local control plane
	-$(PY) hack/localcluster.py down --state-dir $(STATE_DIR)

install: ## Install the CRDs and the built-in recipe catalog into the local cluster
	KUBECTL="$(KUBECTL)" OPERATOR_NAMESPACE=$(OPERATOR_NAMESPACE) bash hack/apply-manifests.sh install

KUBECTL = $$(bash hack/build-binaries.sh)/kubectl --kubeconfig $(KUBECONFIG_LOCAL)

samples: ## Apply the sample endpoints from the spec
	$(KUBECTL) create namespace aim-engine --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) apply -f manifests/samples

run: venv ## Run the operator in the foreground against the local cluster
	$(VENV)/bin/aim-controller --kubeconfig $(KUBECONFIG_LOCAL) --log-format console \
	  --operator-namespace $(OPERATOR_NAMESPACE)

demo: up install samples run ## Local simulated AMD GPU cluster + CRDs + samples + the operator

bench: venv runtime-venv binaries ## Scale benchmark (N=100, 300, 1000) then the big cluster (bench-big): prints both tables; _out/bench/results.json, big-cluster.json
	$(PY) bench/run.py $(BENCH_ARGS)

bench-big: venv runtime-venv binaries ## Big-cluster scenario alone (2,000 nodes, 30,000 pods not ours, N=1000): _out/bench/big-cluster.json
	$(PY) bench/run.py --big-cluster $(BENCH_BIG_ARGS)

chaos: venv runtime-venv binaries ## Fault scenarios with pass/fail verdicts
	$(PY) bench/chaos.py $(CHAOS_ARGS)

docker-build: ## Build the operator image (needs a Docker engine)
	docker build -t $(IMG) .

# make deploy: the chart on a kind cluster (created if missing), with the image built
# here; DRY_RUN=1 prints the commands instead. helm: the pinned build (HELM=helm for yours).
KIND_CLUSTER ?= aim
HELM ?= $$(bash hack/build-binaries.sh helm)
DEPLOY_ENV = DRY_RUN=$(DRY_RUN) IMG=$(IMG) KIND_CLUSTER=$(KIND_CLUSTER) HELM="$(HELM)"

deploy: ## Build the image and install the chart on kind (cluster created if missing); DRY_RUN=1 prints the commands
	@$(DEPLOY_ENV) bash hack/deploy-kind.sh deploy

undeploy: ## helm uninstall the operator from the kind cluster (CRDs stay)
	@$(DEPLOY_ENV) bash hack/deploy-kind.sh undeploy

deploy-kustomize: ## kubectl apply -k manifests/default to the current kube context (CRDs first)
	bash hack/apply-manifests.sh deploy

clean: down ## Remove local state (not the cached binaries)
	rm -rf _out

.PHONY: help venv runtime-venv binaries prometheus manifests lint linters lint-manifests test unit up down install samples run demo bench bench-big chaos docker-build chart deploy undeploy deploy-kustomize clean
