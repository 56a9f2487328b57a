#!/usr/bin/env bash
# Build an OCI bundle at DIR: a busybox-static rootfs plus config.json.
# Usage: hack/mkbundle.sh DIR [ARGS...]   (ARGS become process.args; FORCE=1 overwrites)
# config.json comes from `$CORTEN spec` if CORTEN is set, else `runc spec`.
set -euo pipefail

if (($# < 1)); then
    echo "usage: $0 DIR [ARGS...]" >&2
    exit 2
fi
dir=$1
shift
if (($# == 0)); then
    set -- sh -c 'echo hello from corten; cat /etc/hostname 2>/dev/null; id'
fi

if [[ -d $dir && -n $(ls -A "$dir") ]]; then
    if [[ ${FORCE:-0} != 1 ]]; then
        echo "mkbundle: $dir is not empty (set FORCE=1 to overwrite)" >&2
        exit 1
    fi
    rm -rf "${dir:?}/rootfs" "${dir:?}/config.json"
fi

rootfs=$dir/rootfs
mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,etc,root}
chmod 1777 "$rootfs/tmp"
chmod 700 "$rootfs/root"
cp /bin/busybox "$rootfs/bin/busybox"
# Applet symlinks point at /bin/busybox *inside* the rootfs (busybox --install
# would link to the host path of the binary instead).
for applet in $("$rootfs/bin/busybox" --list); do
    [[ $applet == busybox ]] || ln -sf /bin/busybox "$rootfs/bin/$applet"
done
cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP

if [[ -n ${CORTEN:-} ]]; then
    "$CORTEN" spec -b "$dir"
else
    (cd "$dir" && runc spec)
fi

args=$(jq -n '$ARGS.positional' --args -- "$@")
jq --argjson args "$args" '.process.terminal = false | .process.args = $args' \
    "$dir/config.json" > "$dir/config.json.tmp"
mv "$dir/config.json.tmp" "$dir/config.json"
echo "mkbundle: bundle ready at $dir"
