#!/usr/bin/env bash
# Pull+unpack benchmark: corten-image vs `skopeo copy` + `umoci unpack`, the same images
# from the same local registry (Debian's docker-registry on 127.0.0.1), cold store and
# warm store (image in the store, new bundle), corten-image's overlay bundles and copied
# ones (--copy), in one hyperfine run; then the disk use of ten bundles of the big image,
# overlay vs copy. Needs root (umoci and corten-image keep ownership; overlay mounts).
#
# The images: "big", 3 gzip layers made from the host's /usr/lib, /usr/share and /usr/bin
# (FILES entries of each, default 4000), and "busybox", one layer of the host's busybox.
# PROFILE=debug times a debug build (default release); CORTEN_IMAGE=PATH a given binary;
# CORTEN_IMAGE_BASE=PATH adds the corten-image cases of a second binary (e.g. main's, for
# before/after figures from the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/env.sh
source hack/env.sh
RUNS=${RUNS:-5}
FILES=${FILES:-4000}
PROFILE=${PROFILE:-release}
BIN=${CORTEN_IMAGE:-}
if [[ -z $BIN ]]; then
    if [[ $PROFILE == release ]]; then
        cargo build --release --bin corten-image >/dev/null
    else
        cargo build --bin corten-image >/dev/null
    fi
    BIN=$CORTEN_TARGET_DIR/$PROFILE/corten-image
fi
BASE=${CORTEN_IMAGE_BASE:-}

W=$(mktemp -d /tmp/corten-bench-image.XXXXXX)
REG_PID=
MNT=
cleanup() {
    [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null
    wait 2>/dev/null
    [[ -n $MNT ]] && umount -R "$MNT"
    rm -rf "$W"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $W/registry}}
http: {addr: 127.0.0.1:$PORT, secret: bench}
YML
docker-registry serve "$W/registry.yml" 2>"$W/registry.log" & REG_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

