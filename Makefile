# llm-operator: the doors are `make demo`, `make test` and `make lint`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
# The local cluster's tools (kube-apiserver, etcd, kubectl, helm, grpcurl) are built once and cached here.
export LLMOP_CACHE ?= $(HOME)/.cache/llm-operator
export PYTHONPATH := $(CURDIR)/hack$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: help setup gen crds docs lint test unit integration e2e demo cluster-up cluster-down install-operator images kind-up bench bench-frontdoor bench-rollback bench-scale clean

help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

setup: ## Install everything a fresh machine needs (idempotent; seconds when warm).
	@bash hack/setup.sh

gen: ## Regenerate the gRPC stubs from runtime/proto.
	@$(PY) hack/gen_proto.py

crds: ## Regenerate the LLMDeployment CRD (crds/ and the chart's copy) from operator/llm_operator/spec.py.
	@$(PY) hack/gen_crd.py

docs: ## Regenerate docs/rbac.md and the settings table of docs/operator-settings.md from the code.
	@$(PY) hack/gen_docs.py

lint: setup ## ruff, mypy --strict, the import contracts and the dashboard linter.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy operator/llm_operator runtime/llm_runtime hack tests
	$(VENV)/bin/lint-imports
	$(PY) hack/tools/dashlint.py --strict charts/llm-operator/dashboards/*.json

test: setup ## Every test: unit, integration and e2e (starts the local cluster itself).
	$(PY) -m pytest -m "unit or integration or e2e" tests

unit: setup ## Unit tests only (no cluster).
	$(PY) -m pytest -m unit tests

integration: setup ## Integration tests (local cluster).
	$(PY) -m pytest -m integration tests

e2e: setup ## End-to-end tests (local cluster, runtime pods, SmolLM2).
	$(PY) -m pytest -m e2e tests

demo: setup ## The main job end to end on the local cluster.
	@bash hack/demo.sh

cluster-up: setup ## Start the local cluster (idempotent).
	$(PY) -m localcluster up

cluster-down: ## Stop the local cluster and remove everything it created.
	$(PY) -m localcluster down

install-operator: cluster-up ## Helm-install (or upgrade) the operator into the local cluster and wait for it.
	eval "$$($(PY) -m localcluster env)" && bash hack/install-operator.sh

images: ## Build both images (mmdebstrap base, buildah; layers cached) and print ref, ID, size, seconds.
	bash hack/imagebuild/build.sh build

kind-up: ## Real-cluster path: images, kind cluster, chart, example (`bash hack/kind-up.sh --localcluster` runs its steps on the local cluster's real node).
	bash hack/kind-up.sh

bench: setup ## Runtime benchmark: continuous batching vs a naive server.
	$(PY) hack/bench/runtime_bench.py

bench-frontdoor: setup ## Front door overhead: TTFT and tok/s direct vs through the proxy, same run.
	$(PY) hack/bench/frontdoor_bench.py --model default

bench-rollback: cluster-up ## Canary benchmark: time from a failing signal to rollback, per failure kind.
	$(PY) hack/bench/rollback_bench.py

bench-scale: cluster-up ## Fleet benchmark: API requests, CPU and memory of 200 and 1000 idle LLMDeployments.
	$(PY) hack/bench/scale_bench.py

clean: ## Remove the virtualenv and build outputs (not the tool cache).
	rm -rf $(VENV) build *.egg-info
