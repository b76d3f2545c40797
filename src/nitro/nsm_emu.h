/*
 * The local enclave's Nitro Secure Module: the request and response CBOR of spec/nitro.md §4.3
 * over 32 PCRs, with PCR0/1/2/8 from the running EIF, PCR3/4 from the configured role ARN and
 * instance id, 0-15 locked at start, and attestation documents shaped like AWS's signed by the
 * development CA. Served by enclaver-run; requests come from inside the enclave and are not
 * trusted.
 */
#ifndef ENCLAVER_NITRO_NSM_EMU_H
#define ENCLAVER_NITRO_NSM_EMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "nitro/devca.h"

#define NSM_EMU_PCRS 32

struct nsm_emu_config {
	const uint8_t *pcr0, *pcr1, *pcr2, *pcr8; /* 48 bytes each; pcr8 NULL when unsigned */
	const char *role_arn;    /* NULL: PCR3 stays zero (no instance role) */
	const char *instance_id; /* "i-…"; NULL: a made-up local one */
	bool debug_mode;         /* PCR0/1/2 read as zero, as on Nitro */
	struct devca *ca;        /* signs documents; owned by the caller */
};

struct nsm_emu {
	uint8_t pcr[NSM_EMU_PCRS][48];
	bool locked[NSM_EMU_PCRS];
	char module_id[96];
	struct devca *ca;
};

void nsm_emu_init(struct nsm_emu *e, const struct nsm_emu_config *c);
/* Answers one request; every failure is an {"Error": code} response, never a dropped request.
 * Returns the response in out (appended). */
void nsm_emu_handle(struct nsm_emu *e, const uint8_t *req, size_t len, struct buf *out);

#endif
