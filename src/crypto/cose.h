/*
 * COSE_Sign1 (RFC 9052) with ECDSA: ES256, ES384 and ES512, chosen by the key's curve.
 * Used for EIF signatures and, later, attestation documents.
 */
#ifndef ENCLAVER_CRYPTO_COSE_H
#define ENCLAVER_CRYPTO_COSE_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

#define COSE_ALG_ES256 (-7)
#define COSE_ALG_ES384 (-35)
#define COSE_ALG_ES512 (-36)

/* The COSE algorithm for an EC key's curve, or 0 when the key is not P-256/P-384/P-521. */
int cose_alg_for_key(EVP_PKEY *key);

/* Appends an untagged COSE_Sign1 [protected {1: alg}, {}, payload, r||s] to out. */
int cose_sign1(EVP_PKEY *key, const uint8_t *payload, size_t len, struct buf *out, struct err *err);

/* Verifies an untagged or tag-18 COSE_Sign1 with pub. On success *payload points into cose. */
int cose_verify1(EVP_PKEY *pub, const uint8_t *cose, size_t len, const uint8_t **payload,
		 size_t *payload_len, struct err *err);

#endif
