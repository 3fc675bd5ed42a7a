# geolab: the two commands of the README are `make course` and `make test`.
# Both create .venv when it is missing, and reinstall when pyproject.toml changed since.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.geolab-installed
KERNEL := geolab
PYTHON_FOR_VENV ?= $(shell command -v python3.11 || command -v python3)
PROFILE ?= cpu
RUN ?= runs/course
# OpenMP threads sleep instead of spinning while they wait (see conftest.py).
export OMP_WAIT_POLICY ?= PASSIVE
NBVAL_FLAGS := --nbval-lax --nbval-kernel-name $(KERNEL) --nbval-sanitize-with notebooks/nbval_sanitize.cfg

.PHONY: setup course test test-fast lab clean bench gpu-check

setup: $(STAMP)

# The stamp is older than pyproject.toml after an edit, so make re-runs the install.
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON_FOR_VENV)"; $(PYTHON_FOR_VENV) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[lab,test]'
	# A kernel inside the venv, so papermill and nbval never use whatever python3 is first on PATH.
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (geolab)" >/dev/null
	@touch $(STAMP)

# The whole course on the embedded geoworld simulation, on the CPU.
course: $(STAMP)
	$(VENV)/bin/geolab course run --profile $(PROFILE) --out $(RUN)

# Unit and integration tests, then nbval over every notebook in its quick default parameters.
# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
test: $(STAMP)
	@$(PY) -m pytest tests notebooks $(NBVAL_FLAGS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5); treating as a failure" >&2; exit 1; fi; \
	exit $$rc

# The tests without the notebooks (quicker while editing the library).
test-fast: $(STAMP)
	@$(PY) -m pytest tests $(PYTEST_ARGS); rc=$$?; [ $$rc -ne 5 ] || { echo "no tests collected" >&2; exit 1; }; exit $$rc

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The one prepared GPU check (bench/gpu_check.py, about 8 min on one GPU): every stage's status and
# numbers in $OUT/gpu_check.json (OUT=DIR, default runs/gpu-check); exit 0 only if all are ok.
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py --out $${OUT:-runs/gpu-check}

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
