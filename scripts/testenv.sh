#!/usr/bin/env bash
# scripts/testenv.sh — private PostgreSQL 15 + redis-server for tests.
#
#   scripts/testenv.sh up DIR     start (or reuse) both servers under DIR
#   scripts/testenv.sh down DIR   stop both (fine if already stopped)
#   scripts/testenv.sh status DIR exit 0 when both answer
#
# Layout under DIR:
#   DIR/pgdata          PostgreSQL data directory (owned by postgres when run as root)
#   DIR/pg              PostgreSQL unix socket directory (no TCP: listen_addresses='')
#   DIR/postgres.log    PostgreSQL log
#   DIR/redis.sock      redis unix socket (port 0: no TCP)
#   DIR/redis.pid       redis pid file
#   DIR/redis.log       redis log
#
# Connect with:  postgresql:///postgres?host=DIR/pg&user=postgres
#                unix://DIR/redis.sock
set -u

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}

# a pid is alive when it exists and is not a zombie (pid 1 here may reap slowly)
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    if [ -r "/proc/$1/stat" ]; then
        local st; st=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
        [ "$st" != "Z" ] && [ "$st" != "X" ] || return 1
    fi
    return 0
}

die() { echo "testenv: error: $*" >&2; exit 1; }

usage() { echo "usage: $0 up|down|status DIR" >&2; exit 2; }

