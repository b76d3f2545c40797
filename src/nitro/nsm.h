/*
 * Client of the Nitro Secure Module (spec/nitro.md §4): raw CBOR requests through /dev/nsm's
 * ioctl on Nitro, or through the local enclave's emulated NSM socket. Used by odyn.
 */
#ifndef ENCLAVER_NITRO_NSM_H
#define ENCLAVER_NITRO_NSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

#define NSM_DEVICE "/dev/nsm"
/* The emulated NSM is a parent vsock port: in a local enclave its file in the vsock folder, in a
 * VM enclave (no NSM device there) the guest's AF_VSOCK connection to it through the back-end. */
#define NSM_VSOCK_PORT 1314081024u /* "NSM\0", above the 16-bit ports ingress may use */
#define NSM_SOCKET_NAME "3.1314081024"
/* On the guest's kernel cmdline when its NSM is the host's emulator (the VM launcher adds it). */
#define NSM_VSOCK_CMDLINE "enclaver.nsm=vsock"
/* Where a VM enclave reads the development root (the emulated NSM's CA), which the host serves. */
#define DEV_ROOT_VSOCK_PORT 1314081025u

/* In a VM enclave on a development machine (NSM_VSOCK_CMDLINE on the kernel cmdline). */
bool nsm_vm_enclave(void);
/* There: fetches the development root from the host into path (a PEM certificate). */
int nsm_fetch_dev_root(const char *path, struct err *err);
/* Beside it in a local enclave's vsock folder: the development root, which odyn trusts for TLS
 * only there (the AWS stand-ins' certificates come from it). */
#define DEV_ROOT_NAME "dev-root.pem"
#define NSM_MAX_REQUEST 4096
#define NSM_RESPONSE_MAX 0x3000

struct nsm;

/* Opens /dev/nsm, else the emulated socket in the vsock folder; -1 with ENOENT when neither. */
int nsm_open(struct nsm **out, struct err *err);
/* The emulated NSM at a socket path. */
int nsm_open_socket(const char *path, struct nsm **out, struct err *err);
void nsm_close(struct nsm *n);
/* One request/response exchange; resp must hold NSM_RESPONSE_MAX bytes. */
int nsm_call(struct nsm *n, const uint8_t *req, size_t req_len, uint8_t *resp, size_t *resp_len,
	     struct err *err);
/* Fills out with up to len random bytes from GetRandom; returns the count. */
long nsm_get_random(struct nsm *n, uint8_t *out, size_t len, struct err *err);

/* The typed requests. An {"Error": code} answer fails with EPROTO and "NSM <Request>: <code>". */
#define NSM_PCR_MAX 64
int nsm_describe_pcr(struct nsm *n, uint16_t index, bool *locked, uint8_t data[NSM_PCR_MAX], size_t *len,
		     struct err *err);
int nsm_extend_pcr(struct nsm *n, uint16_t index, const void *data, size_t len, uint8_t out[NSM_PCR_MAX],
		   size_t *out_len, struct err *err);
int nsm_lock_pcr(struct nsm *n, uint16_t index, struct err *err);
int nsm_lock_pcrs(struct nsm *n, uint16_t range, struct err *err);

struct nsm_description {
	uint16_t version_major, version_minor, version_patch;
	char module_id[100];
	uint16_t max_pcrs;
	uint16_t locked_pcrs[64];
	size_t n_locked;
	char digest[16];
};
int nsm_describe(struct nsm *n, struct nsm_description *d, struct err *err);

struct nsm_bytes {
	const uint8_t *data; /* NULL: sent as null */
	size_t len;
};
/* Appends the COSE_Sign1 attestation document to doc. */
int nsm_attestation(struct nsm *n, const struct nsm_bytes *user_data, const struct nsm_bytes *nonce,
		    const struct nsm_bytes *public_key, struct buf *doc, struct err *err);

#endif
