# sbmlhybrid: `make demo` fits the bundled CHO problem, `make test` runs the test suite.
# Both create .venv on first use (AMICI is built from source: ~3-5 min) and are idempotent.

PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := libhdf5-dev libopenmpi-dev openmpi-bin cmake g++ swig
# pytest workers are not used: AMICI compiles and simulations already load the 2 cores.
PYTEST_ARGS ?= -m "not slow"

.PHONY: demo test lint sysdeps venv benchmarks clean-cache notebooks

venv: $(STAMP)

# AMICI must find HDF5 headers at *build* time, else its solver cannot be pickled and
# pyPESTO's process/MPI engines fail; Open MPI is needed for the MPI engine test.
sysdeps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing (see README)"; fi; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools
	# the CPU build of torch, before anything that depends on torch (no multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,mpi]"
	$(BIN)/python -c "import amici.sim.sundials as a; assert a.hdf5_enabled, 'AMICI built without HDF5: install libhdf5-dev, then rm -rf .venv and rerun'"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sbmlhybrid fit petab_problems/cho_fedbatch/problem.yaml --starts 4 --seed 1 \
	  --output results/cho_fedbatch
	$(BIN)/sbmlhybrid simulate petab_problems/cho_fedbatch/problem_test.yaml \
	  --parameters results/cho_fedbatch/best_parameters.tsv \
	  --output results/cho_fedbatch/heldout_simulation.tsv
	@echo "demo done: see results/cho_fedbatch/*.png"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks petab_problems notebooks/execute_all.py

test: $(STAMP) lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

benchmarks: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean-cache: $(STAMP)
	$(BIN)/sbmlhybrid cache --clear

# Re-execute every notebook in place, so the committed notebooks show their outputs and plots.
notebooks: $(STAMP)
	$(BIN)/python notebooks/execute_all.py
