# Headless Chromium for the web UI tests (tests driven over the W3C WebDriver protocol, see
# crates/credvault/tests/it/common/webdriver.rs): installs Debian's chromium and chromium-driver
# if either is missing, runs a private chromedriver on 127.0.0.1 with its log in DIR, and
# stops it again (with any browser it left behind). Source this file, then call
# chromedriver_start / chromedriver_stop.
#
#   chromium_ensure               -> installs chromium + chromium-driver if missing
#   chromedriver_start DIR PORT   -> exports CREDVAULT_TEST_WEBDRIVER_URL (http://127.0.0.1:PORT)
#   chromedriver_stop DIR
#   axe_ensure                    -> exports CREDVAULT_TEST_AXE_JS (axe-core from npm, cached)
#
# chromedriver (loopback only) starts one headless Chromium per WebDriver session (the tests ask for
# /usr/bin/chromium with --headless=new --no-sandbox and a fresh profile each). Calling
# chromedriver_start again while DIR's chromedriver runs keeps it (and its port). Everything —
# log, pid file, port, Chromium's scratch directories — lives in DIR.

chromium_ensure() {
    if [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null 2>&1; then
        echo "==> installing chromium and chromium-driver from Debian"
        apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q chromium chromium-driver >/dev/null
    fi
}

_chromedriver_running() {
    local dir=$1
    [ -f "$dir/chromedriver.pid" ] && kill -0 "$(cat "$dir/chromedriver.pid")" 2>/dev/null
}

# True once chromedriver on PORT answers /status with "ready": true.
_chromedriver_ready() {
    local port=$1
    python3 - "$port" <<'EOF' >/dev/null 2>&1
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=2) as r:
    sys.exit(0 if json.load(r)["value"]["ready"] else 1)
EOF
}

# Every descendant of PID (children first, then theirs), one per line.
_chromium_descendants() {
    local pid=$1 child
    for child in $(pgrep -P "$pid" 2>/dev/null); do
        echo "$child"
        _chromium_descendants "$child"
    done
}

chromedriver_start() {
    local dir=$1 port=$2 i
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if _chromedriver_running "$dir"; then
        port=$(cat "$dir/port")
    else
        chromium_ensure
        echo "$port" > "$dir/port"
        rm -f "$dir/chromedriver.pid"
        # setsid: its own process group, so chromedriver_stop also reaches the browsers it
        # starts even once they are orphaned. The subshell has no job control, so setsid never
        # needs to fork and $! is chromedriver itself. No --allowed-ips on purpose: without it
        # chromedriver listens on 127.0.0.1 and ::1 only ("Only local connections are allowed"),
        # whereas --allowed-ips=127.0.0.1 makes it listen on every interface and filter by peer.
        # TMPDIR: the scratch directories chromedriver and Chromium make (and leave behind when
        # a session is never ended) land in DIR.
        mkdir -p "$dir/tmp"
        (
            TMPDIR="$dir/tmp" setsid chromedriver --port="$port" \
                --log-path="$dir/chromedriver.log" --log-level=INFO </dev/null >"$dir/chromedriver.out" 2>&1 &
            echo $! > "$dir/chromedriver.pid"
        )
        for i in $(seq 1 100); do
            _chromedriver_ready "$port" && break
            _chromedriver_running "$dir" || break
            sleep 0.2
        done
    fi
    if ! _chromedriver_ready "$port"; then
        echo "chromedriver did not become ready on 127.0.0.1:$port:" >&2
        cat "$dir/chromedriver.out" "$dir/chromedriver.log" >&2 2>/dev/null
        chromedriver_stop "$dir"
        return 1
    fi
    export CREDVAULT_TEST_WEBDRIVER_URL="http://127.0.0.1:$port"
    export CHROMEDRIVER_DIR="$dir"
}

