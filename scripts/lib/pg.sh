# PostgreSQL for tests and benchmarks: installs the Debian package if missing, starts a
# private cluster on loopback in a temporary directory as the `postgres` user (no systemd),
# and stops it again. Source this file, then call pg_start / pg_stop.
#   pg_start DIR PORT   -> exports PG_URL (superuser URL to the `postgres` database)

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

pg_install() {
    if ! pg_bin >/dev/null; then
        echo "==> installing PostgreSQL from Debian"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-client >/dev/null
    fi
}

pg_start() {
    local dir=$1 port=$2 bin
    pg_install
    bin=$(pg_bin)
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    echo pgtestpw > "$dir/pwfile"
    chown postgres "$dir/pwfile"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1
    # fsync=off only makes this throwaway test cluster faster; credvault still asks for
    # synchronous_commit=on in every session, which is what its durability rests on. The
    # benchmark starts its cluster with PG_FSYNC=on (a command-line setting beats ALTER SYSTEM).
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-off} -c max_connections=300" start >/dev/null
    export PG_URL="postgres://postgres:pgtestpw@127.0.0.1:$port/postgres"
    export PG_DIR="$dir"
}

pg_stop() {
    local dir=${1:-${PG_DIR:-}} bin
    [ -n "$dir" ] && [ -d "$dir/data" ] || return 0
    bin=$(pg_bin) || return 0
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
