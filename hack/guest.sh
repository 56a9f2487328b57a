#!/usr/bin/env bash
# The production-shaped test host: a Debian 12 guest (systemd, pure cgroup v2, kernel 6.1)
# under qemu, where corten's cgroup v2 code runs with real controllers; the same image
# booted with systemd on cgroup v1 (hybrid) for the v1 tests.
#
#   hack/guest.sh [test] [NAME...]  build corten and the guest suite (guest/main.rs), boot the
#                                   guest, run the suite (only tests matching NAME if given)
#                                   with corten and then with runc, print every test's result
#                                   and the guest kernel's warnings; non-zero on any failure.
#                                   A full run (no NAME) ends with the lifecycle benchmark,
#                                   then a second boot on cgroup v1 follows (the
#                                   kernel command line systemd.unified_cgroup_hierarchy=0),
#                                   running the v1 tests (guest/systemd_v1.rs)
#   hack/guest.sh test --bench [--trace]  only the lifecycle benchmark (corten, crun, runc;
#                                   with the cgroupfs and the systemd cgroup drivers;
#                                   --trace shows corten's debug log of a first run)
#   hack/guest.sh test --v1 [NAME...]  only the cgroup v1 boot, running the tests matching
#                                   NAME (default: the v1 tests)
#   hack/guest.sh shell             boot the guest with a root shell on this terminal; the
#                                   freshly built binaries are on /guest (see /guest/run.sh;
#                                   `poweroff` or Ctrl-A x leaves)
#   hack/guest.sh image             only build (or find in the cache) the guest image
#
# The image is built from Debian packages only (debootstrap + apt in a chroot, package list
# in hack/guest/packages) and cached outside the work tree in $GUEST_CACHE/<key>
# (default /var/cache/corten-guest; key = hash of the package list, the files in hack/guest/
# baked into the image and IMAGE_VERSION), so a second run boots in seconds. The root disk
# is used copy-on-write (the cache is never modified); the host hands the binaries over, and
# gets the results back, on a second small ext4 disk read with debugfs after poweroff.
# Whatever happens, no qemu is left running and nothing stays mounted (the image build
# mounts only inside a private mount namespace).
#
# Environment: GUEST_CACHE, GUEST_ACCEL (auto|kvm|tcg; auto uses KVM only if a guest
# kernel really boots with it), GUEST_TIMEOUT (seconds for one boot, default 1500),
# GUEST_RUNC (1: also run the suite with runc, the reference; default 1),
# GUEST_PROFILE (release|debug: which build of corten and the suite, default release),
# GUEST_V1_APPEND (the kernel arguments of the cgroup v1 boot, see V1_APPEND),
# GUEST_MIRROR (Debian mirror; default: the machine's apt sources), CRICTL (crictl for the
# CRI tests, handed over on the binaries disk; default ../shared/tools/cri-tools/crictl).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD

# Bump when the build steps below change in a way the cache key can't see.
IMAGE_VERSION=1
GUEST_CACHE=${GUEST_CACHE:-/var/cache/corten-guest}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-1500}
GUEST_ACCEL=${GUEST_ACCEL:-auto}
GUEST_RUNC=${GUEST_RUNC:-1}
GUEST_PROFILE=${GUEST_PROFILE:-release}
SUITE=bookworm
DISK_SIZE=3000M

log() { echo "guest: $*" >&2; }
die() {
    echo "guest: error: $*" >&2
    exit 1
}

need() {
    local tool=$1 pkg=$2
    command -v "$tool" >/dev/null ||
        die "'$tool' not found: install the Debian package $pkg (hack/install-deps.sh does)"
}

((EUID == 0)) || die "must run as root (debootstrap, chroot, containers in the guest)"

