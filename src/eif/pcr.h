/* PCR arithmetic as nitro-cli, the Nitro hypervisor and QEMU compute it (spec/nitro.md §2.1). */
#ifndef ENCLAVER_EIF_PCR_H
#define ENCLAVER_EIF_PCR_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define PCR_LEN 48
#define PCR_HEX_LEN 96

/* new = SHA384(old || data) */
void pcr_extend(uint8_t pcr[PCR_LEN], const void *data, size_t len);
/* The measurement of content whose SHA-384 is digest: SHA384(0^48 || digest). */
void pcr_from_digest(const uint8_t digest[PCR_LEN], uint8_t out[PCR_LEN]);
void pcr_of_bytes(const void *data, size_t len, uint8_t out[PCR_LEN]);
/* Streams a file; "-" is not accepted. */
int pcr_of_file(const char *path, uint8_t out[PCR_LEN], struct err *err);
void pcr_hex(const uint8_t pcr[PCR_LEN], char out[PCR_HEX_LEN + 1]);

#endif
