# Two commands do everything on a fresh machine with Python 3.11+:
#   make run    set up .venv when missing, then run the product on its embedded defaults
#   make test   set up .venv when missing, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench fuzz schemas asyncapi docs clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/ticketing serve

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/readmodels.py --sizes 10000,100000,1000000
	$(BIN)/python benchmarks/audit.py
	$(BIN)/python benchmarks/cluster.py

fuzz: $(BIN)/.installed
	TICKETING_FUZZ_EXAMPLES=10000 $(BIN)/python -m pytest -q -s --timeout=1800 tests/fuzz

schemas: $(BIN)/.installed
	$(BIN)/python -m contracts.generate

asyncapi: $(BIN)/.installed
	$(BIN)/ticketing asyncapi > contracts/asyncapi.json

docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "the documentation site is in site/ (open site/index.html)"

clean:
	rm -rf $(VENV) var site test-artifacts
