#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests, in a data directory of its own.
#
#   postgres.sh start     installs PostgreSQL if it is missing (saying so first, on the
#                         standard error), starts a server in $PGDATA (a new temporary
#                         directory if unset) on port $PGPORT (a free one if unset), and
#                         prints its URL; the tests read it from BUILDBOT_REST_TEST_PG
#   postgres.sh stop DIR  stops the server of the data directory DIR and deletes DIR
#
# The server listens on 127.0.0.1 only, and its socket and files stay in its directory.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin  # runuser, useradd

BIN=
find_bin() { BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); }
RUNAS=()
if [ "$(id -u)" = 0 ]; then
    RUNAS=(runuser -u postgres --)
fi

start() {
    find_bin
    if [ -z "$BIN" ]; then
        echo "postgres.sh: PostgreSQL is not installed: installing Debian's postgresql" \
             "package with apt-get (for the tests that need a server)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq postgresql >&2
        find_bin
    fi
    PGDATA=${PGDATA:-$(mktemp -d "${TMPDIR:-/tmp}/buildbot-rest-pg.XXXXXX")}
    PGPORT=${PGPORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    mkdir -p "$PGDATA"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
        chown postgres "$PGDATA"
    fi
    echo "postgres.sh: starting PostgreSQL in $PGDATA on port $PGPORT" >&2
    "${RUNAS[@]}" "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
    "${RUNAS[@]}" "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
        -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    echo "postgresql://postgres@127.0.0.1:$PGPORT/postgres"
}

stop() {
    local dir=$1
    [ -d "$dir" ] || return 0
    # Only a directory this script made: a data directory, or one initdb left empty.
    if [ -e "$dir/PG_VERSION" ]; then
        find_bin
        "${RUNAS[@]}" "$BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
    elif [ -n "$(ls -A "$dir")" ]; then
        echo "postgres.sh: $dir is not a PostgreSQL data directory: left as it is" >&2
        return 1
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:?usage: postgres.sh stop DIR}" ;;
    *) echo "usage: postgres.sh start | postgres.sh stop DIR" >&2; exit 2 ;;
esac
