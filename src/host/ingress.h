/*
 * The host side of ingress (spec/enclaver-compat.md §4.4 step 6): TCP listeners on 0.0.0.0:P
 * (or a chosen host port), each connection relayed to the enclave's vsock port.
 */
#ifndef ENCLAVER_HOST_INGRESS_H
#define ENCLAVER_HOST_INGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"

struct host_port_map {
	uint16_t host_port;    /* TCP port on the host */
	uint16_t enclave_port; /* vsock port (= the app's port) */
};

struct host_ingress;

int host_ingress_start(struct loop *l, uint32_t cid, const struct host_port_map *maps, size_t n,
		       struct host_ingress **out, struct err *err);
void host_ingress_stop(struct host_ingress *h);

#endif
