# The README's first command, checked the way a newcomer types it, so the test suite fails
# when it breaks (issue 14: it once failed from a clean clone while every test passed).
#   readme_first_command DIR PORT
# 1. The README still starts with `cargo run --release -- serve`.
# 2. `cargo run -- --version` from the repository root picks the server binary (the debug
#    profile: the same command without --release, so no extra release build).
# 3. `cargo run -- serve` on an empty data directory prints the admin token and the UI URL
#    and answers /healthz; then it is stopped.

readme_first_command() {
    local dir=$1 port=$2 first pid i
    first=$(awk '/^```sh/ { f = 1; next } f { print; exit }' README.md)
    case "$first" in
        "cargo run --release -- serve "*) ;;
        *)
            echo "README.md's first command is not 'cargo run --release -- serve': $first" >&2
            return 1
            ;;
    esac
    if ! cargo run -q -- --version; then
        echo "'cargo run -- --version' from the repository root failed (the README's first command)" >&2
        return 1
    fi
    mkdir -p "$dir"
    cargo run -q -- serve --data-dir "$dir/data" --listen "127.0.0.1:$port" >"$dir/out" 2>"$dir/err" &
    pid=$!
    for i in $(seq 1 600); do
        grep -q "listening on http://127.0.0.1:$port" "$dir/out" 2>/dev/null && break
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    local ok=1
    grep -q "admin token (shown once, keep it safe): cvt_" "$dir/out" || { echo "serve printed no admin token" >&2; ok=0; }
    grep -q "UI: http://127.0.0.1:$port/" "$dir/out" || { echo "serve printed no UI URL" >&2; ok=0; }
    if [ "$ok" = 1 ] && ! curl -fsS --max-time 5 "http://127.0.0.1:$port/healthz" >/dev/null; then
        echo "serve does not answer /healthz" >&2
        ok=0
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ "$ok" != 1 ]; then
        echo "--- serve's output:" >&2
        sed 's/cvt_[A-Za-z0-9_-]*/cvt_[redacted]/' "$dir/out" "$dir/err" >&2 || true
        return 1
    fi
    echo "    cargo run -- serve: admin token and UI URL printed, /healthz answered"
}
