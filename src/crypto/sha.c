/* SHA-2 hashing over OpenSSL EVP. */
#include "crypto/sha.h"

#include <openssl/evp.h>
#include <stdlib.h>

void sha_init(struct sha_ctx *c, const char *alg)
{
	const EVP_MD *md = EVP_get_digestbyname(alg);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!md || !ctx || EVP_DigestInit_ex(ctx, md, NULL) != 1)
		abort();
	c->md_ctx = ctx;
}

void sha_update(struct sha_ctx *c, const void *data, size_t len)
{
	if (EVP_DigestUpdate(c->md_ctx, data, len) != 1)
		abort();
}

unsigned sha_final(struct sha_ctx *c, uint8_t *out)
{
	unsigned n = 0;

	if (EVP_DigestFinal_ex(c->md_ctx, out, &n) != 1)
		abort();
	sha_free(c);
	return n;
}

void sha_free(struct sha_ctx *c)
{
	EVP_MD_CTX_free(c->md_ctx);
	c->md_ctx = NULL;
}

void sha384(const void *data, size_t len, uint8_t out[SHA384_LEN])
{
	struct sha_ctx c;

	sha_init(&c, "SHA384");
	sha_update(&c, data, len);
	sha_final(&c, out);
}

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN])
{
	struct sha_ctx c;

	sha_init(&c, "SHA256");
	sha_update(&c, data, len);
	sha_final(&c, out);
}
