# Slipway's front door. `make demo` and `make test` are the two set-up commands of the README.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export KUBECONFIG_LOCAL := $(CURDIR)/.cluster/kubeconfig
PYTEST := $(BIN)/pytest
N ?= 200


.PHONY: help install tools lint fmt crds unit integration e2e test demo cluster-up cluster-down cluster-env \
	bench chaos e2e-kind clean dist dashboard-png

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip>=23'
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,storage]'
	# moto (S3 for the fetch tests) needs a python-dateutil the kubernetes client cannot share
	$(BIN)/python tests/fetch_servers.py install-moto >/dev/null
	touch $@

install: $(STAMP) ## create .venv and install Slipway with its dev tools (pinned by constraints.txt)

lint: install ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy --strict operator/slipway bench

fmt: install ## format the code
	$(BIN)/ruff check --fix operator tests bench
	$(BIN)/ruff format operator tests bench

crds: install ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(BIN)/python -m slipway.crd

tools: ## build (once, cached in ~/.cache/slipway) the control plane, helm, glua from Go modules
	bash hack/build-tools.sh >/dev/null

unit: install tools ## unit tests (no cluster; glua runs the Argo CD health check)
	$(PYTEST) -m unit -q

cluster-up: ## build (once) and start the local control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK) and a real node
	bash hack/cluster.sh up

cluster-down: ## stop every process the cluster and the demo started, and remove .cluster/
	bash hack/cluster.sh down

cluster-env: ## print the line that points this shell at the local cluster
	@bash hack/cluster.sh env

integration: install cluster-up ## integration tests against the local cluster
	$(PYTEST) -m integration -q

e2e: install cluster-up ## end-to-end tests: the operator process against the local cluster
	$(PYTEST) -m e2e -q

test: install lint tools ## everything: lint, unit, integration and e2e tests on the local cluster and its real node
	$(PYTEST) -m unit -q
	bash hack/cluster.sh up
	# the 25 slowest printed: where the suite's time goes (the real-node scenarios, mostly)
	$(PYTEST) -m 'integration or e2e' -q --durations=25
	# the reliability suite (short form) on its own: it restarts etcd and the apiserver
	$(PYTEST) -m chaos -q
	# last: stop the cluster and check that the host is as it was before the real node started
	SLIPWAY_HOSTCLEAN=1 $(PYTEST) -m hostclean -q

demo: install cluster-up ## start the local cluster, run Slipway, apply a sample ModelDeployment and show a rollout
	bash hack/demo.sh

bench: install cluster-up ## benchmarks against the floor (N=200 by default): bench/results/<date>.json
	$(BIN)/python -m bench.run --n $(N)

chaos: install cluster-up ## the reliability suite, long form
	SLIPWAY_CHAOS=long $(PYTEST) -m chaos -q

dist: install tools ## wheel, sdist, the packaged chart with its repo index.yaml, the dashboard and SHA256SUMS, in dist/
	bash hack/dist.sh dist

dashboard-png: install cluster-up ## draw docs/dashboard-canary.png: the dashboard's queries during a real canary
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,storage,dashboard-png]'
	$(BIN)/python hack/dashboard-png.py

e2e-kind: ## for users with Docker and kind: build the image, install the chart, run the e2e suite
	bash hack/e2e-kind.sh

clean: cluster-down ## remove .venv, dist/ and caches (the built binaries in ~/.cache/slipway stay)
	rm -rf $(VENV) dist .pytest_cache .mypy_cache .ruff_cache