# ---------------------------------------------------------------------------------------
# Cleanup: every qemu this script started is killed, every temp dir removed.
# ---------------------------------------------------------------------------------------
PIDS=()
GROUPS_TO_KILL=()
TMPS=()
cleanup() {
    local pid
    for pid in "${GROUPS_TO_KILL[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    local d
    for d in "${TMPS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# The image
# ---------------------------------------------------------------------------------------
packages() { # the packages of group $1 (base, kernel, engines, tools) or of all
    sed -e 's/#.*//' hack/guest/packages |
        awk -v g="$1" -F: 'NF == 2 && (g == "" || $1 == g) {print $2}' | xargs
}

image_key() {
    { echo "$IMAGE_VERSION $SUITE $DISK_SIZE"; cat hack/guest/packages hack/guest/corten-guest.service \
        hack/guest/corten-guest-boot hack/guest/autologin.conf; } | sha256sum | cut -c1-16
}

mirror() {
    if [[ -n ${GUEST_MIRROR:-} ]]; then
        echo "$GUEST_MIRROR"
        return
    fi
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | grep -oE '^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+/debian/?([[:space:]]|$)' |
        awk '{print $NF}' | head -1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}

# Runs inside a private mount namespace (unshare -m): every mount made here disappears
# with it, even if the build is killed.
build_root() {
    local root=$1 mirror=$2
    local base
    base=$(packages base | tr ' ' ,)
    log "debootstrap $SUITE from $mirror"
    debootstrap --variant=minbase --include="$base" "$SUITE" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
        { tail -20 "$root.debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    log "apt-get install $(packages kernel) $(packages engines) $(packages rootless) $(packages tools)"
    # shellcheck disable=SC2046
    chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get install -y -q \
        --no-install-recommends $(packages kernel) $(packages engines) $(packages rootless) $(packages tools) \
        >"$root.apt.log" 2>&1 || { tail -30 "$root.apt.log" >&2; die "apt-get install in the guest root failed (log above)"; }
    rm -f "$root/usr/sbin/policy-rc.d"
    chroot "$root" apt-get clean

    # The system: a root without a password (the console shell), the disk as /, a fixed
    # name, multi-user without the timers and daemons a test run doesn't need.
    echo corten-guest >"$root/etc/hostname"
    # The disk the host hands over (binaries in, results out) is /guest, in both modes.
    printf '%s\n' '/dev/vda / ext4 rw,errors=remount-ro 0 1' \
        'LABEL=corten-guest /guest ext4 rw,nofail,x-systemd.device-timeout=10s 0 0' >"$root/etc/fstab"
    chroot "$root" passwd -d root >/dev/null
    chroot "$root" systemctl set-default multi-user.target >/dev/null 2>&1
    local unit
    for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
        fstrim.timer man-db.timer docker.service docker.socket containerd.service \
        podman-auto-update.timer podman-restart.service podman-clean-transient.service \
        systemd-timesyncd.service; do
        chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
    done
    # containerd is masked above only so it never starts by itself; tests start their own.
    rm -f "$root/etc/systemd/system/containerd.service"
    chroot "$root" systemctl disable containerd.service >/dev/null 2>&1 || true
    install -m 755 hack/guest/corten-guest-boot "$root/usr/local/sbin/corten-guest-boot"
    install -m 644 hack/guest/corten-guest.service "$root/etc/systemd/system/corten-guest.service"
    chroot "$root" systemctl enable corten-guest.service >/dev/null 2>&1
    mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
    install -m 644 hack/guest/autologin.conf "$root/etc/systemd/system/serial-getty@ttyS0.service.d/"
    mkdir -p "$root/guest"
}

ensure_image() {
    local key dir
    key=$(image_key)
    dir=$GUEST_CACHE/$key
    IMAGE_DIR=$dir
    if [[ -f $dir/disk.img && -f $dir/vmlinuz && -f $dir/initrd.img ]]; then
        log "image $dir (cached)"
        return
    fi
    need debootstrap debootstrap
    need mkfs.ext4 e2fsprogs
    need unshare util-linux
    mkdir -p "$GUEST_CACHE"
    # One build at a time per cache; a concurrent run waits for it and then uses it.
    exec 9>"$GUEST_CACHE/.lock"
    flock 9
    if [[ -f $dir/disk.img ]]; then
        exec 9>&-
        log "image $dir (built meanwhile)"
        return
    fi
    local t0=$SECONDS build=$dir.build.$$
    TMPS+=("$build" "$build.root" "$build.root.debootstrap.log" "$build.root.apt.log")
    rm -rf "$build"
    mkdir -p "$build"
    log "building the image (cold: a few minutes; cached in $dir afterwards)"
    local m
    m=$(mirror)
    export -f build_root packages log die
    export SUITE
    # Its own process group, so that an interrupted build is killed whole (cleanup).
    setsid unshare --mount --propagation private bash -c 'set -euo pipefail; build_root "$1" "$2"' \
        build "$build.root" "$m" &
    local bpid=$!
    GROUPS_TO_KILL+=("$bpid")
    wait "$bpid" || die "building the image failed"
    cp "$build.root"/boot/vmlinuz-* "$build/vmlinuz"
    cp "$build.root"/boot/initrd.img-* "$build/initrd.img"
    mkfs.ext4 -q -L corten-root -d "$build.root" "$build/disk.img" "$DISK_SIZE" >/dev/null
    packages "" | tr ' ' '\n' >"$build/packages"
    chroot "$build.root" dpkg-query -W >"$build/versions"
    rm -rf "$build.root"
    # Only the current image stays in the cache.
    find "$GUEST_CACHE" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name '*.build.*' \
        -exec rm -rf {} +
    mv "$build" "$dir"
    exec 9>&-
    log "image built in $((SECONDS - t0)) s: $dir ($(du -sh --apparent-size "$dir/disk.img" | cut -f1) disk, $(du -sh "$dir/disk.img" | cut -f1) used)"
}

# ---------------------------------------------------------------------------------------
# Booting
# ---------------------------------------------------------------------------------------
QEMU=qemu-system-x86_64

# KVM only where a guest kernel really boots with it (nested virtualization may hang right
# after the boot ROM): boot the kernel alone and look for its banner. Cached per host kernel
# and qemu version.
choose_accel() {
    case $GUEST_ACCEL in
    tcg | kvm)
        ACCEL=$GUEST_ACCEL
        return
        ;;
    auto) ;;
    *) die "GUEST_ACCEL must be auto, kvm or tcg" ;;
    esac
    ACCEL=tcg
    [[ -r /dev/kvm && -w /dev/kvm ]] || return 0
    local stamp
    stamp="$GUEST_CACHE/kvm-$(uname -r)-$($QEMU --version | head -1 | awk '{print $4}')"
    if [[ -f $stamp ]]; then
        ACCEL=$(cat "$stamp")
        return
    fi
    local probe
    probe=$(mktemp -d)
    TMPS+=("$probe")
    timeout 20 "$QEMU" -accel kvm -m 256 -nographic -no-reboot -kernel "$IMAGE_DIR/vmlinuz" \
        -append "console=ttyS0 panic=-1" </dev/null >"$probe/out" 2>&1 || true
    if grep -q 'Linux version' "$probe/out"; then ACCEL=kvm; fi
    echo "$ACCEL" >"$stamp"
    log "KVM probe: using $ACCEL"
}

