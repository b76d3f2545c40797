/* EIF signature section (spec/nitro.md §1.7): building, parsing and checking. */
#ifndef ENCLAVER_EIF_SIGN_H
#define ENCLAVER_EIF_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "eif/pcr.h"

/* Signs PCR0 with key_pem (must match cert_pem); out gets the section bytes, pcr8 the
 * measurement of the certificate. */
int eif_signature_build(const char *cert_pem_path, const char *key_pem_path,
			const uint8_t pcr0[PCR_LEN], struct buf *out, uint8_t pcr8[PCR_LEN],
			struct err *err);

struct eif_signature_result {
	char *cert_pem; /* NUL-terminated PEM from the section; caller frees */
	uint8_t pcr8[PCR_LEN];
	bool verified;        /* COSE signature good and payload == PcrInfo{0, PCR0} */
	bool cert_time_valid; /* certificate within its validity window now */
};

/* Fails only when the section cannot be parsed (then nothing is allocated). A signature that
 * does not verify is reported through res->verified and err's message. */
int eif_signature_check(const uint8_t *section, size_t len, const uint8_t pcr0[PCR_LEN],
			struct eif_signature_result *res, struct err *err);

/* PCR8 of a PEM certificate file: the PCR over its DER bytes. */
int eif_pcr_of_cert(const char *pem_path, uint8_t out[PCR_LEN], struct err *err);

#endif
