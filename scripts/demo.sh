#!/usr/bin/env bash
# The demo: an app image assembled here (no registry, no Docker), built into an EIF with
# `enclaver build`, run in a local enclave, called through ingress; its egress is allowed to
# the host and refused elsewhere; then it is stopped. Needs root (the local enclave does).
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/build
work=$(mktemp -d /tmp/enclaver-demo-XXXXXX)
host_srv=
enclave=
cleanup() {
  [ -n "$enclave" ] && kill "$enclave" 2>/dev/null && wait "$enclave" 2>/dev/null
  [ -n "$host_srv" ] && kill "$host_srv" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "assemble the app image: busybox, a page, a script (a docker-archive, no registry)"
mkdir -p "$work/rootfs/bin"
cp -r examples/hello/rootfs/. "$work/rootfs/"
cp /bin/busybox "$work/rootfs/bin/busybox"
for tool in sh httpd wget sleep; do ln -s busybox "$work/rootfs/bin/$tool"; done
install -m 0755 examples/hello/app.sh "$work/rootfs/app.sh"
/usr/bin/python3 scripts/mkimage.py "$work/rootfs" "$work/hello.tar" --tag hello:latest \
  --entrypoint /bin/sh /app.sh --env PATH=/bin
ls -l "$work/hello.tar"

step "enclaver build"
cp examples/hello/enclaver.yaml "$work/enclaver.yaml"
(cd "$work" && "$B/enclaver" build -f enclaver.yaml --eif-only hello.eif)

step "a web server on the host, for the enclave's allowed egress (\"host\" is the host's 127.0.0.1)"
mkdir -p "$work/hostwww"
echo "Hello from the host, reached through the egress tunnel!" > "$work/hostwww/index.html"
busybox httpd -f -p 127.0.0.1:18081 -h "$work/hostwww" &
host_srv=$!

step "enclaver run (a local enclave)"
(cd "$work" && exec "$B/enclaver" run --eif hello.eif -f enclaver.yaml) &
enclave=$!
for _ in $(seq 100); do
  curl -s -o /dev/null http://127.0.0.1:8080/ && break
  sleep 0.1
done

step "call the app through ingress: curl http://127.0.0.1:8080/"
curl -s http://127.0.0.1:8080/
sleep 2

step "stop it (SIGTERM to enclaver run)"
kill -TERM "$enclave"
set +e
wait "$enclave"
code=$?
set -e
enclave=
echo "enclaver run exited with $code (109: stopped on request); nothing of the enclave is left:"
ls -d /tmp/enclaver-?????? 2>/dev/null || echo "  no state folders, no processes"
