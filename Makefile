# make demo: a real sweep on the built-in data (SCN vs CE, confirmed on 3 seeds; ends with its report).
# make test: the test suite.
# Both create .venv when it is missing and install with the pinned constraints.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sweeplab run sweeps/fer_noisy.yaml --profile demo

test: $(STAMP)
	$(BIN)/python -m pytest tests -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not integration"

clean:
	rm -rf sweeplab_results mlflow.db mlartifacts
