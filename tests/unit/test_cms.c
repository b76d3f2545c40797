/* CiphertextForRecipient: the vectors of tests/data/vectors (a blob made with a known key, and
 * two real KMS blobs, parse-only), and blobs this code writes: KMS's exact layout, decrypted
 * again. */
#include "harness.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "crypto/cms.h"

static EVP_PKEY *vector_key(void)
{
	char path[512];
	FILE *f;
	EVP_PKEY *k;

	snprintf(path, sizeof(path), "%s/cms-hello-key.pem", test_vectors_dir());
	f = fopen(path, "r");
	if (!f)
		abort();
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

static void test_known_key_vector(void)
{
	size_t len;
	uint8_t *ber = test_read_file(test_vectors_dir(), "cms-hello.ber", &len);
	EVP_PKEY *k = vector_key();
	struct buf out = BUF_INIT;
	struct err err = { 0 };

	CHECK_EQ_INT(cms_recipient_decrypt(k, ber, len, &out, &err), 0);
	CHECK(out.len == 45 && !memcmp(out.data, "Hello from a mock KMS CiphertextForRecipient!", 45));
	/* nothing at all: refused (the fuzzer once found this aborting) */
	CHECK(cms_recipient_decrypt(k, NULL, 0, &out, &err) < 0);
	/* a flipped byte in the encrypted key, or another key: refused, not garbage */
	buf_reset(&out);
	ber[100] ^= 1;
	CHECK(cms_recipient_decrypt(k, ber, len, &out, &err) < 0);
	CHECK_EQ_INT(out.len, 0);
	buf_free(&out);
	EVP_PKEY_free(k);
	free(ber);
}

static void test_real_kms_blobs_parse(void)
{
	static const char *const names[] = { "kms-cms-sample-indefinite.ber", "kms-cms-sample-primitive.ber" };
	EVP_PKEY *other = EVP_RSA_gen(2048);

	for (int i = 0; i < 2; i++) {
		size_t len;
		uint8_t *ber = test_read_file(test_vectors_dir(), names[i], &len);
		struct buf out = BUF_INIT;
		struct err err = { 0 };

		/* it parses as EnvelopedData; without KMS's key it cannot decrypt */
		CHECK(cms_recipient_decrypt(other, ber, len, &out, &err) < 0);
		CHECK(strstr(err.msg, "does not decrypt") != NULL);
		free(ber);
	}
	EVP_PKEY_free(other);
}

static void test_written_like_kms(void)
{
	size_t len;
	uint8_t *real = test_read_file(test_vectors_dir(), "kms-cms-sample-indefinite.ber", &len);
	EVP_PKEY *k = EVP_RSA_gen(2048);
	unsigned char *spki = NULL;
	int spki_len = i2d_PUBKEY(k, &spki);
	static const uint8_t secret[40] = "forty bytes of plaintext, padded to 48..";
	struct buf blob = BUF_INIT, out = BUF_INIT;
	struct err err = { 0 };

	CHECK_EQ_INT(cms_recipient_encrypt(spki, (size_t)spki_len, secret, sizeof(secret), &blob, &err), 0);
	/* 48 bytes of ciphertext: the real blob's size, and its layout byte for byte up to the
	 * key identifier, and from it to the encrypted key */
	CHECK_EQ_INT(blob.len, len);
	CHECK(!memcmp(blob.data, real, 33));
	CHECK(!memcmp(blob.data + 33 + 32, real + 33 + 32, 66));
	/* after the 256-byte encrypted key: the content's header up to the IV, and the closing EOCs */
	CHECK(!memcmp(blob.data + 387, real + 387, 28));
	CHECK(!memcmp(blob.data + 387 + 28 + 16, real + 387 + 28 + 16, 4));
	CHECK(!memcmp(blob.data + len - 10, real + len - 10, 10));
	CHECK_EQ_INT(cms_recipient_decrypt(k, blob.data, blob.len, &out, &err), 0);
	CHECK(out.len == sizeof(secret) && !memcmp(out.data, secret, sizeof(secret)));
	/* Altered content: a flipped bit in the next-to-last block turns the last padding byte
	 * from 8 to 9, which no padding check accepts. Refused, and what the caller's buffer held
	 * before stays, with nothing of the plaintext after it. */
	buf_reset(&out);
	buf_append(&out, "before", 6);
	blob.data[blob.len - 10 - 16 - 1] ^= 1;
	CHECK(cms_recipient_decrypt(k, blob.data, blob.len, &out, &err) < 0);
	CHECK(strstr(err.msg, "does not decrypt") != NULL);
	CHECK(out.len == 6 && !memcmp(out.data, "before", 6));
	/* not for an EC key */
	{
		EVP_PKEY *ec = EVP_EC_gen("P-256");
		unsigned char *d = NULL;
		int dl = i2d_PUBKEY(ec, &d);

		buf_reset(&blob);
		CHECK(cms_recipient_encrypt(d, (size_t)dl, secret, 4, &blob, &err) < 0);
		OPENSSL_free(d);
		EVP_PKEY_free(ec);
	}
	buf_free(&blob);
	buf_free_secret(&out);
	OPENSSL_free(spki);
	EVP_PKEY_free(k);
	free(real);
}

TEST_MAIN(T(test_known_key_vector), T(test_real_kms_blobs_parse), T(test_written_like_kms))
