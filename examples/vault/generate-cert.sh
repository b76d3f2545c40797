#!/usr/bin/env bash
# generate-cert.sh DOMAIN KMS_KEY_ID: a self-signed TLS certificate for Vault, and its private key
# encrypted with the KMS key (key.pem.enc, the raw ciphertext blob). The plaintext key is removed.
# With AWS_ENDPOINT_URL_KMS set (`eval "$(enclaver kms-local env)"`), KMS is that endpoint, with
# every AWS CLI (those before 2.13 ignore the variable themselves).
set -euo pipefail
domain=${1:?usage: generate-cert.sh DOMAIN KMS_KEY_ID}
key_id=${2:?usage: generate-cert.sh DOMAIN KMS_KEY_ID}

openssl req -x509 -newkey rsa:4096 -sha256 -days 365 -nodes \
  -keyout key.pem -out cert.pem -subj "/CN=${domain}" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:${domain}"

aws ${AWS_ENDPOINT_URL_KMS:+--endpoint-url "$AWS_ENDPOINT_URL_KMS"} kms encrypt --key-id "${key_id}" --plaintext fileb://key.pem \
  --query CiphertextBlob --output text | base64 -d > key.pem.enc
shred -u key.pem 2>/dev/null || rm -f key.pem
echo "wrote cert.pem and key.pem.enc"
