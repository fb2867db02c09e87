#!/usr/bin/env bash
# Called by .ci/run on a clean clone: runs the README's two quick-start commands, each in a fresh
# virtualenv: ci/quickstart.sh (the main job at its defaults; ci/check_quickstart.py then checks
# that every method beats chance), then, with what the tests need from the machine (Debian's
# chromium, a throwaway PostgreSQL), ci/test.sh (lint and the whole suite); then the whole suite
# again on Python 3.10, the declared minimum (docs/testing.md).
# Exit status: ci/test.sh's, or the quick start's or the 3.10 job's when only that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests that need the real files in ../shared fail (instead of skipping) when CI is set.
export CI="${CI:-true}"
# A fresh virtualenv every run, so a missing install step cannot hide behind an old one.
export BENCH_VENV="${BENCH_CI_VENV:-$(mktemp -d -t bench-ci-venv-XXXXXX)}"
echo "== fresh virtualenv: $BENCH_VENV"

echo "== README quick start, command 1: bash ci/quickstart.sh (its own fresh virtualenv)"
qs_status=0
if [ "${BENCH_SKIP_QUICKSTART:-0}" = 1 ]; then
    echo "skipped: BENCH_SKIP_QUICKSTART=1"
else
    qs_venv="$(mktemp -d -t bench-ci-quickstart-XXXXXX)"
    qs_home="$(mktemp -d -t bench-ci-quickstart-home-XXXXXX)"
    start=$(date +%s)
    set +e
    BENCH_VENV="$qs_venv" BENCH_HOME="$qs_home" bash ci/quickstart.sh &&
        "$qs_venv/bin/python" ci/check_quickstart.py "$qs_home"
    qs_status=$?
    set -e
    echo "quick start took $(( $(date +%s) - start )) s (exit $qs_status)"
    rm -rf "$qs_venv" "$qs_home"
fi

echo "== chromium for the browser tests (Debian's package; Playwright never downloads one)"
command -v chromium || (export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q chromium)

echo "== PostgreSQL on 127.0.0.1 for the Ray tuning test on a shared study (Debian's package, throwaway cluster)"
# CI runs as root and initdb refuses root: the cluster belongs to the postgres user.
pg_bin() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -1; }
[ -n "$(pg_bin)" ] || (export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q postgresql)
PG_BIN="$(pg_bin)"
PG_DIR="$(mktemp -d -t bench-pg-XXXXXX)"
chown postgres "$PG_DIR"
PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
pg_stop() { su postgres -c "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -m fast -w stop" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
trap pg_stop EXIT
su postgres -c "'$PG_BIN/initdb' -D '$PG_DIR/data' -A trust -U postgres >'$PG_DIR/initdb.log' && \
  '$PG_BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w \
  -o '-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1' start"
export BENCH_TEST_POSTGRES_URL="postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/postgres"

set +e
bash ci/test.sh "$@"
status=$?
set -e
[ "$status" != 0 ] || status=$qs_status

echo "== Python 3.10, the declared minimum: the whole suite again (docs/testing.md)"
# This machine kind has CPython 3.10.13 under pyenv (Debian bookworm packages no python3.10).
# PyPI's torch 2.13.0 for 3.10 is a CUDA build (about 4.6 GB with its nvidia-* wheels; it runs
# on the CPU): the local CPU wheel is for 3.11 only.
py310=""
for candidate in "${BENCH_PY310:-}" python3.10 "$(pyenv root 2>/dev/null || echo /root/.pyenv)"/versions/3.10*/bin/python3.10; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        py310="$candidate"
        break
    fi
done
if [ "${BENCH_SKIP_PY310:-0}" = 1 ]; then
    echo "skipped: BENCH_SKIP_PY310=1"
elif [ -z "$py310" ]; then
    echo "FAILED: no Python 3.10 interpreter found (python3.10, pyenv's versions/3.10*); set BENCH_PY310=/path/to/python3.10, or BENCH_SKIP_PY310=1 to skip this job"
    [ "$status" != 0 ] || status=1
else
    py310_venv="$(mktemp -d -t bench-ci-py310-XXXXXX)"
    set +e
    BENCH_VENV="$py310_venv" PYTHON="$py310" bash ci/test.sh
    py310_status=$?
    set -e
    rm -rf "$py310_venv"  # 5 GB: the CUDA torch build
    [ "$status" != 0 ] || status=$py310_status
fi
exit "$status"
