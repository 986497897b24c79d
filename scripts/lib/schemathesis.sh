# schemathesis (PyPI), the OpenAPI fuzzer, against a credvault server started from the debug
# binary that the build already produced (target/debug/credvault): every check, the coverage,
# fuzzing and stateful (OpenAPI links) phases, a fixed seed and a bounded number of examples.
# Installed once into a virtualenv under $CREDVAULT_TOOLS (default /opt/credvault-tools).
#   schemathesis_run DIR PORT   -> non-zero on any finding; a short summary on stdout
#
# A schema-valid request must be accepted unless the operation lists the refusal in
# `x-semantic-errors` (scripts/lib/schemathesis_hooks.py replaces the built-in
# positive_data_acceptance check with one that reads that list).

CREDVAULT_TOOLS=${CREDVAULT_TOOLS:-/opt/credvault-tools}
SCHEMATHESIS_VERSION=4.32.5
# Examples per operation and the seed: about two minutes on two cores.
SCHEMATHESIS_EXAMPLES=${SCHEMATHESIS_EXAMPLES:-25}
SCHEMATHESIS_SEED=${SCHEMATHESIS_SEED:-1515}

schemathesis_install() {
    local venv="$CREDVAULT_TOOLS/schemathesis"
    if [ ! -x "$venv/bin/st" ] || [ "$("$venv/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
        echo "==> installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $venv"
        mkdir -p "$CREDVAULT_TOOLS"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    fi
}

schemathesis_run() {
    local dir=$1 port=$2 bin=target/debug/credvault pid i token rc start
    schemathesis_install
    if [ ! -x "$bin" ]; then
        echo "schemathesis: $bin is missing (build first)" >&2
        return 1
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    # Many requests without a token: lift the failed-authentication throttle for this run.
    CREDVAULT_AUTH_THROTTLE_AFTER=1000000 "$bin" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" \
        >"$dir/server.out" 2>"$dir/server.err" &
    pid=$!
    echo "$pid" >"$dir/server.pid"
    for i in $(seq 1 300); do
        grep -q "listening on http://127.0.0.1:$port" "$dir/server.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    token=$(grep -o 'cvt_[A-Za-z0-9_-]*' "$dir/server.out" | head -n 1)
    if [ -z "$token" ]; then
        echo "schemathesis: the server did not start" >&2
        cat "$dir/server.err" >&2
        kill "$pid" 2>/dev/null || true
        return 1
    fi
    # The default organization and workspace: the hooks aim part of the generated IDs at them.
    export CREDVAULT_SCHEMATHESIS_ORG_ID CREDVAULT_SCHEMATHESIS_WS_ID
    CREDVAULT_SCHEMATHESIS_ORG_ID=$(grep -o 'org_[a-z2-7]*' "$dir/server.out" | head -n 1)
    CREDVAULT_SCHEMATHESIS_WS_ID=$(grep -o 'ws_[a-z2-7]*' "$dir/server.out" | head -n 1)
    start=$(date +%s)
    rc=0
    # From $dir, so nothing lands in the work tree.
    (cd "$dir" && SCHEMATHESIS_HOOKS="$OLDPWD/scripts/lib/schemathesis_hooks.py" \
        "$CREDVAULT_TOOLS/schemathesis/bin/st" --config-file "$OLDPWD/scripts/lib/schemathesis.toml" run "http://127.0.0.1:$port/v1/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks all --exclude-checks positive_data_acceptance \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$SCHEMATHESIS_EXAMPLES" --seed "$SCHEMATHESIS_SEED" \
        --generation-database none --no-color \
        --warnings off \
        --report junit --report-dir "$dir/report" \
        >"$dir/schemathesis.log" 2>&1) || rc=$?
    # A server that died or logged a panic is a finding too.
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "schemathesis: the server died during the run" >&2
        rc=1
    elif grep -q "panicked" "$dir/server.err"; then
        echo "schemathesis: the server panicked during the run" >&2
        grep -m 5 "panicked" "$dir/server.err" >&2
        rc=1
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "    schemathesis $SCHEMATHESIS_VERSION, seed $SCHEMATHESIS_SEED, $SCHEMATHESIS_EXAMPLES examples per operation, $(( $(date +%s) - start )) s:"
    sed -n '/^=* SUMMARY =*$/,$p' "$dir/schemathesis.log" | grep -E "Tested|Failures|❌|Errors|Test cases|generated|passed|failed|error" | sed 's/^/    /'
    if [ "$rc" != 0 ]; then
        echo "schemathesis found problems (the whole log: $dir/schemathesis.log):" >&2
        sed -n '/^=* FAILURES =*$/,/^=* SUMMARY =*$/p' "$dir/schemathesis.log" | sed 's/cvt_[A-Za-z0-9_-]*/cvt_[redacted]/g' | head -n 300 >&2
        sed -n '/^=* ERRORS =*$/,/^=* SUMMARY =*$/p' "$dir/schemathesis.log" | head -n 100 >&2
        return 1
    fi
}
