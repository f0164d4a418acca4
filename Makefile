# Two commands set everything up: `make demo` and `make test` (each creates .venv on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-faults lint prometheus-rules bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,oracle]'
	touch $(STAMP)

demo: $(STAMP)  ## the whole pipeline on the embedded broker, alerts printed as they arrive
	$(BIN)/churnguard demo

# pytest in 2 processes (pytest-xdist), each test file whole in one of them with its own
# broker: the tests mostly wait on brokers and subprocesses. The fault tests stay serial.
test: $(STAMP) lint prometheus-rules  ## lint, types, alert rules, unit and integration tests
	$(BIN)/pytest -q -m "not faults" -n 2 --dist loadfile

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

bench: $(STAMP)  ## rules and scoring cost; RFM sketch merge memory; throughput vs baselines
	$(BIN)/pip install --quiet -e '.[dev,oracle,bench]'  # Quix Streams, the yardstick of stage (q)
	$(BIN)/python -m bench.rules_cost
	$(BIN)/python -m bench.sketch_merge
	$(BIN)/python -m bench.throughput

clean:
	rm -rf $(VENV) data *.egg-info .mypy_cache .ruff_cache .pytest_cache
