# A real OAuth 2.0 / OIDC authorization server for the OAuth tests: panva's `oidc-provider`
# from npm (installed once under $CREDVAULT_TOOLS), started on loopback with dynamic client
# registration, consent screens (dev interactions), refresh-token rotation, client
# credentials, revocation and introspection.
#   oidc_start DIR PORT -> exports CREDVAULT_TEST_OIDC_ISSUER

CREDVAULT_TOOLS=${CREDVAULT_TOOLS:-/opt/credvault-tools}

oidc_install() {
    local dir="$CREDVAULT_TOOLS/oidc"
    if [ ! -d "$dir/node_modules/oidc-provider" ]; then
        echo "==> installing oidc-provider from npm into $dir"
        if ! command -v node >/dev/null; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
        fi
        mkdir -p "$dir"
        (cd "$dir" && npm init -y >/dev/null 2>&1 && npm install --no-audit --no-fund --silent oidc-provider@9.13.3 >/dev/null)
    fi
}

oidc_start() {
    local dir=$1 port=$2 i
    oidc_install
    mkdir -p "$dir"
    cat > "$dir/server.mjs" <<'JS'
import Provider from 'oidc-provider';
const port = Number(process.env.PORT);
const ttl = Number(process.env.ACCESS_TTL || 3600);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [],
  scopes: ['openid', 'offline_access', 'api:read'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    registration: { enabled: true },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  cookies: { keys: ['credvault-test-only-cookie-key'] },
  ttl: { AccessToken: ttl, ClientCredentials: ttl, RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 600 },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on http://127.0.0.1:${port}`));
JS
    ln -sfn "$CREDVAULT_TOOLS/oidc/node_modules" "$dir/node_modules"
    # node itself is the background job, so the pid file names the process to stop (the
    # script's imports resolve next to it, whatever the working directory).
    PORT="$port" ACCESS_TTL="${OIDC_ACCESS_TTL:-3600}" node "$dir/server.mjs" >"$dir/oidc.log" 2>&1 &
    echo $! > "$dir/oidc.pid"
    local up=
    for i in $(seq 1 100); do
        if curl -fs "http://127.0.0.1:$port/.well-known/openid-configuration" >/dev/null 2>&1; then
            up=1
            break
        fi
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "oidc-provider did not start on 127.0.0.1:$port:" >&2
        cat "$dir/oidc.log" >&2
        return 1
    fi
    export CREDVAULT_TEST_OIDC_ISSUER="http://127.0.0.1:$port"
}

oidc_stop() {
    local dir=$1
    [ -f "$dir/oidc.pid" ] && kill "$(cat "$dir/oidc.pid")" 2>/dev/null || true
}
