# Every target builds .venv itself, so a fresh clone needs nothing but python3 and make.
VENV   ?= .venv
PY     := $(VENV)/bin/python
VIGIE  := $(VENV)/bin/vigie
STAMP  := $(VENV)/.installed-stamp
DEMO   := .vigie-demo

.PHONY: demo test bench lint clean reliability audit lock

# Dependencies come from the hashed lock file; the project itself is installed without them.
$(STAMP): pyproject.toml requirements-dev.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	VIGIE_STORE_URL=sqlite:///$(DEMO)/vigie.db $(VIGIE) triage \
	  --input examples/demo-elastic.ndjson --input examples/demo-wazuh.json \
	  --output $(DEMO)/incidents.jsonl
	VIGIE_STORE_URL=sqlite:///$(DEMO)/vigie.db $(VIGIE) approvals list --status pending

test: $(STAMP)
	$(PY) -m pytest

reliability: $(STAMP)
	$(PY) -m pytest tests/reliability

bench: $(STAMP)
	$(PY) benchmarks/ait_ads_bench.py
	$(PY) benchmarks/tuning_bench.py
	$(PY) benchmarks/scale_bench.py 634000
	$(PY) benchmarks/scale_bench.py 634000 unique
	$(PY) benchmarks/scale_bench.py 634000 distinct
	$(PY) benchmarks/scale_bench.py 634000 array
	$(PY) benchmarks/scale_bench.py 634000 pretty
	$(PY) benchmarks/scale_bench.py 100000 hosts
	$(PY) benchmarks/scale_bench.py 634000 flood
	$(PY) benchmarks/scale_bench.py 634000 wazuh
	$(PY) benchmarks/approvals_bench.py 1000
	$(PY) benchmarks/incident_list_bench.py
	$(PY) benchmarks/llm_bench.py
	$(PY) benchmarks/sweep_bench.py 20000
	$(PY) benchmarks/sweep_bench.py 100000 no-pit 5000
	$(PY) benchmarks/webhook_bench.py 15
	$(PY) benchmarks/webhook_prod_bench.py 15 2

lint: $(STAMP)
	$(VENV)/bin/ruff check agent connectors tests benchmarks examples scripts
	$(VENV)/bin/ruff format --check agent connectors tests benchmarks examples scripts
	$(VENV)/bin/mypy

# Known vulnerabilities in the locked dependencies (pip-audit; needs the PyPI JSON API).
audit: $(STAMP)
	$(PY) scripts/audit.py requirements.lock requirements-dev.lock

# Re-pin every dependency after a change to pyproject.toml (needs a package index).
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header --quiet
LOCK_HEAD  = \# Pinned and hashed for Python 3.11 on Linux x86_64; regenerate with `make lock` (uv pip compile).
lock: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(UV_COMPILE) -o requirements.lock && sed -i '1i $(LOCK_HEAD)' requirements.lock
	$(UV_COMPILE) --extra dev -o requirements-dev.lock && sed -i '1i $(LOCK_HEAD)' requirements-dev.lock

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache
