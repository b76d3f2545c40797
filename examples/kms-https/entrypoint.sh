#!/bin/sh
# In the enclave, as root. odyn's KMS proxy is at $AWS_KMS_ENDPOINT: it attaches this enclave's
# attestation to the Decrypt, and KMS releases the key only to the image whose PCR0 the key
# policy names. The AWS CLI gets its role credentials from IMDS through the egress proxy.
set -u
echo "decrypting the TLS key through the KMS proxy at ${AWS_KMS_ENDPOINT}"
if ! aws kms decrypt --endpoint-url "${AWS_KMS_ENDPOINT}" \
    --ciphertext-blob fileb:///app/key.pem.enc \
    --query Plaintext --output text > /run/key.b64; then
  echo "KMS refused to decrypt the TLS key: is this image's PCR0 the one in the key policy?" >&2
  exit 1
fi
base64 -d /run/key.b64 > /run/key.pem && rm /run/key.b64
chmod 600 /run/key.pem
# an SDK works the same way: boto3 with the proxy as its endpoint
python3 -c 'import boto3, os
kms = boto3.client("kms", endpoint_url=os.environ["AWS_KMS_ENDPOINT"])
print("boto3: GenerateRandom gave", len(kms.generate_random(NumberOfBytes=32)["Plaintext"]), "bytes through the KMS proxy")' || exit 1
exec python3 /app/server.py
