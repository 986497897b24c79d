# vsftpd for the FTP Test connection suite: installs the Debian package if missing, starts a
# private server on 127.0.0.1 with a configuration, a throwaway CA and a server certificate in
# DIR (no systemd), and stops it again. Source this file, then call ftpd_start / ftpd_stop.
#
#   ftpd_start DIR PORT   -> exports CREDVAULT_TEST_FTP_HOST, _PORT, _USER, _PASSWORD, and, when
#                            explicit TLS (AUTH TLS) answers with the DIR certificate,
#                            CREDVAULT_TEST_FTP_TLS=1 and CREDVAULT_TEST_FTP_CA (the CA file a
#                            client must trust, e.g. as SSL_CERT_FILE)
#   ftpd_stop DIR
#
# vsftpd runs as root because local users log in through PAM. The login is a local system user
# `cvftp` (created once, home /home/cvftp, shell /bin/bash so the Debian `vsftpd` PAM service's
# pam_shells accepts it) with a fixed test password, so that concurrent test runs on one machine
# never change each other's password. Only 127.0.0.1 listens, and only while tests run.
# The server accepts plain and explicit-TLS sessions on the same port (TLS is offered, not
# forced). Everything else — configuration, certificates, pid, logs, secure_chroot_dir — is in DIR.

FTPD_USER=cvftp
FTPD_PASSWORD='cvftp-Canary-7f3a9c51'

ftpd_install() {
    if ! command -v vsftpd >/dev/null 2>&1 && [ ! -x /usr/sbin/vsftpd ]; then
        echo "==> installing vsftpd from Debian"
        apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q vsftpd >/dev/null
    fi
    if ! id -u "$FTPD_USER" >/dev/null 2>&1; then
        useradd -m -s /bin/bash "$FTPD_USER" 2>/dev/null || id -u "$FTPD_USER" >/dev/null
    fi
    # Idempotent, and the same value for every run.
    echo "$FTPD_USER:$FTPD_PASSWORD" | chpasswd
}

# A CA and a server certificate for 127.0.0.1 / localhost signed by it (a self-signed leaf with
# CA:TRUE is refused by rustls/webpki as an end-entity certificate).
_ftpd_certs() {
    local dir=$1
    [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && [ -s "$dir/ca.pem" ] && return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=credvault test FTP CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        >/dev/null 2>&1 || return 1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$dir/key.pem" -out "$dir/server.csr" >/dev/null 2>&1 || return 1
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 7 -extfile "$dir/server.ext" -out "$dir/cert.pem" >/dev/null 2>&1 || return 1
    chmod 600 "$dir/key.pem" "$dir/ca.key"
}

# Whether something on 127.0.0.1:PORT greets like an FTP server.
_ftpd_greets() {
    local got
    got=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3" 2>/dev/null) || true
    [ "${got:0:3}" = 220 ]
}

ftpd_start() {
    local dir=$1 port=$2 i tls=0
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/vsftpd.pid" ] && kill -0 "$(cat "$dir/vsftpd.pid")" 2>/dev/null; then
        port=$(cat "$dir/port")
    else
        ftpd_install
        mkdir -p "$dir/empty"
        chmod 755 "$dir/empty"
        _ftpd_certs "$dir" || echo "    (could not make a certificate: explicit TLS is off)" >&2
        {
            echo "listen=YES"
            echo "listen_ipv6=NO"
            echo "listen_address=127.0.0.1"
            echo "listen_port=$port"
            echo "background=NO"
            echo "anonymous_enable=NO"
            echo "local_enable=YES"
            echo "write_enable=NO"
            echo "pasv_enable=YES"
            echo "pasv_address=127.0.0.1"
            echo "secure_chroot_dir=$dir/empty"
            echo "pam_service_name=vsftpd"
            echo "seccomp_sandbox=NO"
            echo "xferlog_enable=NO"
            echo "log_ftp_protocol=NO"
            echo "vsftpd_log_file=$dir/vsftpd.log"
            echo "dual_log_enable=NO"
            if [ -s "$dir/cert.pem" ]; then
                echo "ssl_enable=YES"
                echo "allow_anon_ssl=NO"
                echo "force_local_logins_ssl=NO"
                echo "force_local_data_ssl=NO"
                echo "require_ssl_reuse=NO"
                echo "ssl_ciphers=HIGH"
                echo "rsa_cert_file=$dir/cert.pem"
                echo "rsa_private_key_file=$dir/key.pem"
            fi
        } > "$dir/vsftpd.conf"
        chmod 600 "$dir/vsftpd.conf"
        echo "$port" > "$dir/port"
        vsftpd "$dir/vsftpd.conf" >"$dir/vsftpd.out" 2>&1 &
        echo $! > "$dir/vsftpd.pid"
        for i in $(seq 1 50); do
            _ftpd_greets "$port" && break
            kill -0 "$(cat "$dir/vsftpd.pid")" 2>/dev/null || break
            sleep 0.1
        done
        if ! _ftpd_greets "$port"; then
            echo "vsftpd did not start on 127.0.0.1:$port:" >&2
            cat "$dir/vsftpd.out" >&2
            return 1
        fi
    fi
    # Explicit TLS counts only when a real client gets through AUTH TLS, verifying the
    # certificate against the CA in DIR, and logs in.
    if [ -s "$dir/ca.pem" ] && curl -s --max-time 10 --ssl-reqd --cacert "$dir/ca.pem" \
        --user "$FTPD_USER:$FTPD_PASSWORD" "ftp://127.0.0.1:$port/" --list-only -o /dev/null; then
        tls=1
    fi
    export CREDVAULT_TEST_FTP_HOST=127.0.0.1
    export CREDVAULT_TEST_FTP_PORT="$port"
    export CREDVAULT_TEST_FTP_USER="$FTPD_USER"
    export CREDVAULT_TEST_FTP_PASSWORD="$FTPD_PASSWORD"
    if [ "$tls" = 1 ]; then
        export CREDVAULT_TEST_FTP_TLS=1
        export CREDVAULT_TEST_FTP_CA="$dir/ca.pem"
    else
        unset CREDVAULT_TEST_FTP_TLS CREDVAULT_TEST_FTP_CA
    fi
    export FTPD_DIR="$dir"
}

ftpd_stop() {
    local dir=${1:-${FTPD_DIR:-}} pid
    [ -n "$dir" ] && [ -f "$dir/vsftpd.pid" ] || return 0
    pid=$(cat "$dir/vsftpd.pid")
    if kill -0 "$pid" 2>/dev/null; then
        # Session processes vsftpd forked live in their own sessions; they end when their
        # client does. The listener is this pid.
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/vsftpd.pid"
}