# Boot the guest. $1: extra kernel arguments; $2: the shared disk; $3: the work dir for
# the console log and the test stream. Interactive (shell) when $4 = shell.
boot() {
    local append=$1 shared=$2 work=$3 mode=${4:-}
    local args=(-accel "$ACCEL" -m 3072 -smp 2 -no-reboot
        -kernel "$IMAGE_DIR/vmlinuz" -initrd "$IMAGE_DIR/initrd.img"
        -drive "file=$IMAGE_DIR/disk.img,format=raw,if=virtio,snapshot=on"
        -drive "file=$shared,format=raw,if=virtio"
        -append "console=ttyS0 root=/dev/vda rw quiet panic=-1 $append")
    [[ $ACCEL == kvm ]] && args+=(-cpu host)
    if [[ $mode == shell ]]; then
        "$QEMU" "${args[@]}" -nographic
        return
    fi
    "$QEMU" "${args[@]}" -display none -monitor none \
        -serial "file:$work/console.log" -serial "file:$work/tests.log" </dev/null \
        >"$work/qemu.log" 2>&1 &
    QPID=$!
    PIDS+=("$QPID")
}

# ---------------------------------------------------------------------------------------
# The binaries and the shared disk
# ---------------------------------------------------------------------------------------
build_binaries() {
    # shellcheck source=hack/env.sh
    source hack/env.sh
    local flag=() dir=release
    if [[ $GUEST_PROFILE == release ]]; then flag=(--release); else dir=debug; fi
    log "building corten and the guest suite ($GUEST_PROFILE)"
    cargo build "${flag[@]}" --bins -q || die "building corten failed"
    CORTEN=$CORTEN_TARGET_DIR/$dir/corten
    SUITE_BIN=$(cargo test "${flag[@]}" --test guest --no-run --message-format=json -q |
        jq -r 'select(.reason == "compiler-artifact" and .target.name == "guest" and .executable != null) | .executable') ||
        die "building the guest suite failed"
    [[ -x $SUITE_BIN ]] || die "could not find the guest suite's test binary"
    if ldd "$CORTEN" >/dev/null 2>&1 || ldd "$SUITE_BIN" >/dev/null 2>&1; then
        die "the binaries must be static (see .cargo/config.toml)"
    fi
}

