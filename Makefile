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

.PHONY: setup course book test test-fast lab clean bench gpu-check

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

# The executed course as an offline static site in $(RUN)/book/ (geolab.course.book: Sphinx + myst-nb), made
# from $(RUN)'s notebooks, report and the world card; runs the course first when $(RUN)/notebooks is missing.
# Its last line is the path of the site's index.html. Another run: make book RUN=runs/course-gpu
book: $(STAMP)
	@test -d $(RUN)/notebooks || $(MAKE) --no-print-directory course RUN=$(RUN)
	$(PY) -m geolab.course.book --run $(RUN) --out $(RUN)/book

# ruff and mypy first (fail fast with their findings; configuration in pyproject.toml), then unit and
# integration tests, then nbval over every notebook in its quick default parameters.
# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
test: $(STAMP)
	$(VENV)/bin/ruff check geolab
	$(VENV)/bin/mypy
	@$(PY) -m pytest tests notebooks $(NBVAL_FLAGS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5); treating as a failure" >&2; exit 1; fi; \
	exit $$rc

# ruff and mypy, then the tests without the notebooks (quicker while editing the library).
test-fast: $(STAMP)
	$(VENV)/bin/ruff check geolab
	$(VENV)/bin/mypy
	@$(PY) -m pytest tests $(PYTEST_ARGS); rc=$$?; [ $$rc -ne 5 ] || { echo "no tests collected" >&2; exit 1; }; exit $$rc

# JupyterLab on notebooks/ with the geolab kernel. As root (containers) Jupyter refuses to start
# without --allow-root, and there is no browser to open: the URL with its token is printed instead.
# Kernel traffic is CurveZMQ-encrypted where jupyter_server supports it (no "TCP without encryption"
# warning on every kernel start). Extra options: make lab LAB_ARGS="--port 9999 --ip 0.0.0.0".
LAB_UID ?= $(shell id -u)
LAB_ARGS ?=
LAB_ENCRYPT = $(shell $(PY) -c "import zmq; from jupyter_server.services.kernels.kernelmanager import MappingKernelManager as M; \
	print('--MappingKernelManager.transport_encryption=auto' if 'transport_encryption' in M.class_trait_names() and zmq.has('curve') else '')" 2>/dev/null)
LAB_CMD = $(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks --MappingKernelManager.default_kernel_name=$(KERNEL) \
	$(if $(filter 0,$(LAB_UID)),--allow-root --no-browser) $(LAB_ENCRYPT) $(LAB_ARGS)

lab: $(STAMP)
	@echo "make lab: JupyterLab on notebooks/ with the '$(KERNEL)' kernel. Open the http://...?token=... URL it prints below; Ctrl-C stops it."
	$(LAB_CMD)

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The one prepared GPU check (bench/gpu_check.py, about 8 min on one GPU): every stage's status and
# numbers in $OUT/gpu_check.json (OUT=DIR, default runs/gpu-check); exit 0 only if all are ok.
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py --out $${OUT:-runs/gpu-check}

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
