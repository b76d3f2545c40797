/*
 * TLS termination for ingress ports with `tls` (spec/enclaver-compat.md §2.3): the enclave side
 * of the vsock connection speaks TLS with the key and certificate baked into the image, the app
 * gets plain bytes on 127.0.0.1:P. Runs in odyn.
 */
#ifndef ENCLAVER_ENCLAVE_TLS_RELAY_H
#define ENCLAVER_ENCLAVE_TLS_RELAY_H

#include <openssl/ssl.h>

#include "base/err.h"
#include "net/loop.h"

/* A server context from <dir>/cert.pem (the chain) and <dir>/key.pem. */
SSL_CTX *tls_server_ctx(const char *dir, struct err *err);

/* Relays between a TLS client on tls_fd and plain app_fd (both non-blocking; both owned). done
 * runs once when the connection ends. */
int tls_relay_start(struct loop *l, SSL_CTX *ctx, int tls_fd, int app_fd, void (*done)(void *data), void *data,
		    struct err *err);

#endif
