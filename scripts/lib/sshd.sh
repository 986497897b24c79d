# OpenSSH sshd as an SSH bastion for the Test connection suites: installs Debian's
# openssh-server if missing and starts a private sshd on 127.0.0.1 (no systemd, no system
# configuration: `-f /dev/null` and everything on the command line) with its own host key, an
# authorized_keys file and logs in DIR. A dedicated local user (`cvtunnel`, no password, no
# shell) may only log in with the keys generated in DIR and may forward TCP (direct-tcpip).
# Safe to call again on a running DIR (it only re-exports). Source this file, then call
# sshd_start / sshd_stop.
#
#   sshd_start DIR PORT -> exports
#       CREDVAULT_TEST_SSH_HOST                127.0.0.1
#       CREDVAULT_TEST_SSH_PORT                PORT
#       CREDVAULT_TEST_SSH_USER                cvtunnel
#       CREDVAULT_TEST_SSH_KEY_FILE            authorized ed25519 key, OpenSSH format, no passphrase
#       CREDVAULT_TEST_SSH_PKCS8_KEY_FILE      authorized ECDSA P-256 key, PKCS#8 PEM, no passphrase
#       CREDVAULT_TEST_SSH_ENC_KEY_FILE        authorized ed25519 key, OpenSSH format, encrypted
#       CREDVAULT_TEST_SSH_ENC_KEY_PASSPHRASE  its passphrase
#       CREDVAULT_TEST_SSH_OTHER_KEY_FILE      a valid ed25519 key that is NOT authorized
#       CREDVAULT_TEST_SSH_HOST_KEY_FILE       the server's public host key line ("ssh-ed25519 AAAA…")
#       SSHD_DIR                               DIR
#   sshd_stop DIR

SSHD_TEST_USER=cvtunnel

# `apt-get update` at most once per shell, shared with mariadb.sh.
credvault_apt_update_once() {
    if [ -z "${CREDVAULT_APT_UPDATED:-}" ]; then
        apt-get update -q >/dev/null
        CREDVAULT_APT_UPDATED=1
    fi
}

sshd_install() {
    if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null || ! command -v openssl >/dev/null; then
        echo "==> installing OpenSSH server from Debian"
        credvault_apt_update_once
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server openssh-client openssl >/dev/null
    fi
}

