#!/usr/bin/env bash
# Called by .ci/run on a clean clone. Creates a fresh virtualenv, installs exactly as the
# README says (torch==2.13.0 first, so pip reuses the CPU wheel), then runs the README's
# test command. Exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests that need the real files in ../shared fail (instead of skipping) when CI is set.
export CI="${CI:-true}"

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

echo "== PostgreSQL on 127.0.0.1 for the Ray tuning test on a shared study (Debian's package, throwaway cluster)"
# CI runs as root and initdb refuses root: the cluster belongs to the postgres user.
pg_bin() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -1; }
[ -n "$(pg_bin)" ] || (export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q postgresql)
PG_BIN="$(pg_bin)"
PG_DIR="$(mktemp -d -t bench-pg-XXXXXX)"
chown postgres "$PG_DIR"
PG_PORT="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
pg_stop() { su postgres -c "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -m fast -w stop" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
trap pg_stop EXIT
su postgres -c "'$PG_BIN/initdb' -D '$PG_DIR/data' -A trust -U postgres >'$PG_DIR/initdb.log' && \
  '$PG_BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w \
  -o '-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1' start"
export BENCH_TEST_POSTGRES_URL="postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/postgres"

echo "== tests (README: Test)"
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
start=$(date +%s)
set +e
pytest
status=$?
set -e
echo "tests took $(( $(date +%s) - start )) s (exit $status)"
exit $status
