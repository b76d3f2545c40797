#!/usr/bin/env bash
# The demo: what enclaver does today, end to end on this machine. Validates the hello example's
# manifest, checks hosts against its egress policy, builds a signed EIF from raw sections with a
# bootstrap ramdisk written as nitro-cli writes it, describes and verifies it, and shows that a
# corrupted copy is refused.
set -euo pipefail
cd "$(dirname "$0")/.."
E=${ENCLAVER:-build/enclaver}
INIT=build/enclaver-init
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$E" manifest -f examples/hello/enclaver.yaml
step "$E" policy check -f examples/hello/enclaver.yaml kms.us-east-1.amazonaws.com \
  kms.cn-north-1.amazonaws.com 169.254.169.254 example.com || true

# A kernel: the machine's own if readable, else a stand-in file (the EIF layer does not care).
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | head -1 || true)
if [ -z "$kernel" ] || [ ! -r "$kernel" ]; then
  kernel=$work/bzImage
  head -c 1048576 /dev/urandom >"$kernel"
fi
step "$E" eif bootstrap --init "$INIT" -o "$work/bootstrap.cpio"
printf 'hello from the customer ramdisk\n' >"$work/customer.img"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout "$work/key.pem" \
  -out "$work/cert.pem" -days 30 -subj /CN=enclaver-demo 2>/dev/null
step "$E" eif build --kernel "$kernel" \
  --cmdline "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on" \
  --ramdisk "$work/bootstrap.cpio" --ramdisk "$work/customer.img" --name hello \
  --signing-certificate "$work/cert.pem" --private-key "$work/key.pem" -o "$work/hello.eif"
step "$E" eif describe "$work/hello.eif"
step "$E" eif pcr --signing-certificate "$work/cert.pem"

cp "$work/hello.eif" "$work/corrupt.eif"
printf '\x00' | dd of="$work/corrupt.eif" bs=1 seek=2000 conv=notrunc status=none
step "$E" eif extract "$work/corrupt.eif" --kernel -o "$work/kernel.out" || echo "(refused, as it should be)"
