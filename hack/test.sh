#!/usr/bin/env bash
# The project's test command: installs dependencies (the engines and peer runtimes too:
# only this command installs those), checks formatting and lints, builds
# the release binaries and runs all unit + integration tests (TEST_THREADS=4 by default),
# then the guest suite in a Debian 12 guest with systemd and cgroup v2 (hack/guest.sh;
# GUEST=0 leaves it out). Must run as root, because the integration tests create real
# containers.
set -euo pipefail
cd "$(dirname "$0")/.."

if ((EUID != 0)); then
    echo "test: must run as root (integration tests create containers); try: sudo $0" >&2
    exit 1
fi

echo "test: installing the test dependencies: the engines (docker.io, containerd, podman)," \
    "peer runtimes (runc, crun) and guest tools (qemu, debootstrap) with apt-get;" \
    "on a host with Docker CE, apt may replace it (containerd.io conflicts with containerd)"
bash hack/install-deps.sh
# shellcheck source=hack/env.sh
source hack/env.sh

# The tree stays formatted and lint-free (clippy also denies unsafe blocks without a
# SAFETY comment: see the crate attributes), and the module layers stay one-way.
cargo fmt --check
cargo clippy --all-targets -- -D warnings
bash hack/layers.sh
cargo build --release --bins
cargo test --release -- --test-threads="${TEST_THREADS:-4}"
if [[ ${GUEST:-1} != 0 ]]; then
    bash hack/guest.sh test
fi
echo "test: all tests passed"