# Build an OCI layout by hand: image NAME from the tar files given, pushed as bench/NAME:v1.
image() {
    local name=$1 L=$W/layout-$1 layers=() diffs=() t size
    shift
    mkdir -p "$L/blobs/sha256"
    put() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$L/blobs/sha256/$d"; echo "$d"; }
    for t in "$@"; do
        diffs+=("sha256:$(sha256sum "$t" | cut -d' ' -f1)")
        gzip -1 -c "$t" >"$W/layer.tgz"
        size=$(stat -c %s "$W/layer.tgz")
        layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$(put "$W/layer.tgz")\",\"size\":$size}")
    done
    local diff_json layer_json csize cdig msize mdig
    diff_json=$(printf '"%s",' "${diffs[@]}"); diff_json="[${diff_json%,}]"
    echo "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":$diff_json}}" >"$W/config.json"
    csize=$(stat -c %s "$W/config.json"); cdig=$(put "$W/config.json")
    layer_json=$(IFS=,; echo "${layers[*]}")
    echo "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cdig\",\"size\":$csize},\"layers\":[$layer_json]}" >"$W/manifest.json"
    msize=$(stat -c %s "$W/manifest.json"); mdig=$(put "$W/manifest.json")
    echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
    echo "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$mdig\",\"size\":$msize,\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}}]}" >"$L/index.json"
    skopeo copy -q --dest-tls-verify=false "oci:$L:v1" "docker://127.0.0.1:$PORT/bench/$name:v1"
    echo "bench-image: $name: $(du -sh "$L/blobs" | cut -f1) compressed, ${#layers[@]} layers"
}
tars=()
for dir in usr/lib usr/share usr/bin; do
    t=$W/layer-${dir//\//-}.tar
    (cd / && find "$dir" -xdev \( -type f -o -type l -o -type d \) -size -2M 2>/dev/null \
        | head -n "$FILES" \
        | tar --no-recursion -cf - -T - 2>/dev/null) >"$t" || true
    tars+=("$t")
done
image big "${tars[@]}"
mkdir -p "$W/bb/bin" "$W/bb/tmp" "$W/bb/etc"
cp "$(command -v busybox)" "$W/bb/bin/busybox"
ln -s busybox "$W/bb/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' >"$W/bb/etc/passwd"
tar -C "$W/bb" -cf "$W/busybox.tar" .
image busybox "$W/busybox.tar"
REF=127.0.0.1:$PORT/bench/big:v1
BB=127.0.0.1:$PORT/bench/busybox:v1

# Stores and bundles live on a fresh ext4 (with a journal) on a loop device. This VM's
# root ext4 has no journal, and without one ext4 will not reuse an inode freed in the
# last 30 s, scanning past each (recently_deleted()): after an `rm -rf` of a rootfs every
# file created costs ~0.7 ms more, which would time the filesystem, not the pullers.
truncate -s 16G "$W/disk.img"
mkfs.ext4 -q -F "$W/disk.img"
mkdir "$W/mnt"; mount -o loop "$W/disk.img" "$W/mnt"; MNT=$W/mnt
S=$MNT/s; B=$MNT/b
# Warm stores, filled once before the warm runs: corten-image's (the layers unpacked, as
# overlay lowers and as tars for --copy) and skopeo's.
WS=$MNT/warm-store
for r in "$REF" "$BB"; do
    "$BIN" pull -q --store "$WS" "$r" "$MNT/warm-b" && "$BIN" rm-bundle "$MNT/warm-b"
    "$BIN" pull -q --copy --store "$WS" "$r" "$MNT/warm-b" && "$BIN" rm-bundle "$MNT/warm-b"
done
skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$MNT/warm-oci:v1"
skopeo copy -q --src-tls-verify=false "docker://$BB" "oci:$MNT/warm-oci:bb"
# Each run starts without the bundle (an overlay one unmounted first); COLD=0 skips the
# cold runs (slow in a debug build).
CLEAN="$BIN rm-bundle $B 2>/dev/null; rm -rf $B && sync"
runs=()
case_() { runs+=(-n "$1" --prepare "$2" "$3"); }
SKOPEO="skopeo copy -q --src-tls-verify=false"
if [[ ${COLD:-1} != 0 ]]; then
    case_ "corten-image cold (overlay)" "$CLEAN; rm -rf $S && sync" "$BIN pull -q --store $S $REF $B"
    if [[ -n $BASE ]]; then
        case_ "base cold (overlay)" "$CLEAN; rm -rf $S && sync" "$BASE pull -q --store $S $REF $B"
    fi
    case_ "corten-image cold --copy" "$CLEAN; rm -rf $S && sync" "$BIN pull -q --copy --store $S $REF $B"
    case_ "skopeo+umoci cold" "$CLEAN; rm -rf $S && sync" \
        "$SKOPEO docker://$REF oci:$S:v1 && umoci unpack --image $S:v1 $B"
fi
for img in "big $REF v1" "busybox $BB bb"; do
    read -r name ref tag <<<"$img"
    case_ "$name: corten-image warm (overlay)" "$CLEAN" "$BIN pull -q --store $WS $ref $B"
    case_ "$name: corten-image warm --copy" "$CLEAN" "$BIN pull -q --copy --store $WS $ref $B"
    if [[ -n $BASE ]]; then
        case_ "$name: base warm (overlay)" "$CLEAN" "$BASE pull -q --store $WS $ref $B"
        case_ "$name: base warm --copy" "$CLEAN" "$BASE pull -q --copy --store $WS $ref $B"
    fi
    case_ "$name: skopeo+umoci warm" "$CLEAN" \
        "$SKOPEO docker://$ref oci:$MNT/warm-oci:$tag && umoci unpack --image $MNT/warm-oci:$tag $B"
done
hyperfine --runs "$RUNS" --export-markdown "${BENCH_MD:-/dev/null}" "${runs[@]}"
eval "$CLEAN"

# Disk use of ten bundles of the big image (du -x: not into the overlay mounts, so an
# overlay bundle counts its upper directory; the store's layers are counted once).
for mode in overlay copy; do
    flag=; [[ $mode == copy ]] && flag=--copy
    for i in $(seq 10); do
        "$BIN" pull -q $flag --store "$WS" "$REF" "$MNT/ten-$mode/b$i"
    done
done
echo "bench-image: ten bundles of the big image, disk use (du -sx):"
echo "  store (blobs, layer tars and unpacked layers): $(du -sxh "$WS" | cut -f1)"
echo "  store's unpacked layers (the overlays' lowers): $(du -sxh "$WS/layers" | cut -f1)"
echo "  ten overlay bundles: $(du -sxh "$MNT/ten-overlay" | cut -f1)"
echo "  ten --copy bundles: $(du -sxh "$MNT/ten-copy" | cut -f1)"
for i in $(seq 10); do "$BIN" rm-bundle "$MNT/ten-overlay/b$i"; done
