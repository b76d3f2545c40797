#!/usr/bin/env bash
# Builds (once) a Debian root file system for test and demo app images, from Debian's packages
# with mmdebstrap (the apt sources of this machine). Prints its path.
#   mkrootfs.sh [kms]   the KMS scenario's: the AWS CLI, boto3, OpenSSL and busybox
#   mkrootfs.sh egress  transparent egress's clients: curl, Python, Node.js with the AWS SDK for
#                       JavaScript (KMS client, from npm) in /usr/local/lib/node_modules, busybox
# Kept in ENCLAVER_ROOTFS_CACHE (default /var/tmp/enclaver-rootfs); a new version of a list
# makes a new file.
set -euo pipefail
cache=${ENCLAVER_ROOTFS_CACHE:-/var/tmp/enclaver-rootfs}
case "${1:-kms}" in
  kms) packages=awscli,python3-boto3,openssl,ca-certificates,busybox; out="$cache/bookworm-awscli-v1.tar"; npm_pkgs="" ;;
  egress) packages=curl,python3,nodejs,ca-certificates,busybox; out="$cache/bookworm-egress-v1.tar"
          npm_pkgs="@aws-sdk/client-kms@3.1164.0" ;;
  *) echo "mkrootfs: unknown kind $1 (kms or egress)" >&2; exit 2 ;;
esac
# a partial or mistaken build (not a plain file) is made again
if [ -e "$out" ] && [ ! -f "$out" ]; then rm -rf "$out"; fi
rm -rf "$out.part" "$out.npm"
if [ ! -s "$out" ]; then
  mkdir -p "$cache"
  echo "mkrootfs: building $out from Debian packages ($packages);" \
    "this is done once and takes a few minutes (later runs reuse it) ..." >&2
  # --format: the name of the partial file would not tell mmdebstrap it is to write a tar
  mmdebstrap --quiet --variant=essential --format=tar --include="$packages" bookworm "$out.part" >&2
  if [ -n "$npm_pkgs" ]; then
    echo "mkrootfs: adding $npm_pkgs from npm ..." >&2
    mkdir -p "$out.npm/usr/local/lib"
    (cd "$out.npm/usr/local/lib" && npm install --no-audit --no-fund --no-save --loglevel=error $npm_pkgs >&2)
    rm -f "$out.npm/usr/local/lib/package.json" "$out.npm/usr/local/lib/package-lock.json"
    tar --append -f "$out.part" -C "$out.npm" --owner=0 --group=0 --numeric-owner ./usr/local/lib/node_modules
    rm -rf "$out.npm"
  fi
  mv "$out.part" "$out"
fi
echo "$out"
