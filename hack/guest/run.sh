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
echo "guest: $(uname -sr), $(nproc) CPUs, cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "guest: AppArmor: $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)"
export CORTEN_GUEST=1
rc=0
runtimes=/guest/bin/corten
[ "$(cat runc 2>/dev/null)" = 0 ] || runtimes="$runtimes $(command -v runc)"
for rt in $runtimes; do
    echo "guest: === the guest suite with $rt ==="
    start=$(date +%s)
    CORTEN_TEST_RUNTIME=$rt /guest/bin/guest-suite --test-threads=2 --color never "$@" || rc=1
    echo "guest: $(basename "$rt"): $(($(date +%s) - start)) s"
done
echo "$rc" >out/rc
dmesg -r >out/dmesg 2>/dev/null || true
exit "$rc"
