#!/usr/bin/env bash
# Called by .ci/run on a clean clone. Creates a fresh virtualenv, installs exactly as the
# README says (torch==2.13.0 first, so pip reuses the CPU wheel), then runs the README's
# test command. Exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${BENCH_CI_VENV:-$(mktemp -d -t bench-ci-venv-XXXXXX)}"
echo "== fresh virtualenv: $VENV"
python3 -m venv "$VENV"
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

echo "== chromium for the browser tests (Debian's package; Playwright never downloads one)"
command -v chromium || (export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q chromium)

echo "== tests (README: Test)"
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
start=$(date +%s)
set +e
pytest
status=$?
set -e
echo "tests took $(( $(date +%s) - start )) s (exit $status)"
exit $status
