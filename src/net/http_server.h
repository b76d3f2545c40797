/*
 * A small HTTP/1.1 server for odyn's API and KMS proxy (on the enclave's loopback) and for
 * kms-local and the IMDS stand-in (on the host's). Requests come from clients and are bounded:
 * a head of HTTP_MAX_HEAD, a body of max_body with a Content-Length (no chunked uploads), one request at a time per connection, kept alive. A
 * handler answers at once or later (it may wait on the network); a connection that closes
 * meanwhile is freed when the answer comes.
 */
#ifndef ENCLAVER_NET_HTTP_SERVER_H
#define ENCLAVER_NET_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
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

/* For a handler that answers from another thread, sparing the answer a trip through the loop:
 * in the loop's thread, take whether the connection stays open, the bytes already buffered
 * after the request (a client that sent its next request early) and a duplicate of its socket
 * (the caller closes it; -1 when there is none); in the other thread, format the answer and
 * write what the socket takes at once, and it may go on reading and answering further requests
 * on the duplicate itself (http_take_request) while nothing was buffered; back in the loop's
 * thread, http_respond_raw with the last answer, how much of it was written, whether the
 * connection stays open and any bytes read but not taken, which goes on as http_respond. Only
 * the other thread uses the socket until then: the loop does not while it waits for the
 * answer, and the duplicate stays valid even if the loop closes its own. */
bool http_conn_keeps_alive(const struct http_conn *c);
size_t http_conn_buffered(const struct http_conn *c);
int http_conn_dup(struct http_conn *c);
void http_answer_format(bool keep_alive, int status, const char *content_type, const void *body, size_t len,
			const char *const *extra, struct buf *out);
void http_respond_raw(struct http_conn *c, const struct buf *answer, size_t sent, bool keep_alive,
		      const uint8_t *unread, size_t unread_len);

/* The first whole request in data by the server's rules. Returns 0 with *req parsed over
 * *copy (the caller frees it; the body is at *copy + req->head_len, *body_len bytes), 1 when
 * more bytes are needed, or the HTTP status the server answers the bytes with (400, 411, 413,
 * 431) and *msg its text. */
int http_take_request(const uint8_t *data, size_t len, size_t max_body, struct http_request *req, char **copy,
		      size_t *body_len, bool *keep_alive, const char **msg);

#endif
