/*
 * odyn's egress HTTP proxy on 127.0.0.1:<proxy_port> (spec/enclaver-compat.md §5.5): CONNECT and
 * absolute-form requests, checked against the egress policy inside the enclave, carried to the
 * host through the vsock tunnel on (CID 2, 17002).
 */
#ifndef ENCLAVER_ENCLAVE_EGRESS_H
#define ENCLAVER_ENCLAVE_EGRESS_H

#include <stdint.h>

#include "base/err.h"
#include "enclave/pool.h"
#include "manifest/policy.h"
#include "net/loop.h"

#define EGRESS_TUNNEL_PORT 17002
#define EGRESS_BLOCKED_BODY "blocked by egress security policy"

struct egress;

/* Listens on 127.0.0.1:port; the policy is borrowed and must outlive the proxy. */
int egress_start(struct loop *l, uint16_t port, const struct policy *policy, struct egress **out,
		 struct err *err);
/* Adds the transparent listener on 127.0.0.1:port and [::1]:port, and has the proxy too take
 * pool addresses for their names; pool is borrowed. */
int egress_transparent_start(struct egress *e, struct pool *pool, uint16_t port, struct err *err);
/* Takes the transparent listener away again (a set-up that failed half way). */
void egress_transparent_stop(struct egress *e);
/* Stops accepting; connections already open run to their end, then e is freed. */
void egress_stop(struct egress *e);
unsigned egress_active(const struct egress *e);

#endif
