# Sourced by the hack/bench*.sh scripts: what they share. bench_enter_ns builds corten
# (unless CORTEN=path is set) and re-runs the calling script as root inside a private
# mount namespace without the cgroup2 "unified" mount (crun 1.8 refuses hybrid v1/v2
# cgroup layouts, so corten, runc and crun all see plain cgroup v1); bench_versions prints
# what is measured; bench_summary turns a hyperfine JSON export into medians with ratios
# to crun.
# shellcheck shell=bash

warn() { printf '\n\033[1;31m*** WARNING: %s ***\033[0m\n\n' "$*" >&2; }
die() { echo "$(basename "$0" .sh): $*" >&2; exit 1; }

# bench_enter_ns [ARG...]: call with the script's arguments, after `cd` to the repository.
# The first call (host namespace) checks root and the tools (hyperfine jq runc crun unshare
# and those in BENCH_TOOLS), builds corten and re-executes the script in the namespace;
# there it makes the mounts private and drops the unified mount, then returns. A failed
# build leaves CORTEN pointing nowhere (the scripts skip corten, never use a stale binary).
# Sets the associative array `bin` (runtime name -> path).
bench_enter_ns() {
    if [[ -z ${CORTEN_BENCH_IN_NS:-} ]]; then
        ((EUID == 0)) || die "must run as root"
        local tool
        for tool in hyperfine jq runc crun unshare "${BENCH_TOOLS[@]}"; do
            command -v "$tool" >/dev/null || die "$tool not found (run hack/install-deps.sh)"
        done
        if [[ -z ${CORTEN:-} ]]; then
            if ! CORTEN=$(bash hack/build.sh); then
                warn "hack/build.sh failed (not using a stale binary)"
                CORTEN=/nonexistent/corten-build-failed
            fi
        fi
        export CORTEN CORTEN_BENCH_IN_NS=1
        exec unshare --mount -- "$BASH" "$0" "$@"
    fi
    mount --make-rprivate /
    if mountpoint -q /sys/fs/cgroup/unified; then
        umount /sys/fs/cgroup/unified
    fi
    declare -gA bin=([corten]=$CORTEN [runc]=$(command -v runc) [crun]=$(command -v crun))
}

# Prints the kernel and the three runtimes' versions.
bench_versions() {
    local name version
    echo "kernel: $(uname -r)"
    for name in corten runc crun; do
        version=$("${bin[$name]}" --version 2>/dev/null | head -n1) || version="(unavailable)"
        echo "$name: $version"
    done
}

# bench_summary TITLE HYPERFINE_JSON: one line per command, the median first (a loaded
# machine's outliers move the means), with its ratio to the command whose name starts with
# "crun", then mean ± σ and the CPU time (user+sys, also as a ratio to crun's).
bench_summary() {
    jq -r --arg title "$1" '
        def ms: . * 1000 * 100 | round / 100;
        def ratio($a; $b): " (\($a / $b * 100 | round / 100)x crun)";
        def crun: .command | startswith("crun");
        (.results | map(select(crun)) | first) as $crun
        | [$title + " (median, mean ± σ, user+sys)"] + (.results | map(
            "\(.command) \(.median | ms) ms"
            + (if $crun and (crun | not) then ratio(.median; $crun.median) else "" end)
            + ", \(.mean | ms) ± \(.stddev | ms) ms, cpu \(.user + .system | ms) ms"
            + (if $crun and (crun | not) then ratio(.user + .system; $crun.user + $crun.system) else "" end)))
        | join("\n  ")' "$2"
}
