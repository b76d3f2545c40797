/* SHA-2 hashing over OpenSSL EVP: one-shot and streaming. */
#ifndef ENCLAVER_CRYPTO_SHA_H
#define ENCLAVER_CRYPTO_SHA_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA384_LEN 48

struct sha_ctx {
	void *md_ctx; /* EVP_MD_CTX */
};

/* alg: "SHA256", "SHA384" or "SHA512". Aborts on allocation failure. */
void sha_init(struct sha_ctx *c, const char *alg);
void sha_update(struct sha_ctx *c, const void *data, size_t len);
/* Writes the digest and frees the context; returns the digest length. */
unsigned sha_final(struct sha_ctx *c, uint8_t *out);
void sha_free(struct sha_ctx *c);

void sha384(const void *data, size_t len, uint8_t out[SHA384_LEN]);
void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);

#endif
