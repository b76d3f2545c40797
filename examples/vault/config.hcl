ui = true

listener "tcp" {
  address       = "0.0.0.0:8200"
  tls_cert_file = "/etc/vault/certs/cert.pem"
  tls_key_file  = "/etc/vault/certs/key.pem"
}

# Vault's data lives outside the enclave, in Consul on the host, reached through egress "host".
storage "consul" {
  address = "host:8500"
  path    = "vault/"
}

# kms_key_id from VAULT_AWSKMS_SEAL_KEY_ID, region from AWS_DEFAULT_REGION, endpoint from
# AWS_KMS_ENDPOINT (odyn's KMS proxy): unseal works only inside this measured image.
seal "awskms" {}

api_addr     = "https://127.0.0.1:8200"
cluster_addr = "https://127.0.0.1:8201"
