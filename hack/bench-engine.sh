#!/usr/bin/env bash
# Benchmark a container engine end to end with corten, runc and crun as its runtime:
# `podman run --rm --network none IMAGE true` (IMAGE: a busybox rootfs from
# hack/mkbundle.sh, `podman import`ed, so nothing is pulled), the three runtimes side by
# side in one hyperfine run (podman --runtime PATH). podman runs with everything of its
# own under a temporary directory (storage root and runroot, tmpdir, locks, events log,
# config files, each runtime's state root through --runtime-flag root=DIR), the cgroupfs
# manager and a cgroup parent of its own, all removed on exit.
# RUNS=30 by default; CORTEN=path skips the cargo build. Usage: hack/bench-engine.sh
# Like hack/bench.sh it runs in a private mount namespace (hack/bench-lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=hack/bench-lib.sh
source hack/bench-lib.sh
BENCH_TOOLS=(podman conmon)
bench_enter_ns "$@"
[[ -x ${bin[corten]} ]] || die "no corten binary at ${bin[corten]}"

work=$(mktemp -d -t corten-bench-engine.XXXXXX)
parent=corten-bench-engine-$$  # the containers' cgroup parent
image=localhost/corten-bench-busybox:latest
podman=(podman --root "$work/root" --runroot "$work/runroot" --tmpdir "$work/tmp"
    --cgroup-manager cgroupfs --events-backend file)
cleanup() {
    local name id dir
    # A run cut short (^C) may leave a container: delete it with the runtime that made it.
    for name in corten runc crun; do
        [[ -d $work/state-$name ]] || continue
        for id in $("${bin[$name]}" --root "$work/state-$name" list -q 2>/dev/null); do
            "${bin[$name]}" --root "$work/state-$name" delete -f "$id" >/dev/null 2>&1 || true
        done
    done
    "${podman[@]}" rm --all --force --time 0 >/dev/null 2>&1 || true
    "${podman[@]}" rmi --all --force >/dev/null 2>&1 || true
    # The storage's overlay mounts live in this mount namespace; unmount before removing.
    grep -F " $work/" /proc/self/mountinfo | cut -d' ' -f5 | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work"
    for dir in /sys/fs/cgroup/*/"$parent"; do
        [[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Root here may lack CAP_SYS_RESOURCE, and podman's default rlimits for root are above the
# hard limits: the containers get 1024 files and 4096 processes (as integration/engines/
# podman.rs), or the hard limit if lower.
limit() { # NAME WANT HARD
    local v=$(($2 < $3 ? $2 : $3))
    echo "\"$1=$v:$v\""
}
hard_nofile=$(ulimit -Hn) hard_nproc=$(ulimit -Hu)
[[ $hard_nofile == unlimited ]] && hard_nofile=1024
[[ $hard_nproc == unlimited ]] && hard_nproc=4096
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = [$(limit nofile 1024 "$hard_nofile"), $(limit nproc 4096 "$hard_nproc")]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
lock_type = "file"
tmp_dir = "$work/tmp"
static_dir = "$work/static"
volume_path = "$work/volumes"
runtime_supports_json = ["corten", "crun", "runc"]
EOF
cat >"$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/root"
runroot = "$work/runroot"
EOF
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_STORAGE_CONF=$work/storage.conf

bench_versions
echo "podman: $(podman --version)"

CORTEN='' hack/mkbundle.sh "$work/bundle" true >/dev/null
tar -C "$work/bundle/rootfs" -cf "$work/rootfs.tar" .
"${podman[@]}" import "$work/rootfs.tar" "$image" >/dev/null

args=()
for name in corten runc crun; do
    cmd=("${podman[@]}" --runtime "${bin[$name]}" --runtime-flag "root=$work/state-$name"
        run --rm --network none
        --cgroup-parent "/$parent" "$image" true)
    "${cmd[@]}" || die "podman with $name failed: ${cmd[*]}"
    args+=(--command-name "$name" "$(printf '%q ' "${cmd[@]}")")
done
hyperfine --warmup 3 --runs "${RUNS:-30}" -N --export-json "$work/engine.json" "${args[@]}"

echo
echo "podman run --rm --network none busybox true, ${RUNS:-30} runs each:"
bench_summary "podman run --rm" "$work/engine.json"
