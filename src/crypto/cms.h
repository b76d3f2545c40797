/*
 * KMS's CiphertextForRecipient (spec/nitro.md §6.2): CMS EnvelopedData, one KeyTransRecipientInfo
 * (RSAES-OAEP with SHA-256 and MGF1-SHA-256), AES-256-CBC content, BER with indefinite lengths.
 * kms-local builds it exactly as KMS does; odyn's KMS proxy decrypts it with OpenSSL's CMS.
 * The blob odyn decrypts comes from the network and is untrusted.
 */
#ifndef ENCLAVER_CRYPTO_CMS_H
#define ENCLAVER_CRYPTO_CMS_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

/* Encrypts plain for the RSA key in spki (DER SubjectPublicKeyInfo). */
int cms_recipient_encrypt(const uint8_t *spki, size_t spki_len, const uint8_t *plain, size_t len, struct buf *out,
			  struct err *err);
/* Decrypts a CiphertextForRecipient with the enclave's private key; out is wiped-on-free material. */
int cms_recipient_decrypt(EVP_PKEY *key, const uint8_t *ber, size_t len, struct buf *out, struct err *err);

#endif
