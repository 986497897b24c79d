"""Fails on a dependency no source of its crate names (scripts/test runs it; the machine has no
cargo-udeps / cargo-machete, and they would need a nightly build or a download).

A dependency counts as used when its crate name (with '_' for '-') appears as `name::`,
`name!` or `name as` in the crate's sources — src/ and build.rs for [dependencies]; also
tests/ and benches/ for [dev-dependencies]. A dependency kept only for a feature it switches
on elsewhere would need an entry in ALLOWED with the reason.
"""

import glob
import os
import re
import sys
import tomllib

# (Cargo.toml, dependency) -> why it stays although no source names it.
ALLOWED: dict[tuple[str, str], str] = {}


def used(ident: str, text: str) -> bool:
    pattern = r"\b" + re.escape(ident) + r"\s*(::|!|\s+as\b)|extern crate " + re.escape(ident) + r"\b"
    return re.search(pattern, text) is not None


def sources(crate_dir: str, subdirs: list[str]) -> str:
    out = []
    for sub in subdirs:
        path = os.path.join(crate_dir, sub)
        files = [path] if os.path.isfile(path) else glob.glob(path + "/**/*.rs", recursive=True)
        for f in files:
            with open(f, encoding="utf-8") as fh:
                out.append(fh.read())
    return "\n".join(out)


def main() -> int:
    unused = []
    for manifest in sorted(glob.glob("crates/*/Cargo.toml") + ["fuzz/Cargo.toml"]):
        crate_dir = os.path.dirname(manifest)
        with open(manifest, "rb") as fh:
            cargo = tomllib.load(fh)
        for section, subdirs in (
            ("dependencies", ["src", "build.rs", "fuzz_targets"]),
            ("dev-dependencies", ["src", "tests", "benches", "build.rs"]),
        ):
            text = sources(crate_dir, subdirs)
            for name in cargo.get(section, {}):
                if (manifest, name) in ALLOWED:
                    continue
                if not used(name.replace("-", "_"), text):
                    unused.append(f"{manifest}: [{section}] {name}")
    if unused:
        print("dependencies that no source of their crate uses (remove them, or say why in ALLOWED):", file=sys.stderr)
        for u in unused:
            print("  " + u, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
