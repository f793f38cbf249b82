#!/usr/bin/env bash
# Wheels for a Python 3.12 GPU host that has torch, jax, optax, numpy, pandas, pyarrow, pyyaml,
# rich, scipy, matplotlib, jinja2 and tabulate but no internet, no pydantic and no Keras (this
# project's lent H100/H200 image): ffbench itself plus what it lacks, into .whl/ (git-ignored).
# There:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   KERAS_BACKEND=jax python3 benchmarks/canonical.py --pack 8
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w .whl .
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
  keras==3.15.1 namex==0.1.0 optree==0.20.0
du -sh .whl && ls .whl
