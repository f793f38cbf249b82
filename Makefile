# make run    set up .venv and run the quickstart suite, then print its result table
# make test   set up .venv, run ruff check and the whole test suite (what CI runs)
# make setup  create .venv and install ffbench with every backend (idempotent; quick when done)
#             EXTRAS=torch,test installs PyTorch alone

PYTHON ?= python3.11
VENV   ?= .venv
EXTRAS ?= all,test
# pytest-xdist workers for `make test` (each peaks near 7 GB with every framework loaded; the
# Ray tests share one worker, so one Ray cluster runs at a time). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
comma  := ,
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ffbench-installed-$(subst $(comma),-,$(EXTRAS))

# MNIST: this project's machines keep a verified copy in ../shared/data; elsewhere ffbench
# downloads it into ~/.cache/ffbench (checksums verified either way).
export FFBENCH_DATA_DIR ?= $(wildcard $(abspath ../shared/data))
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED ?= 1

.PHONY: setup run test smoke clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=python3.12 or similar)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

run: setup
	$(BIN)/ffbench run suites/quickstart.yaml

smoke: setup
	$(BIN)/ffbench run suites/smoke.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
