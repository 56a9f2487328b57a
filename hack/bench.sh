#!/usr/bin/env bash
# Benchmark create+start+delete of a busybox `true` container for corten, runc and
# crun in one hyperfine run (RUNS=100 by default; CORTEN=path skips the cargo build).
# Runs in a private mount namespace without the cgroup2 "unified" mount: crun 1.8
# refuses hybrid v1/v2 cgroup layouts, so all three runtimes see plain cgroup v1.
set -euo pipefail
cd "$(dirname "$0")/.."

warn() { printf '\n\033[1;31m*** WARNING: %s ***\033[0m\n\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# Stage 1 (host namespace): build corten, then re-exec inside a private mount namespace.
if [[ -z ${CORTEN_BENCH_IN_NS:-} ]]; then
    ((EUID == 0)) || die "must run as root"
    for tool in hyperfine jq runc crun unshare; do
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

# Stage 2 (private mount namespace).
mount --make-rprivate /
if mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
fi

declare -A bin=([corten]=$CORTEN [runc]=$(command -v runc) [crun]=$(command -v crun))
work=$(mktemp -d -t corten-bench.XXXXXX)
cleanup() {
    for name in "${!bin[@]}"; do
        "${bin[$name]}" --root "$work/$name/state" delete -f "bench-$name" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

hyperfine_args=()
for name in corten runc crun; do
    rt=${bin[$name]} root=$work/$name/state bundle=$work/$name/bundle id=bench-$name
    if [[ $name == corten && ! -x $rt ]]; then
        warn "corten binary $rt does not exist: SKIPPING corten"
        continue
    fi
    mkdir -p "$root"
    CORTEN='' hack/mkbundle.sh "$bundle" true >/dev/null  # same runc-generated config for all
    cycle=$(printf '%q --root %q create -b %q %q && %q --root %q start %q && %q --root %q delete -f %q' \
        "$rt" "$root" "$bundle" "$id" "$rt" "$root" "$id" "$rt" "$root" "$id")
    if ! sh -c "$cycle"; then
        [[ $name == corten ]] || die "$name failed a create/start/delete cycle: $cycle"
        warn "corten failed a create/start/delete cycle: SKIPPING corten"
        continue
    fi
    hyperfine_args+=(--command-name "$name" "sh -c $(printf %q "$cycle")")
done

echo "kernel: $(uname -r)"
for name in corten runc crun; do
    version=$("${bin[$name]}" --version 2>/dev/null | head -n1) || version="(unavailable)"
    echo "$name: $version"
done
echo

hyperfine --warmup 5 --runs "${RUNS:-100}" -N --export-json "$work/results.json" "${hyperfine_args[@]}"

echo
echo "create+start+delete of a busybox 'true' container (${RUNS:-100} runs):"
jq -r '.results[] | [.command, .mean * 1000, .stddev * 1000] | @tsv' "$work/results.json" |
    while IFS=$'\t' read -r name mean stddev; do
        printf '  %-7s %8.2f ms ± %5.2f ms\n' "$name" "$mean" "$stddev"
    done
ratio=$(jq -r '.results
    | (map(select(.command == "runc" or .command == "crun") | .mean) | min) as $best
    | map(select(.command == "corten") | .mean / $best) | first // empty' "$work/results.json")
if [[ -n $ratio ]]; then
    printf '  corten / fastest(runc, crun) = %.2fx\n' "$ratio"
else
    warn "corten was not benchmarked"
fi
