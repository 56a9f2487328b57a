#!/bin/sh
# Runs inside the guest (hack/guest.sh puts it on the shared disk, /guest; the image's
# corten-guest-boot starts it): the guest suite (guest/main.rs) with corten, then with runc,
# the reference, in the same guest. Results for the host on /guest/out: rc (0 = all
# passed) and dmesg (the kernel log, with <level> prefixes). Also usable by hand in
# `hack/guest.sh shell`: sh /guest/run.sh [NAME...]
set -u
cd /guest
mkdir -p out
[ $# -gt 0 ] || set -- $(cat args 2>/dev/null)
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cgroups="cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
else
    cgroups="cgroup v1 hierarchies: $(ls /sys/fs/cgroup | xargs)"
fi
echo "guest: $(uname -sr), $(nproc) CPUs, $cgroups"
echo "guest: AppArmor: $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)"
# bench_one CONFIG BUNDLE DRIVER: the lifecycle of each runtime on BUNDLE, n times.
bench_one() {
    config=$1 bundle=$2 driver=$3
    flag=
    [ $driver = systemd ] && flag=--systemd-cgroup
    # One run with corten's debug log first, shown when it fails or is slow.
    t0=$(date +%s%N)
    timeout 120 /guest/bin/corten --debug --log $b/trace.log --root $b/root $flag run --bundle $bundle trace >/dev/null 2>&1
    trc=$? tms=$((($(date +%s%N) - t0) / 1000000))
    if [ $trc != 0 ] || [ $tms -gt 10000 ] || [ -n "${GUEST_BENCH_TRACE:-}" ]; then
        echo "guest: corten's first run ($config config, $driver): rc $trc, $tms ms; its debug log:"
        cat $b/trace.log
    fi
    echo "guest: lifecycle benchmark, $n x create+start+delete of busybox true ($config config, $driver driver, v2)"
    for rt in /guest/bin/corten $(command -v crun) $(command -v runc); do
        name=$(basename "$rt")
        start=$(date +%s%N)
        i=0
        while [ $i -lt "$n" ]; do
            timeout 120 "$rt" --root $b/root $flag run --bundle $bundle "bench-$i" >/dev/null 2>$b/err ||
                { echo "guest: $name run failed: $(tail -1 $b/err)"; return 1; }
            i=$((i + 1))
        done
        ms=$((($(date +%s%N) - start) / 1000000 / n))
        eval "ms_$name=$ms"
        echo "guest:   $name: $ms ms per container"
    done
    echo "guest: $config config, $driver driver: corten/crun = $(awk "BEGIN {printf \"%.2f\", $ms_corten / $ms_crun}")x," \
        "corten/runc = $(awk "BEGIN {printf \"%.2f\", $ms_corten / $ms_runc}")x"
}

# The lifecycle benchmark on v2 (create + start + wait + delete of busybox `true`), each
# runtime on the same bundle in turn, with corten's minimal config and podman's, each with
# both cgroup drivers. TCG makes absolute times meaningless: the ratios count.
bench() {
    n=${GUEST_BENCH_N:-20}
    b=/tmp/guest-bench
    rm -rf $b && mkdir -p $b/rootfs/bin $b/root
    cp /bin/busybox $b/rootfs/bin/busybox
    ln -s busybox $b/rootfs/bin/true
    (cd $b && /guest/bin/corten spec)
    # ociVersion 1.0.2: Debian 12's crun (1.8) refuses the newer version corten's spec names.
    sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/;
        s/"ociVersion": "[^"]*"/"ociVersion": "1.0.2"/' $b/config.json
    # podman's own config.json (hack/configs/podman.json, on the shared disk): adapted as
    # hack/bench.sh does (this bundle's rootfs, `true`, no hooks, the bind-mounted files
    # made here) and without a cgroupsPath, so each runtime and driver names its own.
    if [ -f configs/podman.json ]; then
        mkdir -p $b/podman/files
        jq --arg files $b/podman/files --arg rootfs $b/rootfs '
            .root = {path: $rootfs, readonly: false}
            | .process.args = ["true"] | .process.terminal = false
            | del(.hooks) | del(.linux.cgroupsPath)
            | .mounts |= map(if .type == "bind" then .source = ($files + "/" + (.source | split("/") | last)) else . end)
            ' configs/podman.json >$b/podman/config.json
        for f in hosts .containerenv hostname; do touch $b/podman/files/$f; done
        mkdir -p $b/podman/files/shm
    fi
    for config in minimal podman; do
        bundle=$b
        [ $config = podman ] && bundle=$b/podman
        [ -f $bundle/config.json ] || continue
        for driver in cgroupfs systemd; do
            bench_one $config $bundle $driver || return 0
        done
    done
    # The CVE-2019-5736 protection's cost: corten's usual read-only overlay re-exec, against
    # no re-exec at all (the binary on a read-only bind mount) and the memfd fallback (a
    # state root inside the binary's directory can't be an overlay layer, and 6.1 refuses
    # the detached tmpfs one).
    mkdir -p $b/ro && mount --bind /guest/bin $b/ro && mount -o remount,bind,ro $b/ro
    echo "guest: binary protection, $n x create+start+delete (cgroupfs driver)"
    for how in overlay read-only memfd; do
        bin=/guest/bin/corten root=$b/root
        [ $how = read-only ] && bin=$b/ro/corten
        [ $how = memfd ] && root=/guest/bin/bench-state
        start=$(date +%s%N)
        i=0
        while [ $i -lt "$n" ]; do
            "$bin" --root $root run --bundle $b "bench-$i" >/dev/null 2>$b/err ||
                { echo "guest: corten ($how) run failed: $(tail -1 $b/err)"; break; }
            i=$((i + 1))
        done
        echo "guest:   corten, $how: $((($(date +%s%N) - start) / 1000000 / n)) ms per container"
    done
    umount $b/ro
    rm -rf $b /guest/bin/bench-state
}

export CORTEN_GUEST=1
# crictl, if the host handed it over (the CRI tests skip without it).
[ -x /guest/bin/crictl ] && export CRICTL=/guest/bin/crictl
rc=0
if [ "${1:-}" = --bench ]; then
    # --bench --trace: also show the debug log of corten's first run with each driver.
    [ "${2:-}" = --trace ] && GUEST_BENCH_TRACE=1
    # hack/guest.sh test --bench: the benchmark alone.
    bench
    echo 0 >out/rc
    exit 0
fi
runtimes=/guest/bin/corten
[ "$(cat runc 2>/dev/null)" = 0 ] || runtimes="$runtimes $(command -v runc)"
for rt in $runtimes; do
    echo "guest: === the guest suite with $rt ==="
    start=$(date +%s)
    CORTEN_TEST_RUNTIME=$rt /guest/bin/guest-suite --include-ignored --test-threads=2 --color never "$@" || rc=1
    echo "guest: $(basename "$rt"): $(($(date +%s) - start)) s"
done
# The benchmark on full runs only (no test names given).
[ $# -gt 0 ] || bench
echo "$rc" >out/rc
dmesg -r >out/dmesg 2>/dev/null || true
exit "$rc"
