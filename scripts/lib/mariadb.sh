# MariaDB for the Test connection suites: installs Debian's mariadb-server if missing, starts a
# private server on loopback with everything (data, socket, pid, logs) in DIR, as the `mysql`
# user and without systemd, creates a test user and database, and stops it again. Safe to call
# again on a running DIR (it only re-exports). The server offers TLS: with the certificate and
# key in MARIADB_TLS_CERT / MARIADB_TLS_KEY when set (copied into DIR, where the TLS tests swap
# them and run FLUSH SSL), else with a self-signed one made in DIR. Source this file, then call
# mariadb_start / mariadb_stop.
#
#   mariadb_start DIR PORT -> exports
#       CREDVAULT_TEST_MYSQL_HOST      127.0.0.1
#       CREDVAULT_TEST_MYSQL_PORT      PORT
#       CREDVAULT_TEST_MYSQL_USER      vault            (ALL on `vaulttest` and `vaulttest\_%`)
#       CREDVAULT_TEST_MYSQL_PASSWORD  random, kept in DIR/password
#       CREDVAULT_TEST_MYSQL_DB        vaulttest
#       MYSQL_URL                      mysql://vault:PASSWORD@127.0.0.1:PORT/vaulttest
#       MARIADB_DIR                    DIR
#   mariadb_stop DIR

# `apt-get update` at most once per shell, shared with sshd.sh.
credvault_apt_update_once() {
    if [ -z "${CREDVAULT_APT_UPDATED:-}" ]; then
        apt-get update -q >/dev/null
        CREDVAULT_APT_UPDATED=1
    fi
}

mariadb_bin() {
    local name=$1 d
    for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
        [ -x "$d/$name" ] && { echo "$d/$name"; return 0; }
    done
    command -v "$name"
}

mariadb_install() {
    if ! mariadb_bin mariadbd >/dev/null || ! mariadb_bin mariadb-install-db >/dev/null \
        || ! mariadb_bin mariadb >/dev/null || ! mariadb_bin mariadb-admin >/dev/null \
        || ! command -v openssl >/dev/null; then
        echo "==> installing MariaDB from Debian"
        credvault_apt_update_once
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server mariadb-client openssl >/dev/null
    fi
}

# Whether the server of DIR answers on its socket.
mariadb_alive() {
    local dir=$1
    [ -S "$dir/mysqld.sock" ] \
        && "$(mariadb_bin mariadb-admin)" --no-defaults --socket="$dir/mysqld.sock" -uroot ping >/dev/null 2>&1
}

mariadb_start() {
    local dir=$1 port=$2 pw i
    if [ -z "$dir" ] || [ -z "$port" ]; then
        echo "usage: mariadb_start DIR PORT" >&2
        return 2
    fi
    mariadb_install || return 1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    chmod 755 "$dir"
    chown mysql:mysql "$dir"
    if [ ! -s "$dir/password" ]; then
        (umask 077 && printf 'mdb-%s' "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$dir/password")
    fi
    pw=$(cat "$dir/password")
    # A certificate, so the server offers TLS like most production servers do (tls: prefer then
    # encrypts; require fails unless ca_pem holds the CA: no public CA signed it).
    if [ -n "${MARIADB_TLS_CERT:-}" ]; then
        cp "$MARIADB_TLS_CERT" "$dir/server-cert.pem"
        cp "$MARIADB_TLS_KEY" "$dir/server-key.pem"
        chown mysql:mysql "$dir/server-key.pem" "$dir/server-cert.pem"
        chmod 600 "$dir/server-key.pem"
    elif [ ! -s "$dir/server-cert.pem" ] || [ ! -s "$dir/server-key.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
            -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            -keyout "$dir/server-key.pem" -out "$dir/server-cert.pem" >/dev/null 2>&1 || {
            echo "cannot create the MariaDB test certificate (is openssl installed?)" >&2
            return 1
        }
        chown mysql:mysql "$dir/server-key.pem" "$dir/server-cert.pem"
        chmod 600 "$dir/server-key.pem"
    fi
    if ! mariadb_alive "$dir"; then
        if [ ! -d "$dir/data/mysql" ]; then
            "$(mariadb_bin mariadb-install-db)" --no-defaults --user=mysql --datadir="$dir/data" \
                --skip-test-db --auth-root-authentication-method=socket >"$dir/install.log" 2>&1 || {
                echo "mariadb-install-db failed; see $dir/install.log" >&2
                return 1
            }
        fi
        "$(mariadb_bin mariadbd)" --no-defaults --user=mysql --datadir="$dir/data" \
            --socket="$dir/mysqld.sock" --port="$port" --bind-address=127.0.0.1 \
            --pid-file="$dir/mariadbd.pid" --log-error="$dir/error.log" --skip-name-resolve \
            --ssl-cert="$dir/server-cert.pem" --ssl-key="$dir/server-key.pem" \
            --skip-log-bin --innodb-buffer-pool-size=32M --innodb-flush-log-at-trx-commit=2 \
            --max-connections=300 >/dev/null 2>&1 </dev/null &
        for i in $(seq 1 120); do
            mariadb_alive "$dir" && break
            sleep 0.5
        done
        if ! mariadb_alive "$dir"; then
            echo "MariaDB did not start; see $dir/error.log" >&2
            tail -n 20 "$dir/error.log" >&2 2>/dev/null
            return 1
        fi
    fi
    "$(mariadb_bin mariadb)" --no-defaults --socket="$dir/mysqld.sock" -uroot <<SQL || return 1
CREATE DATABASE IF NOT EXISTS vaulttest;
CREATE USER IF NOT EXISTS 'vault'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'vault'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL ON \`vaulttest\`.* TO 'vault'@'127.0.0.1';
GRANT ALL ON \`vaulttest\\_%\`.* TO 'vault'@'127.0.0.1';
SQL
    export CREDVAULT_TEST_MYSQL_HOST=127.0.0.1
    export CREDVAULT_TEST_MYSQL_PORT="$port"
    export CREDVAULT_TEST_MYSQL_USER=vault
    export CREDVAULT_TEST_MYSQL_PASSWORD="$pw"
    export CREDVAULT_TEST_MYSQL_DB=vaulttest
    export MYSQL_URL="mysql://vault:$pw@127.0.0.1:$port/vaulttest"
    export MARIADB_DIR="$dir"
}

mariadb_stop() {
    local dir=${1:-${MARIADB_DIR:-}} pid i
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    pid=$(cat "$dir/mariadbd.pid" 2>/dev/null || true)
    if mariadb_alive "$dir"; then
        "$(mariadb_bin mariadb-admin)" --no-defaults --socket="$dir/mysqld.sock" -uroot shutdown >/dev/null 2>&1 || true
    elif [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
    fi
    if [ -n "$pid" ]; then
        for i in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
    return 0
}
