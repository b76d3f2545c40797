/* Fuzzes the CiphertextForRecipient reader (BER CMS EnvelopedData from KMS) with a fixed key. */
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdint.h>

#include "crypto/cms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EVP_PKEY *key;
	struct buf out = BUF_INIT;
	struct err err = { 0 };

	if (!key)
		key = EVP_RSA_gen(2048);
	cms_recipient_decrypt(key, data, size, &out, &err);
	buf_free_secret(&out);
	return 0;
}
