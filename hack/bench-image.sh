#!/usr/bin/env bash
# Pull+unpack benchmark: corten-image vs `skopeo copy` + `umoci unpack`, the same image
# from the same local registry (Debian's docker-registry on 127.0.0.1), cold store and
# warm store, in one hyperfine run. Needs root (umoci and corten-image keep ownership).
#
# The image: 3 gzip layers made from the host's /usr/lib, /usr/share and /usr/bin
# (FILES entries of each, default 4000).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/env.sh
source hack/env.sh
RUNS=${RUNS:-5}
FILES=${FILES:-4000}
cargo build --release --bin corten-image >/dev/null
BIN=$CORTEN_TARGET_DIR/release/corten-image

W=$(mktemp -d /tmp/corten-bench-image.XXXXXX)
REG_PID=
MNT=
cleanup() {
    [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null
    wait 2>/dev/null
    [[ -n $MNT ]] && umount "$MNT"
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

# Build the OCI layout by hand.
L=$W/layout; mkdir -p "$L/blobs/sha256"
put() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$L/blobs/sha256/$d"; echo "$d"; }
layers=() diffs=()
for dir in usr/lib usr/share usr/bin; do
    (cd / && find "$dir" -xdev \( -type f -o -type l -o -type d \) -size -2M 2>/dev/null \
        | head -n "$FILES" \
        | tar --no-recursion -cf - -T - 2>/dev/null) >"$W/layer.tar" || true
    diffs+=("sha256:$(sha256sum "$W/layer.tar" | cut -d' ' -f1)")
    gzip -1 -c "$W/layer.tar" >"$W/layer.tgz"
    size=$(stat -c %s "$W/layer.tgz")
    layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$(put "$W/layer.tgz")\",\"size\":$size}")
done
diff_json=$(printf '"%s",' "${diffs[@]}"); diff_json="[${diff_json%,}]"
echo "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":$diff_json}}" >"$W/config.json"
csize=$(stat -c %s "$W/config.json"); cdig=$(put "$W/config.json")
layer_json=$(IFS=,; echo "${layers[*]}")
echo "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cdig\",\"size\":$csize},\"layers\":[$layer_json]}" >"$W/manifest.json"
msize=$(stat -c %s "$W/manifest.json"); mdig=$(put "$W/manifest.json")
echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
echo "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$mdig\",\"size\":$msize,\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}}]}" >"$L/index.json"
skopeo copy -q --dest-tls-verify=false "oci:$L:v1" "docker://127.0.0.1:$PORT/bench/image:v1"
REF=127.0.0.1:$PORT/bench/image:v1
echo "bench-image: image of $(du -sh "$L/blobs" | cut -f1) compressed, ${#layers[@]} layers"

# Stores and bundles live on a fresh ext4 (with a journal) on a loop device. This VM's
# root ext4 has no journal, and without one ext4 will not reuse an inode freed in the
# last 30 s, scanning past each (recently_deleted()): after an `rm -rf` of a rootfs every
# file created costs ~0.7 ms more, which would time the filesystem, not the pullers.
truncate -s 16G "$W/disk.img"
mkfs.ext4 -q -F "$W/disk.img"
mkdir "$W/mnt"; mount -o loop "$W/disk.img" "$W/mnt"; MNT=$W/mnt
S=$MNT/s; B=$MNT/b
# Warm stores, filled once before the warm runs.
"$BIN" pull -q --store "$MNT/warm-store" "$REF" "$MNT/warm-b"
skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$MNT/warm-oci:v1"
hyperfine --runs "$RUNS" --export-markdown "${BENCH_MD:-/dev/null}" \
    -n "corten-image cold" --prepare "rm -rf $S $B && sync" \
    "$BIN pull -q --store $S $REF $B" \
    -n "skopeo+umoci cold" --prepare "rm -rf $S $B && sync" \
    "skopeo copy -q --src-tls-verify=false docker://$REF oci:$S:v1 && umoci unpack --image $S:v1 $B" \
    -n "corten-image warm" --prepare "rm -rf $B && sync" \
    "$BIN pull -q --store $MNT/warm-store $REF $B" \
    -n "skopeo+umoci warm" --prepare "rm -rf $B && sync" \
    "skopeo copy -q --src-tls-verify=false docker://$REF oci:$MNT/warm-oci:v1 && umoci unpack --image $MNT/warm-oci:v1 $B"