# Whether the sshd of DIR runs.
sshd_alive() {
    local dir=$1 pid
    pid=$(cat "$dir/sshd.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Generates an ed25519 key pair at PATH (PATH.pub) unless it exists.
sshd_keygen() {
    local path=$1 passphrase=${2:-}
    [ -s "$path" ] && [ -s "$path.pub" ] && return 0
    rm -f "$path" "$path.pub"
    ssh-keygen -q -t ed25519 -N "$passphrase" -C "credvault-test" -f "$path" </dev/null
}

sshd_start() {
    local dir=$1 port=$2 i
    if [ -z "$dir" ] || [ -z "$port" ]; then
        echo "usage: sshd_start DIR PORT" >&2
        return 2
    fi
    sshd_install || return 1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # sshd reads authorized_keys as the logging-in user: DIR must be traversable, the keys
    # file readable (it holds only public keys).
    chmod 755 "$dir"
    # The privilege separation directory sshd insists on.
    mkdir -p /run/sshd && chmod 755 /run/sshd

    if ! id -u "$SSHD_TEST_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            "$SSHD_TEST_USER" || return 1
    fi
    # `*` (no password, but not locked: a `!` would make sshd refuse the account).
    usermod -p '*' "$SSHD_TEST_USER" || return 1

    sshd_keygen "$dir/host_ed25519" || return 1
    sshd_keygen "$dir/client_ed25519" || return 1
    sshd_keygen "$dir/other_ed25519" || return 1
    if [ ! -s "$dir/enc_passphrase" ]; then
        (umask 077 && printf 'ssh-pp-%s' "$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')" >"$dir/enc_passphrase")
        rm -f "$dir/client_enc_ed25519" "$dir/client_enc_ed25519.pub"
    fi
    sshd_keygen "$dir/client_enc_ed25519" "$(cat "$dir/enc_passphrase")" || return 1
    if [ ! -s "$dir/client_pkcs8.pem" ] || [ ! -s "$dir/client_pkcs8.pub" ]; then
        (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
            -out "$dir/client_pkcs8.pem" 2>/dev/null) || return 1
        ssh-keygen -y -f "$dir/client_pkcs8.pem" >"$dir/client_pkcs8.pub" || return 1
    fi
    chmod 600 "$dir/host_ed25519" "$dir/client_ed25519" "$dir/other_ed25519" \
        "$dir/client_enc_ed25519" "$dir/client_pkcs8.pem"
    cat "$dir/client_ed25519.pub" "$dir/client_enc_ed25519.pub" "$dir/client_pkcs8.pub" \
        >"$dir/authorized_keys"
    chmod 644 "$dir/authorized_keys"

    if ! sshd_alive "$dir"; then
        rm -f "$dir/sshd.pid"
        # Daemonises; logs to DIR/sshd.log.
        /usr/sbin/sshd -f /dev/null -h "$dir/host_ed25519" -p "$port" \
            -o ListenAddress=127.0.0.1 -o PidFile="$dir/sshd.pid" \
            -o AuthorizedKeysFile="$dir/authorized_keys" -o StrictModes=no \
            -o UsePAM=no -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
            -o PubkeyAuthentication=yes -o AuthenticationMethods=publickey \
            -o AllowUsers="$SSHD_TEST_USER" -o PermitRootLogin=no \
            -o AllowTcpForwarding=yes -o PermitOpen=any -o GatewayPorts=no \
            -o X11Forwarding=no -o PermitTTY=no -o AllowAgentForwarding=no \
            -o MaxStartups=100:30:200 -o MaxSessions=50 -o LogLevel=VERBOSE \
            -E "$dir/sshd.log" </dev/null || {
            echo "sshd did not start; see $dir/sshd.log" >&2
            tail -n 20 "$dir/sshd.log" >&2 2>/dev/null
            return 1
        }
        for i in $(seq 1 50); do
            sshd_alive "$dir" && break
            sleep 0.1
        done
        if ! sshd_alive "$dir"; then
            echo "sshd did not start; see $dir/sshd.log" >&2
            tail -n 20 "$dir/sshd.log" >&2 2>/dev/null
            return 1
        fi
    fi
    # The host key line without its comment.
    awk '{print $1" "$2}' "$dir/host_ed25519.pub" >"$dir/host_key.pub"

    export CREDVAULT_TEST_SSH_HOST=127.0.0.1
    export CREDVAULT_TEST_SSH_PORT="$port"
    export CREDVAULT_TEST_SSH_USER="$SSHD_TEST_USER"
    export CREDVAULT_TEST_SSH_KEY_FILE="$dir/client_ed25519"
    export CREDVAULT_TEST_SSH_PKCS8_KEY_FILE="$dir/client_pkcs8.pem"
    export CREDVAULT_TEST_SSH_ENC_KEY_FILE="$dir/client_enc_ed25519"
    CREDVAULT_TEST_SSH_ENC_KEY_PASSPHRASE=$(cat "$dir/enc_passphrase")
    export CREDVAULT_TEST_SSH_ENC_KEY_PASSPHRASE
    export CREDVAULT_TEST_SSH_OTHER_KEY_FILE="$dir/other_ed25519"
    export CREDVAULT_TEST_SSH_HOST_KEY_FILE="$dir/host_key.pub"
    export SSHD_DIR="$dir"
}

sshd_stop() {
    local dir=${1:-${SSHD_DIR:-}} pid i
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    pid=$(cat "$dir/sshd.pid" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$dir/sshd.pid"
    return 0
}
