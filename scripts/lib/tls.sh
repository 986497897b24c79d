# Certificates for the TLS tests, made with openssl in a directory (no network):
#   tls_make DIR  -> DIR/ca.pem              a CA the tests trust (ca_pem)
#                    DIR/other-ca.pem        a second CA that signed nothing the servers show
#                    DIR/server.pem, .key    signed by ca.pem for DNS:localhost only (so a
#                                            client that dials 127.0.0.1 and checks the name fails)
#                    DIR/expired.pem, .key   signed by ca.pem for localhost, valid in 2020 only
#                    DIR/client.pem, .key    a client certificate for the user certuser (CN),
#                                            signed by ca.pem (PostgreSQL's cert authentication)
tls_make() {
    local d=$1
    mkdir -p "$d"
    (
        cd "$d" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
            -days 3650 -subj "/CN=credvault test CA" -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other-ca.key -out other-ca.pem \
            -days 3650 -subj "/CN=some other CA" -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
            -subj "/CN=localhost" 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 3650 \
            -extfile server.ext 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr \
            -subj "/CN=certuser" 2>/dev/null
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 3650 \
            -extfile client.ext 2>/dev/null
        # An expired certificate: `openssl ca` is the tool that takes explicit dates.
        mkdir -p ca-db && : > ca-db/index.txt && echo 1000 > ca-db/serial
        cat > ca.cnf <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = leaf
unique_subject = no
[any]
commonName = supplied
[leaf]
subjectAltName = DNS:localhost
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
CNF
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout expired.key -out expired.csr \
            -subj "/CN=localhost" 2>/dev/null
        openssl ca -batch -config ca.cnf -in expired.csr -out expired.pem -notext \
            -startdate 20200101000000Z -enddate 20200102000000Z 2>/dev/null
    )
    [ -s "$d/server.pem" ] && [ -s "$d/expired.pem" ] && [ -s "$d/client.pem" ] || { echo "tls_make: openssl could not make the certificates" >&2; return 1; }
}
