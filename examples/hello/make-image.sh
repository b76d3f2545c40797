#!/bin/sh
# Assembles the hello app image without Docker or a registry: busybox, the page in rootfs/ and
# app.sh, written as a docker-archive (by default examples/hello/hello.tar, which enclaver.yaml
# names). Needs Debian's busybox-static (scripts/install-deps.sh installs it).
#   make-image.sh [OUT]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/hello.tar}
root=$(mktemp -d "${TMPDIR:-/tmp}/hello-image-XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin"
cp -r "$here/rootfs/." "$root/"
cp /bin/busybox "$root/bin/busybox"
for tool in sh httpd wget sleep; do ln -s busybox "$root/bin/$tool"; done
install -m 0755 "$here/app.sh" "$root/app.sh"
/usr/bin/python3 "$here/../../scripts/mkimage.py" "$root" "$out" --tag hello:latest \
  --entrypoint /bin/sh /app.sh --env PATH=/bin
echo "$out: the hello app image (hello:latest)"
