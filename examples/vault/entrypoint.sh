#!/bin/sh
# Runs inside the enclave as root. odyn has set AWS_KMS_ENDPOINT to its KMS proxy, which adds
# this enclave's attestation to the Decrypt; KMS answers only if PCR0 matches the key policy.
set -u

echo "decrypting the TLS key through the KMS proxy at ${AWS_KMS_ENDPOINT}"
if ! aws kms decrypt \
    --endpoint-url "${AWS_KMS_ENDPOINT}" \
    --ciphertext-blob fileb:///etc/vault/certs/key.pem.enc \
    --query Plaintext --output text | base64 -d > /etc/vault/certs/key.pem; then
  echo "KMS refused to decrypt the TLS key: is this image's PCR0 the one in the key policy?" >&2
  exit 1
fi
chmod 600 /etc/vault/certs/key.pem

# Vault's own entrypoint: chown, setcap, then drops to the vault user.
exec docker-entrypoint.sh server -log-level=info
