#!/usr/bin/env bash
# README quick start, command 2: set up and run the tests. CI runs exactly this (ci/run.sh).
# A virtualenv (.venv, or $BENCH_VENV; created when missing), the README's install, then the
# lint step and pytest on every core; arguments go to pytest (bash ci/test.sh -m "not slow" for the fast loop).
# Exit status: pytest's, or 1 when only the lint step failed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${BENCH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
python -m pip install -q --upgrade pip setuptools wheel

echo "== install (README: Install)"
start=$(date +%s)
pip install torch==2.13.0
pip install -e ".[test]"
echo "install took $(( $(date +%s) - start )) s"
python -c "import torch; print('torch', torch.__version__)"
bench --version

echo "== lint (README: Test)"
lint=0
ruff check . || lint=1
# ruff checks syntax against target-version py310; vermin checks the stdlib too (tomllib, datetime.UTC...).
# `long`: vermin reads tensor.long() as Python 2's builtin.
vermin --quiet --no-tips --violations --eval-annotations --exclude long -t=3.10- \
    bench_core plugins tests benchmarks || lint=1
[ "$lint" = 0 ] || echo "lint FAILED (the tests run anyway)"

echo "== tests (README: Test)"
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
# Byte-code caches on: with PYTHONDONTWRITEBYTECODE set (some CI images set it), every worker and
# every `bench` process the tests start compiles the tree again, and pytest rewrites each test
# module's asserts again (collection 20 s instead of 9 s on the 2-core machine, docs/testing.md).
unset PYTHONDONTWRITEBYTECODE
# On every core (pytest-xdist, docs/testing.md): one worker per core, each test module on one
# worker (its module fixtures are built once; every Ray test is in one module); tests/conftest.py
# puts torch on one thread in each worker. BENCH_TEST_WORKERS=0: one process.
workers="${BENCH_TEST_WORKERS:-auto}"
xdist=(-n "$workers" --dist loadfile)
[ "$workers" != 0 ] || xdist=()
start=$(date +%s)
set +e
pytest "${xdist[@]}" "$@"
status=$?
set -e
echo "tests took $(( $(date +%s) - start )) s (exit $status)"
if [ "$status" = 0 ] && [ "$lint" != 0 ]; then
    echo "exit 1: the tests passed, the lint step failed (above)"
    status=1
fi
exit "$status"
