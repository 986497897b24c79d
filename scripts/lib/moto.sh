# moto, the AWS emulator (PyPI `moto[server]`), for KMS and STS tests: installed once into a
# virtualenv under $CREDVAULT_TOOLS (default /opt/credvault-tools), started on loopback.
#   moto_start DIR PORT   -> exports MOTO_URL

CREDVAULT_TOOLS=${CREDVAULT_TOOLS:-/opt/credvault-tools}

moto_install() {
    local venv="$CREDVAULT_TOOLS/moto"
    if [ ! -x "$venv/bin/moto_server" ]; then
        echo "==> installing moto[server] from PyPI into $venv"
        mkdir -p "$CREDVAULT_TOOLS"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]"
    fi
}

moto_start() {
    local dir=$1 port=$2 i
    moto_install
    mkdir -p "$dir"
    "$CREDVAULT_TOOLS/moto/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
    echo $! > "$dir/moto.pid"
    for i in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    export MOTO_URL="http://127.0.0.1:$port"
}

moto_stop() {
    local dir=$1
    [ -f "$dir/moto.pid" ] && kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
}
