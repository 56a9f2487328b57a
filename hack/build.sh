#!/usr/bin/env bash
# Builds the release corten (static and non-PIE: .cargo/config.toml has the settings, so a
# plain `cargo build --release` gives the same binary) and prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/env.sh
source hack/env.sh
cargo build --release --bins >&2
echo "$CORTEN_BIN"
