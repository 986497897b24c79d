# moto, the AWS emulator (PyPI `moto[server]`), for KMS and STS tests: installed once into a
# virtualenv under $CREDVAULT_TOOLS (default /opt/credvault-tools), started on loopback.
#   moto_start DIR PORT   -> exports MOTO_URL (and CREDVAULT_TEST_BOTOCORE_PYTHON)

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
    # botocore comes with moto: the RDS token test compares with its generate_db_auth_token.
    export CREDVAULT_TEST_BOTOCORE_PYTHON="$CREDVAULT_TOOLS/moto/bin/python"
}

moto_stop() {
    local dir=$1
    [ -f "$dir/moto.pid" ] && kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
}

# A second moto that enforces SigV4 (the first requests set up an IAM user with full access):
#   moto_auth_start DIR PORT -> exports MOTO_AUTH_URL, MOTO_AUTH_KEY_ID, MOTO_AUTH_SECRET
moto_auth_start() {
    local dir=$1 port=$2 i keys
    moto_install
    mkdir -p "$dir"
    INITIAL_NO_AUTH_ACTION_COUNT=3 "$CREDVAULT_TOOLS/moto/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto-auth.log" 2>&1 &
    echo $! > "$dir/moto-auth.pid"
    for i in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    keys=$("$CREDVAULT_TOOLS/moto/bin/python" - "http://127.0.0.1:$port" <<'PY'
import sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="AKIASETUPSETUPSETUP0", aws_secret_access_key="setup")
iam.create_user(UserName="pipeline")
k = iam.create_access_key(UserName="pipeline")["AccessKey"]
iam.put_user_policy(UserName="pipeline", PolicyName="all",
    PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}')
print(k["AccessKeyId"], k["SecretAccessKey"])
PY
)
    export MOTO_AUTH_URL="http://127.0.0.1:$port"
    export MOTO_AUTH_KEY_ID=${keys%% *}
    export MOTO_AUTH_SECRET=${keys#* }
}

moto_auth_stop() {
    local dir=$1
    [ -f "$dir/moto-auth.pid" ] && kill "$(cat "$dir/moto-auth.pid")" 2>/dev/null || true
}
