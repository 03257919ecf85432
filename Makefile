# Two commands: `make dev` (set up + start the platform locally) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(CURDIR)/.data
HOST ?= 127.0.0.1
PORT ?= 3000

export PLATFORM_DATA_DIR ?= $(DATA)
export DAGSTER_HOME ?= $(DATA)/dagster_home
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION ?= 1

CI_DATA ?= $(CURDIR)/.ci-data

.PHONY: install dev samples test check-samples ci bench clean

# Contracts (*.yaml) are read from the source folder at every load: editing one needs no reinstall.
$(STAMP): pyproject.toml $(shell find platform -name "*.py")
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Strict editable mode: a module missing from the packages list fails here as in the wheel.
	$(BIN)/python -m pip install --quiet -e ".[dev,deploy]" --config-settings editable_mode=strict
	touch $(STAMP)

install: $(STAMP)

# Copy the sample uploads into the raw folder (never overwriting what is there).
samples:
	mkdir -p $(DATA)/raw $(DAGSTER_HOME)
	cp -rn samples/raw/. $(DATA)/raw/

# The local instance (dagster.yaml in DAGSTER_HOME): run monitoring and retries, so that runs
# killed with the machine are found and finished after a restart (platform/instance.py).
dev: install samples
	$(BIN)/python -m data_platform.instance $(DAGSTER_HOME)
	$(BIN)/dagster dev -h $(HOST) -p $(PORT) -w workspace.yaml

test: install
	$(BIN)/python -m pytest

# The data side of CI: the sample uploads ingested into a fresh data folder by the real jobs, then
# every check of what was committed. A contract, cleaning rule or sample change that breaks data
# quality fails here (a file that fails its audits, or an ERROR check on a committed table).
check-samples: install
	rm -rf $(CI_DATA) && mkdir -p $(CI_DATA)/raw
	cp -r samples/raw/. $(CI_DATA)/raw/
	$(BIN)/python -m data_platform.instance $(CI_DATA)/dagster_home
	PLATFORM_DATA_DIR=$(CI_DATA) DAGSTER_HOME=$(CI_DATA)/dagster_home $(BIN)/data-platform materialize
	PLATFORM_DATA_DIR=$(CI_DATA) DAGSTER_HOME=$(CI_DATA)/dagster_home $(BIN)/data-platform check

# What CI runs (.ci/run and .github/workflows/ci.yml): the tests, then the samples' checks.
ci: test check-samples

# polars (the `bench` extra) is a peer in the benchmark; installed on first use.
bench: install
	$(BIN)/python -c "import polars" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet -e ".[bench]" --config-settings editable_mode=strict
	$(BIN)/python bench/clean_csv.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
