#!/usr/bin/env bash
# Install everything the test suite needs, then run it. This is the README's test command
# and exactly what CI runs (.ci/run). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests drive for real: a broker, a browser, promtool, a fake clock.
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "warning: missing ${missing[*]} (not root or no apt-get); tests that need them fail" >&2
  fi
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test,postgres]'

ruff check .
ruff format --check .
mypy protocol
python3 -m pytest "$@"
