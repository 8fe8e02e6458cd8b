#!/usr/bin/env bash
# Re-fetches the third-party files in ui/vendor/ from the npm registry.
#
#   bash ui/vendor.sh
#
# To update a library, change its version below and run the script; then run
# tests/browser/run.sh and commit ui/vendor/ together with the new version in
# ui/README.md. Needs npm (Node); the Rust build never does.
set -euo pipefail
cd "$(dirname "$0")/.."

UPLOT_VERSION=1.6.32

work=target/ui-vendor
rm -rf "$work"
mkdir -p "$work" ui/vendor

fetch() { # fetch NAME VERSION -> unpacks into $work/NAME
    local name=$1 version=$2 tgz
    tgz=$(cd "$work" && npm pack --silent "$name@$version")
    mkdir -p "$work/$name"
    tar -xzf "$work/$tgz" -C "$work/$name" --strip-components=1
}

fetch uplot "$UPLOT_VERSION"
cp "$work/uplot/dist/uPlot.iife.min.js" ui/vendor/uPlot.iife.min.js
cp "$work/uplot/dist/uPlot.min.css" ui/vendor/uPlot.min.css
cp "$work/uplot/LICENSE" ui/vendor/uPlot.LICENSE

echo "ui/vendor: uPlot $UPLOT_VERSION"
(cd ui/vendor && sha256sum uPlot.iife.min.js uPlot.min.css uPlot.LICENSE)
