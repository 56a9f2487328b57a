#!/usr/bin/env bash
# Builds the release corten: static and non-PIE, so each exec skips ld.so and relocation
# (half the start-up time; corten is exec'd four times per container lifecycle).
# Prints the binary's path. Source hack/env.sh for the same settings in other scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/env.sh
source hack/env.sh
cargo build --release --bins >&2
echo "$CORTEN_BIN"
