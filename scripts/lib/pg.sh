# PostgreSQL for tests and benchmarks: installs the Debian package if missing, starts a
# private cluster on loopback in a temporary directory as the `postgres` user (no systemd),
# and stops it again. Source this file, then call pg_start / pg_stop.
#   pg_start DIR PORT   -> exports PG_URL (superuser URL to the `postgres` database)
# With PG_TLS_CERT and PG_TLS_KEY set (PEM files), the cluster also speaks TLS with them; with
# PG_TLS_ONLY=1 as well, it refuses connections that are not TLS (hostssl only); with PG_TLS_CA,
# the user certuser must log in with a client certificate of that CA.

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
    local tls=""
    if [ -n "${PG_TLS_CERT:-}" ]; then
        install -o postgres -g postgres -m 0644 "$PG_TLS_CERT" "$dir/tls.pem"
        install -o postgres -g postgres -m 0600 "$PG_TLS_KEY" "$dir/tls.key"
        tls="-c ssl=on -c ssl_cert_file=$dir/tls.pem -c ssl_key_file=$dir/tls.key"
        if [ "${PG_TLS_ONLY:-0}" = 1 ]; then
            sed -i 's/^host /hostssl /' "$dir/data/pg_hba.conf"
        fi
        # With PG_TLS_CA: client certificates of that CA are checked, and the user certuser
        # logs in with one (cert authentication, its CN is the user name) and nothing else.
        if [ -n "${PG_TLS_CA:-}" ]; then
            install -o postgres -g postgres -m 0644 "$PG_TLS_CA" "$dir/ca.pem"
            tls="$tls -c ssl_ca_file=$dir/ca.pem"
            # First match wins: TLS with a certificate, anything else refused.
            sed -i '1i host all certuser 127.0.0.1/32 reject' "$dir/data/pg_hba.conf"
            sed -i '1i hostssl all certuser 127.0.0.1/32 cert' "$dir/data/pg_hba.conf"
        fi
    fi
    # fsync=off only makes this throwaway test cluster faster; credvault still asks for
    # synchronous_commit=on in every session, which is what its durability rests on. The
    # benchmark starts its cluster with PG_FSYNC=on (a command-line setting beats ALTER SYSTEM).
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-off} -c max_connections=300 $tls" start >/dev/null
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