chromedriver_stop() {
    local dir=${1:-${CHROMEDRIVER_DIR:-}} pid pids=""
    [ -n "$dir" ] && [ -f "$dir/chromedriver.pid" ] || return 0
    pid=$(cat "$dir/chromedriver.pid")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        # Collect the browsers first: once chromedriver is gone they are reparented.
        pids=$(_chromium_descendants "$pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        # shellcheck disable=SC2086
        [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    fi
    # Anything left in chromedriver's process group (setsid made it the leader: pgid = pid).
    [ -z "$pid" ] || kill -9 -- "-$pid" 2>/dev/null || true
    # Wait (up to 5 s) until they are gone, so that DIR can be removed right after.
    for _ in $(seq 1 50); do
        _chromium_alive "$pid" $pids || break
        sleep 0.1
    done
    rm -f "$dir/chromedriver.pid"
    return 0
}

# True if any of the PIDs still runs (zombies waiting to be reaped do not count).
_chromium_alive() {
    local p state
    for p in "$@"; do
        [ -n "$p" ] || continue
        # The state follows the command name in parentheses (which may hold spaces).
        state=$(sed -n 's/.*) \([A-Za-z]\) .*/\1/p' "/proc/$p/stat" 2>/dev/null) || continue
        [ -n "$state" ] && [ "$state" != Z ] && return 0
    done
    return 1
}

# ---------------------------------------------------------------------------- Firefox
# Headless Firefox for the same UI test: Debian's firefox-esr, driven through geckodriver
# (Mozilla's WebDriver server). Debian does not package geckodriver, so it is built once from
# crates.io with `cargo install` (about two minutes on two cores) unless one is on PATH.
#
#   firefox_ensure               -> installs firefox-esr and geckodriver if missing
#   geckodriver_start DIR PORT   -> exports CREDVAULT_TEST_GECKODRIVER_URL (http://127.0.0.1:PORT)
#   geckodriver_stop DIR
#
# geckodriver serves one session at a time; the suite has one Firefox test.

GECKODRIVER_VERSION=0.37.1

firefox_ensure() {
    if [ ! -x /usr/bin/firefox-esr ]; then
        echo "==> installing firefox-esr from Debian"
        apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q firefox-esr >/dev/null
    fi
    if ! command -v geckodriver >/dev/null 2>&1; then
        echo "==> building geckodriver $GECKODRIVER_VERSION from crates.io (cargo install)"
        cargo install geckodriver --version "$GECKODRIVER_VERSION" --locked --quiet
    fi
}

_geckodriver_ready() {
    local port=$1
    python3 - "$port" <<'PYEOF' >/dev/null 2>&1
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=2) as r:
    sys.exit(0 if json.load(r)["value"]["ready"] else 1)
PYEOF
}

geckodriver_start() {
    local dir=$1 port=$2
    mkdir -p "$dir/tmp"
    dir=$(cd "$dir" && pwd)
    firefox_ensure
    (
        TMPDIR="$dir/tmp" setsid geckodriver --host 127.0.0.1 --port "$port" --binary /usr/bin/firefox-esr \
            </dev/null >"$dir/geckodriver.log" 2>&1 &
        echo $! > "$dir/geckodriver.pid"
    )
    for _ in $(seq 1 100); do
        _geckodriver_ready "$port" && break
        kill -0 "$(cat "$dir/geckodriver.pid")" 2>/dev/null || break
        sleep 0.2
    done
    if ! _geckodriver_ready "$port"; then
        echo "geckodriver did not become ready on 127.0.0.1:$port:" >&2
        cat "$dir/geckodriver.log" >&2 2>/dev/null
        geckodriver_stop "$dir"
        return 1
    fi
    export CREDVAULT_TEST_GECKODRIVER_URL="http://127.0.0.1:$port"
}

geckodriver_stop() {
    local dir=$1 pid
    [ -n "$dir" ] && [ -f "$dir/geckodriver.pid" ] || return 0
    pid=$(cat "$dir/geckodriver.pid")
    if [ -n "$pid" ]; then
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$dir/geckodriver.pid"
    return 0
}

# axe-core (Deque's accessibility rules engine, from the npm registry) for the browser tests:
# fetched once with `npm pack` into a cache outside the clone, then injected into each main
# screen by crates/credvault/tests/it/ui_browser.rs. Exports CREDVAULT_TEST_AXE_JS.
AXE_VERSION=4.14.1
AXE_SHA256=29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c
axe_ensure() {
    local cache="${XDG_CACHE_HOME:-$HOME/.cache}/credvault/axe-core-$AXE_VERSION"
    local js="$cache/package/axe.min.js"
    if [ ! -s "$js" ] || ! echo "$AXE_SHA256  $js" | sha256sum -c --quiet - >/dev/null 2>&1; then
        if ! command -v npm >/dev/null 2>&1; then
            echo "==> installing npm from Debian (to fetch axe-core)"
            apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q npm >/dev/null
        fi
        echo "==> fetching axe-core $AXE_VERSION from the npm registry"
        local tmp
        tmp=$(mktemp -d)
        if ! (cd "$tmp" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar xzf "axe-core-$AXE_VERSION.tgz" package/axe.min.js); then
            rm -rf "$tmp"
            echo "axe_ensure: could not fetch axe-core $AXE_VERSION from the npm registry (the browser tests need it)" >&2
            return 1
        fi
        if ! echo "$AXE_SHA256  $tmp/package/axe.min.js" | sha256sum -c --quiet - >/dev/null 2>&1; then
            rm -rf "$tmp"
            echo "axe_ensure: axe-core $AXE_VERSION from npm does not have the pinned SHA-256 $AXE_SHA256" >&2
            return 1
        fi
        mkdir -p "$cache/package"
        mv "$tmp/package/axe.min.js" "$js"
        rm -rf "$tmp"
    fi
    export CREDVAULT_TEST_AXE_JS="$js"
}