make_shared() { # $1: work dir; the rest: arguments for the suite
    local work=$1
    shift
    local stage=$work/stage
    mkdir -p "$stage/bin" "$stage/out"
    cp "$CORTEN" "$stage/bin/corten"
    cp "$SUITE_BIN" "$stage/bin/guest-suite"
    # crictl for the CRI tests (guest/cri.rs), as the host's tests find it; without it they
    # print a skip. On the binaries disk, not in the image: no rebuild when it changes.
    local crictl=${CRICTL:-$ROOT_DIR/../shared/tools/cri-tools/crictl}
    if [[ -x $crictl ]]; then cp "$crictl" "$stage/bin/crictl"; fi
    cp hack/guest/run.sh "$stage/run.sh"
    mkdir -p "$stage/configs" && cp hack/configs/podman.json "$stage/configs/"
    printf '%s\n' "$@" >"$stage/args"
    echo "$GUEST_RUNC" >"$stage/runc"
    mkfs.ext4 -q -L corten-guest -d "$stage" "$work/shared.img" 512M >/dev/null
}

debugfs_cat() { debugfs -R "cat $2" "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------
# Everything up to the boot: the binaries, the image, the accelerator.
prepare() {
    need "$QEMU" qemu-system-x86
    need debugfs e2fsprogs
    need jq jq
    build_binaries
    ensure_image
    choose_accel
}

# A new work dir ($WORK) with the shared disk holding the suite's arguments ($@).
new_work() {
    WORK=$(mktemp -d /var/tmp/corten-guest-run.XXXXXX)
    TMPS+=("$WORK")
    make_shared "$WORK" "$@"
}

# The kernel arguments of the cgroup v1 boot: systemd mounts the v1 hierarchies (hybrid:
# plus cgroup2 at /sys/fs/cgroup/unified; GUEST_V1_APPEND="systemd.unified_cgroup_hierarchy=0
# systemd.legacy_systemd_cgroup_controller=1" gives the full legacy layout). systemd >= 256
# would also need SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1; Debian 12 has 252.
V1_APPEND=${GUEST_V1_APPEND:-systemd.unified_cgroup_hierarchy=0}
# The tests of that boot (name filters of the suite: guest/systemd_v1.rs, and the v1
# checkpoint test of guest/checkpoint_engines.rs).
V1_TESTS="systemd_v1:: checkpoint_engines::counter_restored_on_v1"

# One boot running the suite: $1 = extra kernel arguments, $2 = what to call it, the rest
# = the suite's arguments. Returns non-zero when tests failed.
run_boot() {
    local append=$1 what=$2
    shift 2
    new_work "$@"
    local work=$WORK
    log "booting $what ($ACCEL, -m 3072 -smp 2${append:+, $append})"
    local t0=$SECONDS
    : >"$work/tests.log"
    boot "corten.run $append" "$work/shared.img" "$work"
    # Stream the guest's test output as it comes (the tty adds carriage returns).
    tail -n +1 -s 0.5 -f --pid="$QPID" "$work/tests.log" | sed -u 's/\r$//' &
    local tailpid=$! timed_out=0
    PIDS+=("$tailpid")
    while kill -0 "$QPID" 2>/dev/null; do
        if ((SECONDS - t0 > GUEST_TIMEOUT)); then
            timed_out=1
            kill -KILL "$QPID" 2>/dev/null || true
            break
        fi
        sleep 1
    done
    wait "$QPID" 2>/dev/null || true
    wait "$tailpid" 2>/dev/null || true
    log "guest ($what) ran $((SECONDS - t0)) s (boot, suite, poweroff)"

    local rc kernel
    rc=$(debugfs_cat "$work/shared.img" /out/rc | tr -dc '0-9')
    kernel=$(debugfs_cat "$work/shared.img" /out/dmesg || true)
    if [[ -n $kernel ]]; then
        # The guest kernel's errors (levels 0-3) and its OOM kills (the tests make some);
        # the whole log stays with the run (GUEST_KEEP=1).
        local errs ooms
        errs=$(grep -E '^<[0-3]>' <<<"$kernel" | grep -v 'Memory cgroup out of memory' |
            sed 's/^<[0-9]>/  /' || true)
        ooms=$(grep -c 'Memory cgroup out of memory' <<<"$kernel" || true)
        log "guest kernel ($what): ${ooms:-0} memory cgroup OOM kills; errors: ${errs:+(below)}${errs:-none}"
        [[ -n $errs ]] && echo "$errs" >&2
    fi
    if [[ ${GUEST_KEEP:-0} == 1 ]]; then
        local keep=/var/tmp/corten-guest-last${append:+-v1}
        rm -rf "$keep"
        cp -a "$work" "$keep"
        log "run kept in $keep"
    fi
    if ((timed_out)); then
        tail -30 "$work/console.log" >&2 || true
        log "error: the guest ($what) did not finish within $GUEST_TIMEOUT s (console above)"
        return 1
    fi
    if [[ -z $rc ]]; then
        tail -40 "$work/console.log" | sed 's/\r$//' >&2 || true
        cat "$work/qemu.log" >&2 || true
        log "error: the guest run ($what) left no result (console above)"
        return 1
    fi
    ((rc == 0)) || { log "error: guest tests failed ($what)"; return 1; }
    log "guest tests passed ($what)"
}

# `test [--v1] [NAME...]`: with names, one boot (cgroup v2, or v1 with --v1) running the
# tests that match; without, the whole suite on v2, then the v1 tests on a v1 boot.
cmd_test() {
    local v1=0
    if [[ ${1:-} == --v1 ]]; then
        v1=1
        shift
    fi
    prepare
    if ((v1)); then
        (($# > 0)) || set -- "$V1_TESTS"
        run_boot "$V1_APPEND" "cgroup v1" "$@" || die "guest tests failed"
        return
    fi
    local failed=0
    run_boot "" "cgroup v2" "$@" || failed=1
    if (($# == 0)); then
        run_boot "$V1_APPEND" "cgroup v1" "$V1_TESTS" || failed=1
    fi
    ((failed == 0)) || die "guest tests failed"
    log "guest tests passed"
}

cmd_shell() {
    prepare
    new_work
    local work=$WORK
    log "booting ($ACCEL) with a root shell on this terminal; the binaries are on /guest"
    log "(leave with 'poweroff', or Ctrl-A x)"
    boot "corten.shell" "$work/shared.img" "$work" shell
}

case ${1:-test} in
test)
    shift || true
    cmd_test "$@"
    ;;
shell) cmd_shell ;;
image)
    ensure_image
    echo "$IMAGE_DIR"
    ;;
-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
*) cmd_test "$@" ;;
esac
