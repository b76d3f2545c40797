#!/usr/bin/env bash
# Builds (once) the Debian root file system the KMS scenario's app image is made from: the AWS
# CLI, boto3, OpenSSL and busybox, from Debian's packages with mmdebstrap. Prints its path.
# Kept in ENCLAVER_ROOTFS_CACHE (default /var/tmp/enclaver-rootfs); a new version of this list
# makes a new file.
set -euo pipefail
cache=${ENCLAVER_ROOTFS_CACHE:-/var/tmp/enclaver-rootfs}
packages=awscli,python3-boto3,openssl,ca-certificates,busybox
out="$cache/bookworm-awscli-v1.tar"
# a partial or mistaken build (not a plain file) is made again
if [ -e "$out" ] && [ ! -f "$out" ]; then rm -rf "$out"; fi
rm -rf "$out.part"
if [ ! -s "$out" ]; then
  mkdir -p "$cache"
  echo "mkrootfs: building $out from Debian packages ($packages) ..." >&2
  # --format: the name of the partial file would not tell mmdebstrap it is to write a tar
  mmdebstrap --quiet --variant=essential --format=tar --include="$packages" bookworm "$out.part" \
    "deb http://deb.debian.org/debian bookworm main" >&2
  mv "$out.part" "$out"
fi
echo "$out"
