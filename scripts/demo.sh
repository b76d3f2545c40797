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
kms=
store=
cleanup() {
  [ -n "$enclave" ] && kill "$enclave" 2>/dev/null && wait "$enclave" 2>/dev/null
  [ -n "$host_srv" ] && kill "$host_srv" 2>/dev/null
  [ -n "$kms" ] && kill "$kms" 2>/dev/null && wait "$kms" 2>/dev/null
  [ -n "$store" ] && kill "$store" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "assemble the app image: busybox, a page, a script (a docker-archive, no registry)"
examples/hello/make-image.sh "$work/hello.tar"

step "enclaver build"
cp examples/hello/enclaver.yaml "$work/enclaver.yaml"
(cd "$work" && "$B/enclaver" build -f enclaver.yaml --eif-only hello.eif)

step "a web server on the host, for the enclave's allowed egress (\"host\" is the host's 127.0.0.1)"
busybox httpd -f -p 127.0.0.1:18081 -h examples/hello/host &
host_srv=$!

# Starts the hello enclave with enclaver run ARGS, calls it through ingress, stops it; sets code.
call_enclave() {
  local what=$1
  shift
  (cd "$work" && exec "$B/enclaver" run --eif hello.eif -f enclaver.yaml "$@") &
  enclave=$!
  for _ in $(seq 300); do
    curl -s -o /dev/null http://127.0.0.1:8080/ && break
    sleep 0.1
  done
  step "call the $what's app through ingress: curl http://127.0.0.1:8080/"
  curl -s http://127.0.0.1:8080/
  sleep 2
  step "stop it (SIGTERM to enclaver run)"
  kill -TERM "$enclave"
  set +e
  wait "$enclave"
  code=$?
  set -e
  enclave=
}

step "enclaver run (a local enclave)"
call_enclave "local enclave"
echo "enclaver run exited with $code (109: stopped on request); nothing of the enclave is left:"
ls -d /tmp/enclaver-?????? 2>/dev/null || echo "  no state folders, no processes"

step "the same EIF in a VM enclave: its own kernel and init boot in QEMU (enclaver run --vm)"
call_enclave "VM enclave" --vm
echo "enclaver run --vm exited with $code (109: stopped on request)"

# ---------------------------------------------------------------------------------------------
# Part two: the seed scenario. A secret only the measured enclave image can decrypt.
export ENCLAVER_STATE_DIR="$work/state"
aws=(/usr/bin/aws --endpoint-url http://127.0.0.1:9700 --output text)

step "a local KMS (enclaver kms-local) and a state store on the host (what Consul is to Vault)"
"$B/enclaver" kms-local --listen 127.0.0.1:9700 2>"$work/kms.log" &
kms=$!
/usr/bin/python3 examples/kms-https/store.py "$work/store" 18500 &
store=$!
for _ in $(seq 50); do [ -s "$ENCLAVER_STATE_DIR/endpoints/kms.json" ] && break; sleep 0.1; done
eval "$("$B/enclaver" kms-local env)"
key=$("${aws[@]}" kms create-key --description "TLS key of kms-https" --query KeyMetadata.KeyId)
echo "KMS key $key"

step "a TLS key, encrypted with that KMS key by the AWS CLI on the host; the plaintext is removed"
openssl req -x509 -newkey rsa:2048 -sha256 -days 2 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
"${aws[@]}" kms encrypt --key-id "$key" --plaintext "fileb://$work/key.pem" --query CiphertextBlob |
  base64 -d > "$work/key.pem.enc"
rm "$work/key.pem"

step "the app image: Debian with the AWS CLI and boto3 (mmdebstrap, no registry), and the app"
KMS_HTTPS_SECRETS=$work examples/kms-https/make-image.sh "$work/kms-https.tar"
cp examples/kms-https/enclaver.yaml "$work/kms-https.yaml"

step "enclaver build: note PCR0"
"$B/enclaver" build -f "$work/kms-https.yaml" --eif-only "$work/kms-https.eif" | tee "$work/build.out"
pcr0=$(sed -n 's/.*"PCR0": "\([0-9a-f]*\)".*/\1/p' "$work/build.out")

step "the key policy: Decrypt only for an enclave whose attestation shows this PCR0"
sed "s/PCR0_OF_THE_EIF/$pcr0/" examples/kms-https/key-policy.template.json > "$work/policy.json"
"${aws[@]}" kms put-key-policy --key-id "$key" --policy-name default --policy "file://$work/policy.json"
echo "PCR0 $pcr0"
echo "Decrypt without an attestation (the host itself) is refused:"
"${aws[@]}" kms decrypt --ciphertext-blob "fileb://$work/key.pem.enc" 2>&1 | sed 's/^/  /' || true

for round in 1 2; do
  step "run $round: the enclave decrypts its TLS key through the KMS proxy and serves HTTPS"
  "$B/enclaver" run --eif "$work/kms-https.eif" -f "$work/kms-https.yaml" > "$work/run$round.log" 2>&1 &
  enclave=$!
  for _ in $(seq 600); do
    grep -q "serving HTTPS" "$work/run$round.log" && break
    kill -0 "$enclave" 2>/dev/null || break
    sleep 0.1
  done
  grep -E "decrypting|boto3|serving|fetched role|KMS proxy: region" "$work/run$round.log" | sed 's/^/  /'
  echo "curl --cacert cert.pem https://127.0.0.1:8443/"
  curl -s --cacert "$work/cert.pem" https://127.0.0.1:8443/
  kill -TERM "$enclave" 2>/dev/null || true
  wait "$enclave" || true
  enclave=
done
echo "(the count lives on the host's store: it survived the restart)"

step "the same app with one change: another PCR0, and KMS refuses it"
KMS_HTTPS_SECRETS=$work examples/kms-https/make-image.sh "$work/kms-https.tar" CHANGED=1 >/dev/null
"$B/enclaver" build -f "$work/kms-https.yaml" --eif-only "$work/changed.eif" 2>/dev/null | grep PCR0
set +e
"$B/enclaver" run --eif "$work/changed.eif" -f "$work/kms-https.yaml" 2>&1 |
  grep -E "AccessDenied|refused|exited with" | sed 's/^/  /'
set -e
