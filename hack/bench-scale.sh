#!/usr/bin/env bash
# Benchmark `list` (and `state` of one container) as the host fills up: N (default 200)
# live busybox `sleep 1000` containers per runtime (corten, runc, crun; each its own
# --root, all from the minimal `runc spec` config hack/mkbundle.sh writes), then one
# hyperfine run per command with the three runtimes side by side, then `delete -f` of
# every container (also on failure or ^C). RUNS=50 by default; CORTEN=path skips the
# cargo build. Usage: hack/bench-scale.sh [N]
# Like hack/bench.sh it runs in a private mount namespace without the cgroup2 "unified"
# mount (crun 1.8 refuses hybrid v1/v2 cgroup layouts).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench-scale: $*" >&2; exit 1; }

n=${1:-200}
[[ $n =~ ^[0-9]+$ ]] || die "N must be a number, not $n"

# Stage 1 (host namespace): build corten, then re-exec inside a private mount namespace.
if [[ -z ${CORTEN_BENCH_IN_NS:-} ]]; then
    ((EUID == 0)) || die "must run as root"
    for tool in hyperfine jq runc crun unshare; do
        command -v "$tool" >/dev/null || die "$tool not found (run hack/install-deps.sh)"
    done
    if [[ -z ${CORTEN:-} ]]; then
        CORTEN=$(bash hack/build.sh) || die "hack/build.sh failed"
    fi
    export CORTEN CORTEN_BENCH_IN_NS=1
    exec unshare --mount -- "$BASH" "$0" "$@"
fi

# Stage 2 (private mount namespace).
mount --make-rprivate /
if mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
fi

runtimes=(corten runc crun)
declare -A bin=([corten]=$CORTEN [runc]=$(command -v runc) [crun]=$(command -v crun))
work=$(mktemp -d -t corten-bench-scale.XXXXXX)
cleanup() {
    local name id
    for name in "${runtimes[@]}"; do
        [[ -d $work/$name/state ]] || continue
        for ((i = 1; i <= n; i++)); do
            id=scale-$name-$i
            "${bin[$name]}" --root "$work/$name/state" delete -f "$id" >/dev/null 2>&1 || true
        done
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "kernel: $(uname -r)"
for name in "${runtimes[@]}"; do
    echo "$name: $("${bin[$name]}" --version 2>/dev/null | head -n1)"
done

list_args=() state_args=()
for name in "${runtimes[@]}"; do
    rt=${bin[$name]} root=$work/$name/state bundle=$work/$name/bundle
    mkdir -p "$root"
    CORTEN='' hack/mkbundle.sh "$bundle" sleep 1000 >/dev/null
    echo "starting $n containers with $name..."
    for ((i = 1; i <= n; i++)); do
        "$rt" --root "$root" run -d -b "$bundle" "scale-$name-$i" >/dev/null </dev/null ||
            die "$name: run of container $i failed"
    done
    running=$("$rt" --root "$root" list -q | wc -l)
    ((running == n)) || die "$name lists $running containers, not $n"
    list_args+=(--command-name "$name list" "$(printf '%q --root %q list' "$rt" "$root")")
    state_args+=(--command-name "$name state" "$(printf '%q --root %q state scale-%s-1' "$rt" "$root" "$name")")
done

summary=()
for what in list state; do
    declare -n args=${what}_args
    hyperfine --warmup 3 --runs "${RUNS:-50}" -N --output null \
        --export-json "$work/$what.json" "${args[@]}"
    summary+=("$(jq -r --arg what "$what" '
        def ms: . * 1000 * 100 | round / 100;
        (.results | map(select(.command | startswith("crun"))) | first) as $crun
        | [$what + " (median, mean ± σ)"] + (.results | map(
            "\(.command) \(.median | ms) ms"
            + (if $crun and (.command | startswith("crun") | not) then " (\(.median / $crun.median * 100 | round / 100)x crun)" else "" end)
            + ", \(.mean | ms) ± \(.stddev | ms) ms"))
        | join("\n  ")' "$work/$what.json")")
done

echo
echo "$n live busybox 'sleep 1000' containers per runtime, ${RUNS:-50} runs each:"
printf '%s\n' "${summary[@]}"
