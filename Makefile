# Two commands set everything up: `make demo` and `make test` (each creates .venv on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

COMPILED := build/compiled
# what the compiled build is made of (every file of the packages: bench/compiled.py checks the
# same): a change to any of it rebuilds build/compiled
CORE_SOURCES := setup.py pyproject.toml $(shell find schemas streams rules agents -type f -not -path '*/__pycache__/*')
# run again on the compiled core (make test-compiled): the pure core's tests, and the worker
# end to end on a broker
COMPILED_TESTS := tests/test_engine.py tests/test_engine_golden.py tests/test_engine_texts.py \
	tests/test_state.py tests/test_features.py tests/test_scoring.py \
	tests/test_scoring_equivalence.py tests/test_sketch.py tests/test_deadlines.py \
	tests/test_batch.py tests/test_rules_testing.py tests/test_state_cache.py \
	tests/test_history.py tests/test_backtest_split.py tests/test_rule_params.py \
	tests/test_hostile_values.py tests/test_hostile_rule_packs.py tests/test_rules_loader.py \
	tests/test_engine_outputs_valid.py \
	tests/test_no_cycles.py tests/test_pipeline_integration.py tests/test_backlog_integration.py

.PHONY: demo test test-compiled test-faults lint prometheus-rules compiled bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,oracle]'
	touch $(STAMP)

demo: $(STAMP)  ## the whole pipeline on the embedded broker, alerts printed as they arrive
	$(BIN)/churnguard demo

# pytest in 2 processes (pytest-xdist), each test file whole in one of them with its own
# broker: the tests mostly wait on brokers and subprocesses. The fault tests stay serial.
test: $(STAMP) lint prometheus-rules test-compiled  ## lint, types, alert rules, unit and integration tests
	$(BIN)/pytest -q -m "not faults" -n 2 --dist loadfile

compiled: $(COMPILED)/.built  ## the image's wheel (core compiled by mypyc: setup.py) unpacked in build/compiled

$(COMPILED)/.built: $(STAMP) $(CORE_SOURCES)
	rm -rf $(COMPILED) build/wheel build/lib.* build/bdist.*
	CHURNGUARD_COMPILE=1 $(BIN)/pip wheel --quiet --no-build-isolation --no-deps -w build/wheel .
	$(BIN)/python -m zipfile -e build/wheel/churnguard-*.whl $(COMPILED)
	touch $@

# build/compiled first on the import path; --import-mode=append keeps pytest from putting the
# repository before it (tests/conftest.py refuses to run on Python modules)
test-compiled: compiled  ## the core's tests and the worker end to end, on the compiled core
	CHURNGUARD_TEST_COMPILED=1 PYTHONPATH=$(COMPILED) $(BIN)/pytest -q --import-mode=append \
		-n 2 --dist loadfile $(COMPILED_TESTS)

test-faults: $(STAMP)  ## the slow scale-out and fault tests (docs/operations.md); .ci/run runs both
	$(BIN)/pytest -q -rxs -m faults

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

prometheus-rules:  ## the SRE alert rules: syntax, then their unit tests (Debian package prometheus)
	@command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus (.ci/run installs it)"; exit 1; }
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml

bench: $(STAMP) compiled  ## rules and scoring cost; RFM sketch merge memory; throughput vs baselines
	$(BIN)/pip install --quiet -e '.[dev,oracle,bench]'  # Quix Streams, the yardstick of stage (q)
	$(BIN)/python -m bench.compiled rules_cost
	$(BIN)/python -m bench.sketch_merge
	$(BIN)/python -m bench.compiled throughput

clean:
	rm -rf $(VENV) data build *.egg-info .mypy_cache .ruff_cache .pytest_cache
