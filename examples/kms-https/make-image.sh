#!/bin/sh
# Assembles the kms-https app image without Docker or a registry: a Debian root file system with
# the AWS CLI and boto3 (scripts/mkrootfs.sh: built once, a few minutes), the app, its TLS
# certificate and its KMS-encrypted key, written as a docker-archive (by default
# examples/kms-https/kms-https.tar, which enclaver.yaml names). The certificate and the encrypted
# key are taken from $KMS_HTTPS_SECRETS (default: this folder). ENV=VALUE arguments are added to
# the image's environment.
#   make-image.sh [OUT [ENV=VALUE...]]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/kms-https.tar}
[ $# -gt 0 ] && shift
secrets=${KMS_HTTPS_SECRETS:-$here}
for f in cert.pem key.pem.enc; do
  if [ ! -f "$secrets/$f" ]; then
    echo "make-image.sh: $secrets/$f is missing: make the certificate and encrypt its key first (README.md)" >&2
    exit 1
  fi
done
rootfs=$("$here/../../scripts/mkrootfs.sh")
root=$(mktemp -d "${TMPDIR:-/tmp}/kms-https-image-XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/app"
cp "$here/entrypoint.sh" "$here/server.py" "$secrets/cert.pem" "$secrets/key.pem.enc" "$root/app/"
envs=""
for e in "$@"; do envs="$envs --env $e"; done
# shellcheck disable=SC2086
/usr/bin/python3 "$here/../../scripts/mkimage.py" "$root" "$out" --tag kms-https:app \
  --base-layer "$rootfs" --entrypoint /app/entrypoint.sh \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env AWS_DEFAULT_REGION=us-east-1 $envs
echo "$out: the kms-https app image (kms-https:app)"
