#!/usr/bin/env bash
# Supply-chain checks with cargo-deny, against deny.toml: the licences of every crate in
# Cargo.lock, bans (duplicate versions, wildcard requirements) and sources (crates.io
# only). Exits non-zero on any error.
#
#   bash scripts/deny.sh                  # cargo deny check licenses bans sources
#   bash scripts/deny.sh advisories       # any other checks (advisories needs the
#                                         # internet: it fetches the RustSec database)
#
# Installs cargo-deny, pinned, into target/tools the first time (`cargo install
# --locked`: a build from source, several minutes on two cores); builds nothing else.
# It compiles, so on a shared machine run it under the same lock as other builds.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
TOOLS=$PWD/target/tools
DENY=$TOOLS/bin/cargo-deny

if [[ ! -x $DENY || $("$DENY" --version 2>/dev/null) != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    printf '== installing cargo-deny %s into target/tools (once)\n' "$CARGO_DENY_VERSION" >&2
    start=$(date +%s)
    # Its own temporary build folder, not the project's target directory.
    env -u CARGO_TARGET_DIR cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION" \
        --root "$TOOLS" --quiet
    printf '== cargo-deny installed in %s s\n' "$(($(date +%s) - start))" >&2
fi

checks=("$@")
((${#checks[@]})) || checks=(licenses bans sources)
"$DENY" --log-level warn check "${checks[@]}"
