# crosslink: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# The PostgreSQL suite runs against this database (a fresh schema per test).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
export TEST_DATABASE_URL

.PHONY: run test soak bench bench-scale lint fmt openapi build postgres deps deploy-check readme-check client-scenario browser-check fuzz

## Build everything and start the demo: service on SQLite + seeded Stages simulator.
run: deps
	$(CARGO) build --bins
	./scripts/dev-run.sh

## Every test: unit, store suite on SQLite and PostgreSQL, end to end.
## Half as many tests again as cores run at once: most of an end-to-end
## test's time is spent waiting on a service, so a core per test idles.
TEST_THREADS ?= $(shell echo $$(( $$(nproc) * 3 / 2 )))
test: deps postgres
	$(CARGO) build --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast --test-threads $(TEST_THREADS); \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi
	$(CARGO) test --workspace --doc

## The benchmarks, each figure beside a baseline measured in the same run
## (release build; SQLite and PostgreSQL; target/bench/results.md and .json).
bench: deps
	CARGO="$(CARGO)" ./scripts/bench.sh

## One PostgreSQL primary at scale (B15, B9): 1,000 dealers x 1,000 links seeded
## by SQL, a mixed load with one dealer's 50,000-edit burst and another's
## reconcile; per-operation p50/p99, the other dealers' job waits during the
## burst, database growth, memory (target/bench/scale.md and .json; ~6 min on 2 cores).
bench-scale: deps postgres
	CARGO="$(CARGO)" ./scripts/bench-scale.sh

## Long randomized runs of the convergence test on both backends: random
## seeds (each printed; CONVERGENCE_SEED=N replays one), SOAK_RUNS runs of
## SOAK_STEPS steps (100,000). `make test` runs 1,000 with a fixed seed.
soak: deps postgres
	$(CARGO) build --bins
	@for run in $$(seq 1 $${SOAK_RUNS:-1}); do \
		echo "soak run $$run"; \
		CONVERGENCE_SEED=random CONVERGENCE_STEPS=$${SOAK_STEPS:-100000} \
			$(CARGO) nextest run -p api --test sync --no-capture -E 'test(random_edits_on_both_sides)' || exit 1; \
	done

## fmt, clippy, and the dependency rule of the domain crate.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	./scripts/check-domain-deps.sh

fmt:
	$(CARGO) fmt --all

## Regenerate the committed OpenAPI document.
openapi:
	$(CARGO) run -q --bin crosslink -- openapi > openapi/openapi.json

## The files in deploy/ checked mechanically (they parse; probes, ports, settings
## and commands match the configuration), with the checker's self-test.
deploy-check:
	./scripts/check-deploy.sh

## The README against the code and against make run's world: its routes table
## and Layout checked, then its ```sh blocks run in order in one shell under bash
## and zsh (apt-get installs zsh when missing) against scripts/dev-run.sh on free
## ports; then a self-test that breaks it on purpose (READMECHECK_SELF_TEST=0 skips it).
readme-check: deps
	$(CARGO) build --bins
	./scripts/readme-check
	@if [ "$${READMECHECK_SELF_TEST:-1}" != 0 ]; then ./scripts/readme-check --self-test; fi

## A Python client generated from openapi/openapi.json (openapi-python-client,
## into target/client) drives a scenario against the service and stages-sim.
client-scenario: deps
	$(CARGO) build --bins
	./scripts/client-scenario/run.sh

## /docs in headless Chromium (Debian's chromium, apt-get installs it when missing)
## driven by Playwright: every operation of openapi/openapi.json listed, Authorize
## with a token, "Try it out" on GET /v1/connections rendering a 200; then a
## self-test that breaks the page on purpose (BROWSER_SELF_TEST=0 skips it).
browser-check: deps
	$(CARGO) build --bins
	./scripts/browser-check/run.sh

## schemathesis against the running service's /openapi.json, with stages-sim and
## adc-sim seeded (scripts/fuzz/seed.py; a seed step other than 2xx stops it):
## every operation, at least 2,000 cases, no 5xx but an upstream's 502/504 from an
## operation that calls one, answers match their schemas, errors problem+json; the
## cases and their 2xx/4xx/5xx per operation, failing when more than two Alarm.com
## operations never answered 2xx (scripts/fuzz/summary.py). On SQLite, then on PostgreSQL.
fuzz: deps postgres
	$(CARGO) build --bins
	./scripts/fuzz.sh sqlite
	./scripts/fuzz.sh postgres

## Make sure the local PostgreSQL answers (starts the cluster when it is stopped).
postgres:
	./scripts/ensure-postgres.sh

## Tools the build and the tests need (tool:Debian package): a C compiler for the
## bundled SQLite and libpq, curl for the demo and make fuzz, python3 and perl for
## the scripts and the build, and the sqlite3 and psql command lines the tests call
## (tests/alarm_webhooks.rs, tests/support). apt-get installs the missing ones.
deps:
	@missing=""; \
	for pair in cc:build-essential make:build-essential curl:curl python3:python3 perl:perl \
		sqlite3:sqlite3 psql:postgresql-client; do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		missing=$$(printf '%s\n' $$missing | sort -u | tr '\n' ' '); \
		echo "installing: $$missing"; \
		apt-get update -qq && apt-get install -y -qq $$missing; \
	fi
