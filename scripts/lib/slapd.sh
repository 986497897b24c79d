# OpenLDAP slapd for the LDAP Test connection suite: installs the Debian packages (slapd,
# ldap-utils) if missing, starts a private directory on 127.0.0.1 from a slapd.conf in DIR (the
# package's own configuration is not used; no systemd), loads base entries and a user, and stops
# it again. Source this file, then call slapd_start / slapd_stop.
#
#   slapd_start DIR PORT  -> exports CREDVAULT_TEST_LDAP_HOST, _PORT, _BIND_DN, _PASSWORD, and,
#                            when StartTLS works with the DIR certificate, CREDVAULT_TEST_LDAP_TLS=1,
#                            CREDVAULT_TEST_LDAP_CA (the CA file a client must trust, e.g. as
#                            SSL_CERT_FILE) and CREDVAULT_TEST_LDAPS_PORT (LDAPS on a second port)
#   slapd_stop DIR
#
# The user's and the directory manager's passwords are random per DIR (kept in DIR, mode 600).
# Everything — configuration, database, certificates, pid — lives in DIR.

_slapd_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

slapd_install() {
    if [ ! -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null 2>&1; then
        echo "==> installing slapd and ldap-utils from Debian"
        apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q slapd ldap-utils >/dev/null
    fi
}

# A CA and a server certificate for 127.0.0.1 / localhost signed by it (a self-signed leaf with
# CA:TRUE is refused by rustls/webpki as an end-entity certificate).
_slapd_certs() {
    local dir=$1
    [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && [ -s "$dir/ca.pem" ] && return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=credvault test LDAP CA" \
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

_slapd_secret() {
    local f=$1
    if [ ! -s "$f" ]; then
        (umask 077; echo "ldap-canary-$(openssl rand -hex 12)" > "$f")
    fi
    cat "$f"
}

slapd_start() {
    local dir=$1 port=$2 ldaps_port i tls=0 rootpw userpw
    local suffix="dc=example,dc=org"
    local rootdn="cn=admin,$suffix" userdn="uid=svc-pipeline,ou=people,$suffix"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    rootpw=$(_slapd_secret "$dir/rootpw")
    userpw=$(_slapd_secret "$dir/userpw")
    if [ -f "$dir/slapd.pid" ] && kill -0 "$(cat "$dir/slapd.pid")" 2>/dev/null; then
        port=$(cat "$dir/port")
        ldaps_port=$(cat "$dir/ldaps_port" 2>/dev/null || true)
    else
        slapd_install
        mkdir -p "$dir/db"
        _slapd_certs "$dir" || echo "    (could not make a certificate: StartTLS/LDAPS are off)" >&2
        {
            if [ -s "$dir/cert.pem" ]; then
                echo "TLSCACertificateFile $dir/ca.pem"
                echo "TLSCertificateFile $dir/cert.pem"
                echo "TLSCertificateKeyFile $dir/key.pem"
            fi
            echo "include /etc/ldap/schema/core.schema"
            echo "include /etc/ldap/schema/cosine.schema"
            echo "include /etc/ldap/schema/inetorgperson.schema"
            echo "include /etc/ldap/schema/nis.schema"
            echo "modulepath /usr/lib/ldap"
            echo "moduleload back_mdb"
            echo "pidfile $dir/slapd.pid"
            echo "argsfile $dir/slapd.args"
            echo "database mdb"
            echo "maxsize 104857600"
            echo "suffix \"$suffix\""
            echo "rootdn \"$rootdn\""
            echo "rootpw $(slappasswd -s "$rootpw")"
            echo "directory $dir/db"
        } > "$dir/slapd.conf"
        chmod 600 "$dir/slapd.conf"
        echo "$port" > "$dir/port"
        local urls="ldap://127.0.0.1:$port/"
        ldaps_port=""
        if [ -s "$dir/cert.pem" ]; then
            ldaps_port=$(_slapd_free_port)
            urls="$urls ldaps://127.0.0.1:$ldaps_port/"
        fi
        echo "$ldaps_port" > "$dir/ldaps_port"
        rm -f "$dir/slapd.pid"
        # slapd daemonizes; its pid lands in slapd.pid.
        if ! slapd -h "$urls" -f "$dir/slapd.conf" >"$dir/slapd.out" 2>&1; then
            echo "slapd did not start on 127.0.0.1:$port:" >&2
            cat "$dir/slapd.out" >&2
            return 1
        fi
        for i in $(seq 1 50); do
            ldapwhoami -x -H "ldap://127.0.0.1:$port" -D "$rootdn" -w "$rootpw" >/dev/null 2>&1 && break
            sleep 0.1
        done
        # -c and `|| true`: on a restart the entries are already in DIR's database; the bind
        # check below is what counts.
        ldapadd -c -x -H "ldap://127.0.0.1:$port" -D "$rootdn" -w "$rootpw" >"$dir/load.log" 2>&1 <<EOF || true
dn: $suffix
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,$suffix
objectClass: organizationalUnit
ou: people

dn: $userdn
objectClass: inetOrgPerson
uid: svc-pipeline
cn: svc-pipeline
sn: pipeline
userPassword: $(slappasswd -s "$userpw")
EOF
    fi
    if ! ldapwhoami -x -H "ldap://127.0.0.1:$port" -D "$userdn" -w "$userpw" >/dev/null 2>&1; then
        echo "slapd on 127.0.0.1:$port does not accept the test user:" >&2
        cat "$dir/slapd.out" "$dir/load.log" >&2 2>/dev/null
        return 1
    fi
    # TLS counts only when a real client gets through StartTLS, verifying the certificate
    # against the CA in DIR, and binds.
    if [ -s "$dir/ca.pem" ] && LDAPTLS_CACERT="$dir/ca.pem" LDAPTLS_REQCERT=demand \
        ldapwhoami -x -ZZ -H "ldap://127.0.0.1:$port" -D "$userdn" -w "$userpw" >/dev/null 2>&1; then
        tls=1
    fi
    export CREDVAULT_TEST_LDAP_HOST=127.0.0.1
    export CREDVAULT_TEST_LDAP_PORT="$port"
    export CREDVAULT_TEST_LDAP_BIND_DN="$userdn"
    export CREDVAULT_TEST_LDAP_PASSWORD="$userpw"
    if [ "$tls" = 1 ]; then
        export CREDVAULT_TEST_LDAP_TLS=1
        export CREDVAULT_TEST_LDAP_CA="$dir/ca.pem"
        if [ -n "$ldaps_port" ] && LDAPTLS_CACERT="$dir/ca.pem" LDAPTLS_REQCERT=demand \
            ldapwhoami -x -H "ldaps://127.0.0.1:$ldaps_port" -D "$userdn" -w "$userpw" >/dev/null 2>&1; then
            export CREDVAULT_TEST_LDAPS_PORT="$ldaps_port"
        else
            unset CREDVAULT_TEST_LDAPS_PORT
        fi
    else
        unset CREDVAULT_TEST_LDAP_TLS CREDVAULT_TEST_LDAP_CA CREDVAULT_TEST_LDAPS_PORT
    fi
    export SLAPD_DIR="$dir"
}

slapd_stop() {
    local dir=${1:-${SLAPD_DIR:-}} pid
    [ -n "$dir" ] && [ -f "$dir/slapd.pid" ] || return 0
    pid=$(cat "$dir/slapd.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/slapd.pid"
}
