# Sourced by the hack/ scripts: cargo on PATH and where the binaries land. The build
# settings of the static, non-PIE binary live in .cargo/config.toml (plain cargo uses them);
# it builds for the host triple as an explicit target, so the binaries land in
# target/<host-triple>/{debug,release}/.
# shellcheck shell=bash
[[ -f $HOME/.cargo/env ]] && source "$HOME/.cargo/env"
CORTEN_TARGET_DIR=$PWD/target/$(rustc -vV | sed -n 's/^host: //p')
export CORTEN_TARGET_DIR
CORTEN_BIN=$CORTEN_TARGET_DIR/release/corten
export CORTEN_BIN
