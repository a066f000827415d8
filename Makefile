# Two entry points on a fresh machine:  `make demo` (install + whole pipeline on the embedded
# demo catalog) and `make test` (install + test suite). Both use the system python3 (3.11).
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
PREFECT_API ?= http://127.0.0.1:4200/api

.PHONY: install demo test lint ui-mlflow ui-prefect serve-deployment team-stack clean

# The locked install is ~6.9 GB in $(VENV) (PyTorch's CUDA build and its nvidia-* wheels): stop early
# with a clear message instead of pip's "No space left on device" halfway through.
MIN_FREE_GIB ?= 7

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c "import os, shutil, sys; d = '$(dir $(abspath $(VENV)))'; d = d if os.path.isdir(d) else '.'; \
	free = shutil.disk_usage(d).free / 2**30; \
	sys.exit(f'make install: {free:.1f} GiB free on the disk of {d}, the locked install needs about \
	$(MIN_FREE_GIB) GiB in $(VENV) (PyTorch CUDA build). Free some space, or make VENV=/path/on/a/bigger/disk \
	(MIN_FREE_GIB=0 skips this check).') if free < $(MIN_FREE_GIB) else None"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	$(BIN)/cliper summary   # the run on one screen: test metric, views, fusions, files to open

test: install
	./.ci/system-deps
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check cliper tasks flows teamstack tests benchmarks

# Long-running helpers (each blocks; open a second terminal for the next one).
ui-mlflow: install      ## MLflow UI on http://127.0.0.1:5000 (runs, metrics, registered models)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

ui-prefect: install     ## Prefect server + UI on http://127.0.0.1:4200 (its data in .prefect/, not ~/.prefect)
	PREFECT_HOME=$(CURDIR)/.prefect $(BIN)/prefect server start --host 127.0.0.1 --port 4200

serve-deployment: install   ## the scheduled `cliper-pipeline` deployment (needs ui-prefect running)
	PATH=$(CURDIR)/$(BIN):$$PATH PREFECT_API_URL=$(PREFECT_API) $(BIN)/python -m flows.serve

team-stack: install     ## local PostgreSQL + S3 + MLflow + Prefect servers (README: Team setup); Ctrl-C stops
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m teamstack up

clean:
	rm -rf data models reports .cache mlflow.db mlartifacts
