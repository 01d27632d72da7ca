# The two commands of the README: `make setup` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test lint typecheck unit bench stringlifier clean

setup:
	bash scripts/setup.sh

# Lint and type-check first (cheap), then the whole suite against the real parts.
test: lint typecheck
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check armorflow pipeline agents operator tests bench

# mypy does not follow setuptools' package-dir mapping, so it checks a tree of symlinks
# laid out as the installed package is (armorflow/ with pipeline/, agents/, operator/).
typecheck:
	@rm -rf build/typecheck && mkdir -p build/typecheck/armorflow
	@for f in armorflow/*; do ln -s "$(CURDIR)/$$f" build/typecheck/armorflow/; done
	@for d in pipeline agents operator; do ln -s "$(CURDIR)/$$d" build/typecheck/armorflow/$$d; done
	cd build/typecheck && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p armorflow

bench:
	$(PY) bench/pipeline_throughput.py
	$(PY) bench/classifier.py

# Optional side venv with stringlifier + torch (~1 GiB) for `bench/classifier.py`'s
# comparison with vArmor's classifier; not part of `setup`.
stringlifier:
	bash scripts/stringlifier-venv.sh

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
