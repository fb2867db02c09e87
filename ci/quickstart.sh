#!/usr/bin/env bash
# README quick start, command 1: set up and run the main job.
# A virtualenv (.venv, or $BENCH_VENV; created when missing), PyTorch's CPU wheel first so pip
# reuses it instead of resolving a multi-GB CUDA build, then this package; then `bench run`
# (every built-in method on the embedded synthetic scene, no download) and its leaderboard.
# Results go to ./bench-results; a second run skips the cells already finished.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${BENCH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
python -m pip install -q --upgrade pip setuptools wheel
pip install torch==2.13.0
pip install -e .
bench --version

bench run
bench leaderboard
