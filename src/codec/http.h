/*
 * A strict HTTP/1.1 request-head parser and small writers, for odyn's proxies and servers.
 * Input comes from applications and the network: every limit is enforced before use.
 */
#ifndef ENCLAVER_CODEC_HTTP_H
#define ENCLAVER_CODEC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define HTTP_MAX_HEAD (64 * 1024)
#define HTTP_MAX_HEADERS 128

struct http_header {
	const char *name; /* points into the parsed head; NUL-terminated by the parser */
	const char *value;
};

struct http_request {
	const char *method;
	const char *target;
	int minor_version; /* HTTP/1.x */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t n_headers;
	size_t head_len; /* bytes of the head, CRLFCRLF included */
};

enum http_parse_result { HTTP_INCOMPLETE = 0, HTTP_OK = 1, HTTP_BAD = -1, HTTP_TOO_LARGE = -2 };

/* Parses the head at the start of data, which the parser modifies in place (NUL terminators).
 * On HTTP_OK the body starts at data + req->head_len. */
enum http_parse_result http_parse_request(char *data, size_t len, struct http_request *req);

/* The value of the first header called name (case-insensitive), or NULL. */
const char *http_header_get(const struct http_request *req, const char *name);

/* Splits "host:port", "[v6]:port" or a bare host. *port is -1 when absent. host: caller frees.
 * Returns -1 on a malformed authority (bad port, unbalanced brackets, empty host). */
int http_split_authority(const char *authority, size_t len, char **host, int *port);

struct http_url {
	char *host; /* without brackets */
	int port;   /* -1 when not explicit */
	char *authority; /* as written: "host[:port]" */
	char *path;      /* origin-form, "/" when empty */
};

/* Parses an absolute-form target "http://authority/path?query". Returns -1 when the target is
 * not absolute-form or the authority is malformed. */
int http_parse_absolute_url(const char *target, struct http_url *out);
void http_url_clear(struct http_url *u);

/* "HTTP/1.1 <code> <reason>\r\ncontent-length: N\r\n...\r\n\r\n<body>" with a text body. */
void http_put_response(struct buf *out, int code, const char *content_type, const void *body, size_t len);
const char *http_reason(int code);

#endif
