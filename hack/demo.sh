#!/usr/bin/env bash
# Set-up and demo for new users: installs what building corten and the demo need (not the
# container engines the test suite uses: hack/test.sh installs those), builds corten, makes
# a busybox bundle at BUNDLE (default /tmp/corten-demo) and runs a container from it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ((EUID != 0)); then
    echo "demo: must run as root; try: sudo $0" >&2
    exit 1
fi

bash hack/install-deps.sh demo
corten=$(bash hack/build.sh)
bundle=${BUNDLE:-/tmp/corten-demo}
id=corten-demo-$$
FORCE=1 CORTEN=$corten hack/mkbundle.sh "$bundle"

trap '"$corten" delete -f "$id" >/dev/null 2>&1 || true' EXIT
echo "demo: running container $id from $bundle"
echo "----------------------------------------"
"$corten" run -b "$bundle" "$id"
echo "----------------------------------------"
echo "demo: done; try editing $bundle/config.json and running: $corten run -b $bundle my-id"
