#!/usr/bin/env bash
# Benchmark create+start+delete of a busybox `true` container for corten, runc and
# crun in one hyperfine run (RUNS=100 by default; CORTEN=path skips the cargo build).
# Usage: hack/bench.sh [CONFIG.json...]. Without arguments the config is the minimal one
# (`runc spec`). With arguments (hack/configs/*.json: podman's, docker's and containerd
# CRI's real configs; see hack/configs/README), each config is measured twice: the
# lifecycle and `create` alone; the three runtimes side by side in one hyperfine run each,
# with ratios to crun. Runs in a private mount namespace (hack/bench-lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=hack/bench-lib.sh
source hack/bench-lib.sh
bench_enter_ns "$@"

work=$(mktemp -d -t corten-bench.XXXXXX)
roots=()  # "runtime state-root id" of each container the benchmark may leave
pod=''    # the pid of the "pod" whose namespaces a config joins (/proc/POD/ns/...), if any
cleanup() {
    local entry name root id
    for entry in "${roots[@]}"; do
        read -r name root id <<<"$entry"
        "${bin[$name]}" --root "$root" delete -f "$id" >/dev/null 2>&1 || true
    done
    [[ -z $pod ]] || kill "$pod" 2>/dev/null || true
    rm -rf "$work"
    # The containers' parent cgroup (cgroupsPath /corten-bench/...): runc and crun leave
    # the level they made; removed once empty (rmdir never removes a busy cgroup).
    rmdir /sys/fs/cgroup/*/corten-bench 2>/dev/null || true
}
trap cleanup EXIT

# The captured config made runnable here: our rootfs, `true`, a cgroup of our own, hooks
# dropped, the engine's bind-mounted files (hosts, hostname, shm...) replaced by empty ones
# in the bundle, and rlimits no higher than this host's hard limit (raising it needs
# CAP_SYS_RESOURCE, which a sandbox may not have). A CRI container joins its pod's
# namespaces (/proc/POD/ns/... in hack/configs/cri.json): those of a `sleep` started here
# in new ipc, uts and network namespaces, as a pod's pause process holds them.
adapt() { # CONFIG BUNDLE NAME
    local files=$2/files hard
    mkdir -p "$files"
    hard=$(ulimit -Hn)
    if [[ -z $pod ]] && grep -q '/proc/POD/' "$1"; then
        unshare --ipc --uts --net sleep 1000000 &
        pod=$!
        until [[ $(readlink "/proc/$pod/ns/net") != "$(readlink /proc/self/ns/net)" ]]; do
            sleep 0.01  # until unshare is in the new namespaces
        done
    fi
    jq --arg files "$files" --arg cg "/corten-bench/$3" --argjson hard "$hard" --arg pod "${pod:-0}" '
        .root = {path: "rootfs", readonly: (.root.readonly // false)}
        | .process.args = ["true"] | .process.terminal = false
        | del(.hooks) | .linux.cgroupsPath = $cg
        | .process.rlimits |= (if . == null then null else map(
            if .type == "RLIMIT_NOFILE" then .hard = ([.hard, $hard] | min) | .soft = ([.soft, $hard] | min)
            else . end) end)
        | .mounts |= map(if .type == "bind" then .source = ($files + "/" + (.source | split("/") | last)) else . end)
        | .linux.namespaces |= map(if .path then .path |= sub("/proc/POD/"; "/proc/" + $pod + "/") else . end)
        ' "$1" > "$2/config.json"
    jq -r '.mounts[] | select(.type == "bind") | .source' "$2/config.json" | while read -r src; do
        case ${src##*/} in
            shm) mkdir -p "$src" ;;
            *) touch "$src" ;;
        esac
    done
}

# One hyperfine run of the three runtimes with config $1 (empty: the minimal one), mode
# $2: "lifecycle" (create, start, delete of `true`) or "create" (create alone; the
# container is removed in hyperfine's --prepare step, outside the timing).
bench() {
    local config=$1 mode=$2 tag name rt root bundle id cycle
    local hyperfine_args=()
    tag=$(basename "${config:-minimal}" .json)-$mode
    for name in corten runc crun; do
        rt=${bin[$name]} root=$work/$tag/$name/state bundle=$work/$tag/$name/bundle id=bench-$name
        if [[ $name == corten && ! -x $rt ]]; then
            warn "corten binary $rt does not exist: SKIPPING corten"
            continue
        fi
        mkdir -p "$root"
        CORTEN='' hack/mkbundle.sh "$bundle" true >/dev/null  # same runc-generated config for all
        [[ -z $config ]] || adapt "$config" "$bundle" "$name"
        roots+=("$name $root $id")
        cycle=$(printf '%q --root %q create -b %q %q && %q --root %q start %q && %q --root %q delete -f %q' \
            "$rt" "$root" "$bundle" "$id" "$rt" "$root" "$id" "$rt" "$root" "$id")
        if ! sh -c "$cycle"; then
            [[ $name == corten ]] || die "$name failed a create/start/delete cycle: $cycle"
            warn "corten failed a create/start/delete cycle: SKIPPING corten"
            continue
        fi
        if [[ $mode == create ]]; then
            hyperfine_args+=(--prepare "$(printf '%q --root %q delete -f %q' "$rt" "$root" "$id")")
            cycle=$(printf '%q --root %q create -b %q %q' "$rt" "$root" "$bundle" "$id")
        fi
        hyperfine_args+=(--command-name "$name" "sh -c $(printf %q "$cycle")")
    done
    hyperfine --warmup 5 --runs "${RUNS:-100}" -N --export-json "$work/$tag.json" "${hyperfine_args[@]}"
    if [[ $mode == create ]]; then
        for name in corten runc crun; do
            "${bin[$name]}" --root "$work/$tag/$name/state" delete -f "bench-$name" >/dev/null 2>&1 || true
        done
    fi
    summary+=("$(bench_summary "$tag" "$work/$tag.json")")
}

bench_versions
echo

summary=()
if (($# == 0)); then
    bench "" lifecycle
else
    for config in "$@"; do
        [[ -f $config ]] || die "$config: no such config"
        bench "$config" lifecycle
        bench "$config" create
    done
fi

echo
echo "busybox 'true' container, ${RUNS:-100} runs each (lifecycle: create+start+delete):"
printf '%s\n' "${summary[@]}"
