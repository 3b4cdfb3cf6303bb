# Every target builds .venv itself, so a fresh clone needs nothing but python3 and make.
VENV   ?= .venv
PY     := $(VENV)/bin/python
VIGIE  := $(VENV)/bin/vigie
STAMP  := $(VENV)/.installed-stamp
DEMO   := .vigie-demo

.PHONY: demo test bench lint clean reliability

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
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
	$(PY) benchmarks/approvals_bench.py 1000
	$(PY) benchmarks/llm_bench.py
	$(PY) benchmarks/sweep_bench.py 20000
	$(PY) benchmarks/webhook_bench.py 15

lint: $(STAMP)
	$(VENV)/bin/ruff check agent connectors tests benchmarks examples
	$(VENV)/bin/ruff format --check agent connectors tests benchmarks examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache
