# Every target builds .venv itself; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test bench lint clean constraints

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tokengate needs Python 3.11 or newer"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]' || { \
		$(BIN)/python -c 'import sys; sys.exit(sys.version_info >= (3, 15))' || \
		echo "the likely cause: google-re2 has no wheel for this Python yet, and building it needs" \
			"RE2's and Abseil's headers; use Python 3.11 to 3.14 (rm -rf $(VENV); make PYTHON=python3.14 ...)"; \
		exit 1; }
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/tokengate run

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Newest releases of every dependency into constraints.txt (its comment lines kept).
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install -q --upgrade pip
	.venv-constraints/bin/python -m pip install -q -e '.[dev]'
	{ grep '^#' constraints.txt; .venv-constraints/bin/python -m pip freeze --exclude-editable; } \
		> constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) .venv-constraints build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
