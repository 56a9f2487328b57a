# Sourced by the hack/ scripts: cargo on PATH and the build settings of the release binary.
# --target (via CARGO_BUILD_TARGET) keeps RUSTFLAGS off the host's proc-macros, which can't
# be static; the binary lands in target/<host-triple>/release/corten.
# shellcheck shell=bash
[[ -f $HOME/.cargo/env ]] && source "$HOME/.cargo/env"
CARGO_BUILD_TARGET=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_BUILD_TARGET
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static"
CORTEN_BIN=$PWD/target/$CARGO_BUILD_TARGET/release/corten
export CORTEN_BIN
# libseccomp is linked statically into the static binary (libseccomp-dev ships the .a).
export LIBSECCOMP_LINK_TYPE=static
LIBSECCOMP_LIB_PATH=/usr/lib/$(uname -m)-linux-gnu
export LIBSECCOMP_LIB_PATH