[ $# -eq 2 ] || usage
cmd=$1
dir_arg=$2

# run a PostgreSQL binary as the postgres system user when we are root
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# make DIR and every parent directory traversable (the postgres user must reach DIR/pg)
make_traversable() {
    local d=$1
    while [ -n "$d" ] && [ "$d" != "/" ]; do
        # only add o+x/g+x; do not loosen anything else
        chmod a+x "$d" 2>/dev/null || true
        d=$(dirname "$d")
    done
}

pg_up() {
    "$PGBIN/pg_isready" -q -h "$DIR/pg" -p 5432 -U postgres -d postgres -t 1 >/dev/null 2>&1
}

redis_up() {
    [ -S "$DIR/redis.sock" ] && [ "$("$REDIS_CLI" -s "$DIR/redis.sock" ping 2>/dev/null)" = "PONG" ]
}

pg_pid() {
    # first line of postmaster.pid, if that process is alive
    local f="$DIR/pgdata/postmaster.pid" p
    [ -f "$f" ] || return 1
    p=$(head -n1 "$f" 2>/dev/null)
    [ -n "$p" ] && alive "$p" && { echo "$p"; return 0; }
    return 1
}

redis_pid() {
    local p
    [ -f "$DIR/redis.pid" ] || return 1
    p=$(cat "$DIR/redis.pid" 2>/dev/null)
    [ -n "$p" ] && alive "$p" && { echo "$p"; return 0; }
    return 1
}

wait_gone() { # pid seconds
    local p=$1 n=$(( $2 * 10 ))
    while alive "$p" && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
    if alive "$p"; then
        kill -KILL "$p" 2>/dev/null || true
        sleep 0.2
    fi
}

start_pg() {
    local PGUSER_OWN=postgres
    [ "$(id -u)" -eq 0 ] || PGUSER_OWN=$(id -un)
    mkdir -p "$DIR/pg" || die "cannot create $DIR/pg"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$DIR/pg" || die "cannot chown $DIR/pg"
    fi
    chmod 755 "$DIR/pg"
    if [ ! -f "$DIR/pgdata/PG_VERSION" ]; then
        rm -rf "$DIR/pgdata"
        mkdir -p "$DIR/pgdata" || die "cannot create $DIR/pgdata"
        if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$DIR/pgdata"; fi
        chmod 700 "$DIR/pgdata"
        if ! as_pg "$PGBIN/initdb" -D "$DIR/pgdata" -U postgres --auth=trust -E UTF8 --no-locale \
                >"$DIR/initdb.log" 2>&1; then
            cat "$DIR/initdb.log" >&2
            die "initdb failed (log: $DIR/initdb.log)"
        fi
    elif [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$DIR/pgdata"
    fi
    touch "$DIR/postgres.log"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$DIR/postgres.log"; fi

    if pg_pid >/dev/null; then
        # a postmaster is alive for this data dir but does not answer: restart it
        local p; p=$(pg_pid)
        echo "testenv: postgres pid $p does not answer; restarting" >&2
        kill -INT "$p" 2>/dev/null || true
        wait_gone "$p" 15
    fi

    # a postmaster killed with -9 can linger as a zombie until it is reaped; postgres refuses
    # to start while the pid in postmaster.pid exists, so wait for it to disappear
    local stale n=100
    stale=$(head -n1 "$DIR/pgdata/postmaster.pid" 2>/dev/null)
    if [ -n "$stale" ]; then
        while kill -0 "$stale" 2>/dev/null && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
    fi

    # -o options go straight to postgres; the socket dir has no spaces issue because we quote
    local try ok=0
    for try in 1 2 3; do
        # orphaned backends of a killed postmaster may still hold its shared memory for a moment
        if as_pg "$PGBIN/pg_ctl" -D "$DIR/pgdata" -l "$DIR/postgres.log" -s -w -t 60 \
                -o "-c listen_addresses='' -c unix_socket_directories='$DIR/pg' -c max_connections=300 -c fsync=on" \
                start >/dev/null 2>&1; then
            ok=1; break
        fi
        sleep 1
    done
    if [ $ok -eq 0 ]; then
        tail -n 30 "$DIR/postgres.log" >&2
        die "postgres failed to start (log: $DIR/postgres.log)"
    fi
}

start_redis() {
    if redis_pid >/dev/null; then
        local p; p=$(redis_pid)
        echo "testenv: redis pid $p does not answer; restarting" >&2
        kill -TERM "$p" 2>/dev/null || true
        wait_gone "$p" 10
    fi
    rm -f "$DIR/redis.sock"
    if ! "$REDIS_SERVER" --port 0 --unixsocket "$DIR/redis.sock" --unixsocketperm 700 \
            --save '' --appendonly no --dir "$DIR" \
            --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >/dev/null 2>&1; then
        tail -n 30 "$DIR/redis.log" >&2 2>/dev/null
        die "redis-server failed to start (log: $DIR/redis.log)"
    fi
}

wait_for() { # name testfn seconds
    local n=$(( $3 * 10 ))
    while ! $2; do
        n=$((n - 1))
        [ $n -gt 0 ] || return 1
        sleep 0.1
    done
    return 0
}

do_up() {
    [ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL 15 binaries not found in $PGBIN"
    command -v "$REDIS_SERVER" >/dev/null || die "redis-server not found"
    command -v "$REDIS_CLI" >/dev/null || die "redis-cli not found"
    if [ "$(id -u)" -eq 0 ]; then id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' system user"; fi

    # unix socket paths are limited to ~107 bytes
    local sock="$DIR/pg/.s.PGSQL.5432"
    [ ${#sock} -lt 107 ] || die "DIR is too long for a unix socket path: $sock"

    mkdir -p "$DIR" || die "cannot create $DIR"
    chmod 755 "$DIR" || die "cannot chmod $DIR"
    make_traversable "$DIR"

    if pg_up; then :; else start_pg; fi
    if redis_up; then :; else start_redis; fi

    wait_for postgres pg_up 30 || { tail -n 30 "$DIR/postgres.log" >&2; die "postgres does not answer at $DIR/pg"; }
    wait_for redis redis_up 15 || { tail -n 30 "$DIR/redis.log" >&2 2>/dev/null; die "redis does not answer at $DIR/redis.sock"; }
    echo "testenv: postgres at $DIR/pg, redis at $DIR/redis.sock"
}

do_down() {
    [ -d "$DIR" ] || { echo "testenv: $DIR does not exist; nothing to stop"; return 0; }
    local p
    if p=$(redis_pid); then
        "$REDIS_CLI" -s "$DIR/redis.sock" shutdown nosave >/dev/null 2>&1 || kill -TERM "$p" 2>/dev/null
        wait_gone "$p" 10
    fi
    rm -f "$DIR/redis.pid" "$DIR/redis.sock"
    if p=$(pg_pid); then
        if [ -f "$DIR/pgdata/PG_VERSION" ]; then
            as_pg "$PGBIN/pg_ctl" -D "$DIR/pgdata" -s -m fast -w -t 20 stop >/dev/null 2>&1 || true
        fi
        if alive "$p"; then kill -INT "$p" 2>/dev/null; wait_gone "$p" 15; fi
    fi
    echo "testenv: stopped servers in $DIR"
}

# absolute path without requiring it to exist
case "$dir_arg" in
    /*) DIR=$dir_arg ;;
    *) DIR=$(pwd)/$dir_arg ;;
esac
DIR=${DIR%/}
# normalise . and .. where possible
if [ -d "$DIR" ]; then DIR=$(cd "$DIR" && pwd -P); fi

case "$cmd" in
    up) do_up ;;
    down) do_down ;;
    status)
        if pg_up && redis_up; then echo "testenv: up"; exit 0; else echo "testenv: down"; exit 1; fi ;;
    *) usage ;;
esac
