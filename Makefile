# The two commands of the README: `make setup` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test lint typecheck unit bench profile-quality stringlifier clean cri-stubs

setup:
	bash scripts/setup.sh

# Lint and type-check first (cheap), then the whole suite against the real parts.
test: lint typecheck
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check armorflow tests bench

typecheck:
	$(VENV)/bin/mypy -p armorflow

# The committed CRI modules (armorflow/agents/cri/api_pb2*.py*) from api.proto beside them.
cri-stubs:
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		armorflow/agents/cri/api.proto

bench:
	$(PY) bench/pipeline_throughput.py
	$(PY) bench/classifier.py

# Learned profiles against a second, different run of six real programs (root; installs
# nginx, redis-server... from Debian when missing). Not part of `test`.
profile-quality:
	$(PY) bench/profile_quality.py -v

# Optional side venv with stringlifier + torch (~1 GiB) for `bench/classifier.py`'s
# comparison with vArmor's classifier; not part of `setup`.
stringlifier:
	bash scripts/stringlifier-venv.sh

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
