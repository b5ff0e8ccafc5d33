#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, used by tests/run.sh when no server answers
# on 127.0.0.1:5432 (a fresh Debian 12 has none):
#   bash tests/postgres.sh start DIR   # initdb in DIR, start on a free port, print its URL
#   bash tests/postgres.sh stop DIR    # stop it (then remove DIR)
# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
set -euo pipefail
command=${1:?start or stop}
dir=${2:?folder of the cluster}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed (Debian: apt-get install postgresql)" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$command" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    echo "postgresql+asyncpg://postgres@127.0.0.1:$port"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
