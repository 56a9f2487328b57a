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
# The lifecycle benchmark on v2 (create + start + wait + delete of busybox `true`), each
# runtime on the same bundle in turn. TCG makes absolute times meaningless: the ratios count.
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
    echo "guest: lifecycle benchmark, $n x create+start+delete of busybox true (cgroupfs, v2)"
    for rt in /guest/bin/corten $(command -v crun) $(command -v runc); do
        name=$(basename "$rt")
        start=$(date +%s%N)
        i=0
        while [ $i -lt "$n" ]; do
            "$rt" --root $b/root run --bundle $b "bench-$i" >/dev/null 2>$b/err ||
                { echo "guest: $name run failed: $(tail -1 $b/err)"; return 0; }
            i=$((i + 1))
        done
        ms=$((($(date +%s%N) - start) / 1000000 / n))
        eval "ms_$name=$ms"
        echo "guest:   $name: $ms ms per container"
    done
    echo "guest: corten/crun = $(awk "BEGIN {printf \"%.2f\", $ms_corten / $ms_crun}")x," \
        "corten/runc = $(awk "BEGIN {printf \"%.2f\", $ms_corten / $ms_runc}")x"
    rm -rf $b
}

export CORTEN_GUEST=1
rc=0
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
