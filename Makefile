# The two quick-start commands: `make demo` and `make test`. Both create the
# virtual environment .venv (pinned versions from setup.py) when it is missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install golden clean

$(STAMP): setup.py pipeline/_tfrecord.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) run_pipeline.py

test: $(STAMP)
	$(PY) -m pytest -q tests

# Regenerates tests/golden/*.json with the real estimator head
# (TF 2.15 in a separate venv; not needed to run the tests).
GOLDEN_VENV := .golden-venv
golden:
	test -x $(GOLDEN_VENV)/bin/python || $(PYTHON) -m venv $(GOLDEN_VENV)
	$(GOLDEN_VENV)/bin/pip install --quiet tensorflow-cpu==2.15.1 tensorflow-estimator==2.15.0 'numpy<2' 'pyarrow<16' 'pandas<2.3'
	$(GOLDEN_VENV)/bin/python tests/golden/make_golden.py
	$(GOLDEN_VENV)/bin/python tests/golden/make_golden_slices.py

clean:
	rm -rf demo_output .pytest_cache

# The benchmark (benchmarks/run_bench.py): pipeline vs a numpy reference vs
# TFMA on generated data in bench_data/; results in bench_output/results.md
# and results.json. Then benchmarks/slices_bench.py: slices, two models and
# confidence intervals (issues 9 and 10), results in bench_output/slices.md
# and slices.json. `make bench BENCH_ARGS=--quick` is a smoke run; other
# flags: --repeats N, --skip-tfma, --timeout S. Uses the existing .venv
# (installs it only when missing).
BENCH_ARGS ?=
.PHONY: bench
bench:
	test -x $(PY) || $(MAKE) install
	$(PY) benchmarks/run_bench.py $(BENCH_ARGS)
	$(PY) benchmarks/slices_bench.py $(BENCH_ARGS)
