/*
 * The host side of ingress (spec/enclaver-compat.md §4.4 step 6): TCP listeners on 0.0.0.0:P
 * (or the address and host port a -p chose), each connection relayed to the enclave's vsock port.
 */
#ifndef ENCLAVER_HOST_INGRESS_H
#define ENCLAVER_HOST_INGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"

struct host_port_map {
	uint16_t host_port;    /* TCP port on the host; 0: one the kernel picks */
	uint16_t enclave_port; /* vsock port (= the app's port) */
	int family;	       /* AF_INET or AF_INET6 */
	uint8_t addr[16];      /* the host address, network order; all zeros: every address */
};

/* The longest -p a user writes: "[v6 address]:65535:65535/tcp". */
#define HOST_PUBLISH_MAX 80

/*
 * Parses docker run's -p: CONTAINER, HOST:CONTAINER, ADDR:HOST:CONTAINER or ADDR::CONTAINER,
 * each optionally ending in /tcp; ADDR is IPv4 or [IPv6]. No HOST publishes on a port the kernel
 * picks, no ADDR on every address.
 */
int host_publish_parse(const char *spec, struct host_port_map *out, struct err *err);

/*
 * What enclaver-run publishes: every ingress port of the manifest (ports[0..n_ports)) on itself
 * and every address, except those that -p (given[0..n_given)) maps, which are published where
 * -p says (one port may be published several times). A -p for a port the manifest does not
 * list is an error: nothing in the enclave listens there. out holds at most `cap`.
 */
int host_publish_merge(const struct host_port_map *given, size_t n_given, const uint16_t *ports, size_t n_ports,
		       struct host_port_map *out, size_t cap, size_t *n_out, struct err *err);

/* "127.0.0.1:8080", "[::1]:8080" or "0.0.0.0:8080" for a map (its host side). */
void host_publish_format(const struct host_port_map *m, char *buf, size_t size);

struct host_ingress;

int host_ingress_start(struct loop *l, uint32_t cid, const struct host_port_map *maps, size_t n,
		       struct host_ingress **out, struct err *err);
void host_ingress_stop(struct host_ingress *h);

#endif
