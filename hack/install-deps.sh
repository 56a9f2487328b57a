#!/usr/bin/env bash
# Install the system packages corten's build, tests and benchmarks need (Debian, as root).
# Usage: hack/install-deps.sh [demo]: with `demo`, only what building corten and running
# hack/demo.sh need; without, also the container engines, peer runtimes and guest tools
# the test suite uses (hack/test.sh alone installs those).
# Idempotent: apt is skipped entirely when every package is already installed.
# Also makes sure cargo is on PATH, at least the rust-version of Cargo.toml, and fails
# clearly (saying how to get rustup's toolchain) if it is not.
set -euo pipefail

# Building corten (gcc links it, static libseccomp from libseccomp-dev) and the demo's
# bundle (busybox-static, jq).
PACKAGES=(busybox-static jq libseccomp-dev pkg-config gcc ca-certificates util-linux)
# containerd, podman + conmon and docker.io are the engines integration/engines/ runs
# corten under (each test starts its own daemon; the packages' services are never started).
# The docker client the tests use is docker.io's /usr/bin/docker, matching its dockerd.
# qemu-system-x86, debootstrap and e2fsprogs (mkfs.ext4 -d, debugfs) build and boot the
# Debian guest of hack/guest.sh. On a host with Docker CE, docker.io and containerd
# conflict with containerd.io: apt may remove Docker CE to install them.
if [[ ${1:-} != demo ]]; then
    PACKAGES+=(runc crun hyperfine
               golang-github-containers-common
               docker-registry skopeo umoci openssl
               containerd podman conmon docker.io tmux
               iproute2
               qemu-system-x86 debootstrap e2fsprogs)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if ((EUID != 0)); then
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Installing docker.io/containerd must not start their daemons: deny service starts
    # for the duration unless a policy is already in place.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "install-deps: all system packages already installed"
fi

# shellcheck source=/dev/null
[[ -f $HOME/.cargo/env ]] && source "$HOME/.cargo/env"
# rustup's toolchain, not the distribution's cargo (Debian 12 packages 1.63; corten needs
# the rust-version in Cargo.toml).
RUSTUP_HINT="install Rust with rustup: curl https://sh.rustup.rs -sSf | sh -s -- -y, then source ~/.cargo/env"
if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo not found on PATH; $RUSTUP_HINT" >&2
    exit 1
fi
need_rust=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$(dirname "$0")/../Cargo.toml")
have_rust=$(cargo --version | awk '{print $2}')
if [[ -n $need_rust ]] &&
    [[ $(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -1) != "$need_rust" ]]; then
    echo "install-deps: cargo $have_rust is older than the Rust $need_rust corten needs;" \
        "$RUSTUP_HINT (or rustup update)" >&2
    exit 1
fi
# hack/test.sh checks formatting and lints: rustfmt and clippy come with rustup's default
# profile; add them where the toolchain lacks them.
for component in rustfmt:fmt clippy:clippy; do
    if ! cargo "${component#*:}" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null; then
            rustup component add "${component%%:*}"
        else
            echo "install-deps: 'cargo ${component#*:}' is missing; add ${component%%:*} to" \
                "your Rust toolchain" >&2
            exit 1
        fi
    fi
done
echo "install-deps: using $(cargo --version)"
