/*
 * Client of the Nitro Secure Module (spec/nitro.md §4): raw CBOR requests through /dev/nsm's
 * ioctl on Nitro, or through the local enclave's emulated NSM socket. Used by odyn.
 */
#ifndef ENCLAVER_NITRO_NSM_H
#define ENCLAVER_NITRO_NSM_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define NSM_DEVICE "/dev/nsm"
#define NSM_SOCKET_NAME "nsm.sock"
#define NSM_MAX_REQUEST 4096
#define NSM_RESPONSE_MAX 0x3000

struct nsm;

/* Opens /dev/nsm, else the emulated socket in the vsock folder; -1 with ENOENT when neither. */
int nsm_open(struct nsm **out, struct err *err);
void nsm_close(struct nsm *n);
/* One request/response exchange; resp must hold NSM_RESPONSE_MAX bytes. */
int nsm_call(struct nsm *n, const uint8_t *req, size_t req_len, uint8_t *resp, size_t *resp_len,
	     struct err *err);
/* Fills out with up to len random bytes from GetRandom; returns the count. */
long nsm_get_random(struct nsm *n, uint8_t *out, size_t len, struct err *err);

#endif
