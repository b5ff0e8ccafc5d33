#!/usr/bin/env bash
# Install everything the test suite needs, then run it. This is the README's test command
# and exactly what CI runs (.ci/run). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's own Python refuses pip outside a virtual environment (PEP 668): then the tests
# run in one of ours, .venv.
externally_managed() {
  python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
}
use_venv=0
if [ -z "${VIRTUAL_ENV:-}" ] && externally_managed; then use_venv=1; fi

# System packages the tests drive for real: a broker, a browser, promtool, a fake clock,
# PostgreSQL (a hub runs on it), and what a venv needs on a stock Debian.
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
command -v psql >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
if [ "$use_venv" = 1 ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "warning: missing ${missing[*]} (not root or no apt-get); tests that need them fail" >&2
  fi
fi

if [ "$use_venv" = 1 ]; then
  [ -x .venv/bin/python3 ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,postgres]'

# The hub's tests run on PostgreSQL too: the server on 127.0.0.1:5432 when one answers,
# else a cluster of this run's own on a free port, stopped at the end.
if [ -z "${PUSKESOS_TEST_POSTGRES:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_dir=$(mktemp -d /tmp/puskesos-test-pg.XXXXXX)
  trap 'bash tests/postgres.sh stop "$pg_dir" || true; rm -rf "$pg_dir"' EXIT
  PUSKESOS_TEST_POSTGRES=$(bash tests/postgres.sh start "$pg_dir")
  export PUSKESOS_TEST_POSTGRES
  echo "no PostgreSQL on 127.0.0.1:5432: started one for the tests at $PUSKESOS_TEST_POSTGRES"
fi

ruff check .
ruff format --check .
mypy protocol
python3 -m pytest "$@"
