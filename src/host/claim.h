/*
 * The parent vsock ports that every enclave on a host shares (9000 for the boot heartbeat, 17002
 * for egress): a claim file per port says which enclaver-run holds it, so that a second one names
 * the first instead of failing with "address in use". Runs in enclaver-run, as root on Nitro
 * hosts; the files live in $ENCLAVER_RUN_DIR (default /run/enclaver).
 */
#ifndef ENCLAVER_HOST_CLAIM_H
#define ENCLAVER_HOST_CLAIM_H

#include <stdint.h>

#include "base/err.h"

#define CLAIM_DIR_ENV "ENCLAVER_RUN_DIR"
#define CLAIM_DIR_DEFAULT "/run/enclaver"

struct port_claim;

/* Claims port for this process; others read "enclaver-run pid P on HOST, " and what. Waits up to
 * wait_ms for the holder to let go (0: fails at once, naming the holder). Where no claim can be
 * recorded (no writable folder) it warns and succeeds with *out = NULL. */
int port_claim_take(uint32_t port, const char *use, const char *what, int wait_ms, struct port_claim **out,
		    struct err *err);
/* Replaces what others read (once the enclave has an ID). */
void port_claim_describe(struct port_claim *c, const char *what);
void port_claim_release(struct port_claim *c);
/* Rewrites err after a bind to a port this process had claimed failed with EADDRINUSE: a program
 * other than enclaver-run holds it. */
int port_claim_explain_busy(uint32_t port, const char *use, struct err *err);

#endif
