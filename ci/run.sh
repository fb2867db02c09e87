#!/usr/bin/env bash
# Called by .ci/run on a clean clone: starts what the tests need from the machine (Debian's
# chromium, a throwaway PostgreSQL), then runs ci/test.sh, the README's test command, in a fresh
# virtualenv. Exit status is ci/test.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests that need the real files in ../shared fail (instead of skipping) when CI is set.
export CI="${CI:-true}"
# A fresh virtualenv every run, so a missing install step cannot hide behind an old one.
export BENCH_VENV="${BENCH_CI_VENV:-$(mktemp -d -t bench-ci-venv-XXXXXX)}"
echo "== fresh virtualenv: $BENCH_VENV"

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

bash ci/test.sh "$@"
