/* Fuzzes the KMS proxy's reading of KMS answers: JSON with CiphertextForRecipient (base64 CMS),
 * opened with a fixed key. The first byte picks the operation. */
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdint.h>

#include "enclave/kms_proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EVP_PKEY *key;
	static const char *const targets[] = { "TrentService.Decrypt", "TrentService.GenerateDataKeyPair",
					       "TrentService.DeriveSharedSecret" };
	struct buf out = BUF_INIT;
	struct err err = { 0 };

	if (!key)
		key = EVP_RSA_gen(2048);
	if (!size)
		return 0;
	kms_proxy_open_response(key, targets[data[0] % 3], data + 1, size - 1, &out, &err);
	buf_free_secret(&out);
	return 0;
}
