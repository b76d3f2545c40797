/*
 * odyn's ingress (spec/enclaver-compat.md §5.6): for each manifest ingress port P, accept on
 * vsock P and relay to the app on 127.0.0.1:P.
 */
#ifndef ENCLAVER_ENCLAVE_INGRESS_H
#define ENCLAVER_ENCLAVE_INGRESS_H

#include <openssl/ssl.h>
#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"

struct ingress;

struct ingress_port {
	uint16_t port;
	SSL_CTX *tls; /* terminate TLS on the vsock side when set (borrowed) */
};

int ingress_start(struct loop *l, const struct ingress_port *ports, size_t n, struct ingress **out,
		  struct err *err);
/* Stops accepting; drained is called once every open connection has finished, then the
 * ingress is freed. */
void ingress_stop(struct ingress *in, void (*drained)(void *data), void *data);
unsigned ingress_active(const struct ingress *in);

#endif
