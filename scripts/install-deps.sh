#!/usr/bin/env bash
# Installs what building, testing and the demo need, from Debian 12 packages only.
# Idempotent: installs only the packages that are missing. Needs root (apt-get).
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
  libssl-dev libjansson-dev libyaml-dev zlib1g-dev libarchive-dev libcurl4-openssl-dev
  libc-ares-dev libseccomp-dev libhttp-parser-dev
  openssl ca-certificates cpio file procps python3 python3-pytest python3-cbor2 python3-cryptography
  docker.io docker-registry awscli python3-boto3 mmdebstrap
  qemu-system-x86 iptables iproute2 busybox-static curl groff-base zsh
)

# Test apps are made of busybox; curl is the demo's and the tests' client; groff renders and zsh
# loads the man pages and completions the tests check. Baselines for `make bench` (socat,
# nginx's stream proxy) only when asked for.
case "${1:-}" in
  --bench) packages+=(socat nginx-light libnginx-mod-stream) ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root (it uses apt-get)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm fetches the AWS SDK for JavaScript for the transparent egress tests' app image; a Node.js
# from elsewhere may bring its own npm, so Debian's is installed only when there is none.
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: npm is missing; run this script as root (it uses apt-get)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
fi

# The default boot kit: Debian's cloud kernel (LZ4, quick to unpack under software emulation)
# and the modules an enclave's boot needs from it, in load order (each after what it depends
# on): virtio over MMIO and vsock, which enclaver-init loads at boot from the bootstrap ramdisk;
# in modules/net/, legacy iptables with NAT, REDIRECT and REJECT (the Nitro kernels build these
# in), which odyn loads only when it sets transparent egress up. A kit of an older layout
# (kit-version) is made again.
KIT=/usr/local/share/enclaver/bootkit/x86_64
KIT_VERSION=3
if [ ! -s "$KIT/bzImage" ] || [ ! -s "$KIT/release" ] || [ "$(cat "$KIT/kit-version" 2>/dev/null)" != "$KIT_VERSION" ]; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$pkg" ]; then
    echo "install-deps: cannot find Debian's cloud kernel package (run apt-get update)" >&2
    exit 1
  fi
  rel=${pkg#linux-image-}
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null)
  rm -rf "$KIT.tmp"
  mkdir -p "$tmp/x" "$KIT.tmp/modules/net"
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  cp "$tmp/x/boot/vmlinuz-$rel" "$KIT.tmp/bzImage"
  n=1
  for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio net/vmw_vsock/vsock \
      net/vmw_vsock/vmw_vsock_virtio_transport_common net/vmw_vsock/vmw_vsock_virtio_transport; do
    cp "$tmp/x/lib/modules/$rel/kernel/$m.ko" "$KIT.tmp/modules/0$n-$(basename "$m").ko"
    n=$((n + 1))
  done
  n=1
  for m in net/netfilter/x_tables net/ipv4/netfilter/ip_tables net/ipv4/netfilter/nf_defrag_ipv4 \
      net/ipv6/netfilter/nf_defrag_ipv6 lib/libcrc32c net/netfilter/nf_conntrack net/netfilter/nf_nat \
      net/ipv4/netfilter/iptable_nat net/ipv4/netfilter/iptable_filter net/ipv6/netfilter/ip6_tables \
      net/ipv6/netfilter/ip6table_nat net/ipv6/netfilter/ip6table_filter net/netfilter/xt_REDIRECT \
      net/ipv4/netfilter/nf_reject_ipv4 net/ipv4/netfilter/ipt_REJECT net/ipv6/netfilter/nf_reject_ipv6 \
      net/ipv6/netfilter/ip6t_REJECT net/netfilter/xt_tcpudp; do
    cp "$tmp/x/lib/modules/$rel/kernel/$m.ko" "$KIT.tmp/modules/net/$(printf %02d $n)-$(basename "$m").ko"
    n=$((n + 1))
  done
  echo "$rel" > "$KIT.tmp/release"
  echo "$KIT_VERSION" > "$KIT.tmp/kit-version"
  rm -rf "$KIT" "$tmp"
  mkdir -p "$(dirname "$KIT")"
  mv "$KIT.tmp" "$KIT"
  echo "install-deps: boot kit from $pkg at $KIT"
fi

# The demo's KMS scenario builds its app image from a Debian root file system with the AWS CLI:
# made once (about half a minute) and kept.
if [ "${1:-}" = "--demo" ]; then
  "$(dirname "$0")/mkrootfs.sh" >/dev/null
fi
