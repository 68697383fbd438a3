# EmoStream: every command a developer needs. `make help` lists them.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/.cache/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help bootstrap protos check test unit integration up down status logs demo bench

help:
	@echo "make demo         set up, start the mesh, replay a crowd, print the summary"
	@echo "make test         set up, check generated code and lint, run all tests"
	@echo "make up / down    start / stop the mesh in the background (run/)"
	@echo "make status/logs  what runs where / where each process logs"
	@echo "make bench        measure ingest, fan-out and latency into docs/benchmarks.md"
	@echo "make protos       regenerate emostream/v1 and the descriptor set"

bootstrap:
	@deploy/bootstrap.sh

protos: bootstrap
	$(PY) protos/build.py

check: bootstrap
	$(PY) protos/build.py --check
	$(PY) -m deploy.envoy_config --check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy emostream ingest_svc aggregator publisher_svc subscriber_svc deploy bench

test: check
	$(PY) -m pytest -p no:cacheprovider

unit: bootstrap
	$(PY) -m pytest -p no:cacheprovider tests/unit

integration: bootstrap
	$(PY) -m pytest -p no:cacheprovider tests/integration

up: bootstrap
	$(PY) -m deploy.mesh up

down:
	@[ -x $(PY) ] && $(PY) -m deploy.mesh down || true

status: bootstrap
	$(PY) -m deploy.mesh status

logs: bootstrap
	$(PY) -m deploy.mesh logs

demo: bootstrap
	$(PY) -m deploy.demo $(ARGS)

bench: bootstrap
	$(PY) -m bench $(ARGS)
