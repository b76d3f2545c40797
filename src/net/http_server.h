/*
 * A small HTTP/1.1 server for odyn's API and KMS proxy (on the enclave's loopback) and for
 * kms-local and the IMDS stand-in (on the host's). Requests come from clients and are bounded:
 * a head of HTTP_MAX_HEAD, a body of max_body with a Content-Length (no chunked uploads), one request at a time per connection, kept alive. A
 * handler answers at once or later (it may wait on the network); a connection that closes
 * meanwhile is freed when the answer comes.
 */
#ifndef ENCLAVER_NET_HTTP_SERVER_H
#define ENCLAVER_NET_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "codec/http.h"
#include "net/loop.h"

/* Connections at once; idle ones close after two minutes. */
#define HTTP_SERVER_MAX_CONNS 1024

struct http_server;
struct http_conn;

typedef void (*http_handler_fn)(void *ctx, struct http_conn *c, const struct http_request *req,
				const uint8_t *body, size_t body_len);

/* Listens on 127.0.0.1:port. */
int http_server_start(struct loop *l, uint16_t port, size_t max_body, http_handler_fn fn, void *ctx,
		      struct http_server **out, struct err *err);
/* Listens on an IPv4 address "a.b.c.d" and port (0: any free port). */
int http_server_start_at(struct loop *l, const char *addr, uint16_t port, size_t max_body, http_handler_fn fn,
			 void *ctx, struct http_server **out, struct err *err);
/* Listens on a Unix socket at path, which only its owner may connect to (mode 0600). */
int http_server_start_unix(struct loop *l, const char *path, size_t max_body, http_handler_fn fn, void *ctx,
			   struct http_server **out, struct err *err);
/* The port it listens on. */
uint16_t http_server_port(const struct http_server *s);

void http_server_stop(struct http_server *s);

/* Answers the request c's handler was given (exactly once). extra: "Name: value" lines, or NULL. */
void http_respond(struct http_conn *c, int status, const char *content_type, const void *body, size_t len,
		  const char *const *extra);

#endif
