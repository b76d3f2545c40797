/*
 * The host side of egress (spec/enclaver-compat.md §5.5): accepts the enclave's tunnel requests
 * on vsock 17002, resolves and connects on the parent, answers Ok or Err, then relays bytes.
 * The policy is enforced inside the enclave and again here; "host" means the parent's 127.0.0.1.
 */
#ifndef ENCLAVER_HOST_EGRESS_H
#define ENCLAVER_HOST_EGRESS_H

#include "base/err.h"
#include "net/dns.h"
#include "manifest/policy.h"
#include "net/loop.h"

/* Connections from one enclave at once, requests and relays together. */
#define HOST_EGRESS_MAX_CONNS 4096
#define HOST_EGRESS_PORT 17002 /* the parent's vsock port every enclave's egress tunnel reaches */

struct host_egress;

/* Optional rewrite of (host, port) before resolution: the local enclave's route table for its
 * AWS stand-ins. Returns a malloc'd host ("unix:PATH" for a Unix socket) and may change *port,
 * or NULL to keep them. */
typedef char *(*host_egress_route_fn)(void *data, const char *host, uint16_t *port);

/* policy: the manifest's egress policy, borrowed; every request is checked against it. */
int host_egress_start(struct loop *l, struct dns *dns, const struct policy *policy, host_egress_route_fn route,
		      void *route_data, struct host_egress **out, struct err *err);
void host_egress_stop(struct host_egress *e);

#endif
