/* HTTP/1.1 request heads: parsing and small responses. */
#include "codec/http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool tchar(char c)
{
	return isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c);
}

enum http_parse_result http_parse_request(char *data, size_t len, struct http_request *req)
{
	char *end = NULL, *p, *line_end, *sp1, *sp2;

	memset(req, 0, sizeof(*req));
	/* find the end of the head */
	for (size_t i = 3; i < len; i++)
		if (data[i] == '\n' && data[i - 1] == '\r' && data[i - 2] == '\n' && data[i - 3] == '\r') {
			end = data + i + 1;
			break;
		}
	if (!end)
		return len >= HTTP_MAX_HEAD ? HTTP_TOO_LARGE : HTTP_INCOMPLETE;
	if ((size_t)(end - data) > HTTP_MAX_HEAD)
		return HTTP_TOO_LARGE;
	req->head_len = (size_t)(end - data);
	if (memchr(data, 0, req->head_len))
		return HTTP_BAD;
	/* request line: METHOD SP target SP HTTP/1.x CRLF */
	line_end = strstr(data, "\r\n");
	*line_end = 0;
	sp1 = strchr(data, ' ');
	if (!sp1 || sp1 == data)
		return HTTP_BAD;
	*sp1 = 0;
	for (p = data; *p; p++)
		if (!tchar(*p))
			return HTTP_BAD;
	sp2 = strchr(sp1 + 1, ' ');
	if (!sp2 || sp2 == sp1 + 1)
		return HTTP_BAD;
	*sp2 = 0;
	for (p = sp1 + 1; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return HTTP_BAD;
	if (strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)sp2[8]) || sp2[9])
		return HTTP_BAD;
	req->method = data;
	req->target = sp1 + 1;
	req->minor_version = sp2[8] - '0';
	/* header fields until the empty line */
	p = line_end + 2;
	while (p < end - 2) {
		char *colon, *v, *ve;

		line_end = strstr(p, "\r\n");
		*line_end = 0;
		if (*p == ' ' || *p == '\t')
			return HTTP_BAD; /* obsolete line folding: refused, as RFC 9112 allows */
		colon = strchr(p, ':');
		if (!colon || colon == p)
			return HTTP_BAD;
		*colon = 0;
		for (char *q = p; *q; q++)
			if (!tchar(*q))
				return HTTP_BAD;
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		ve = v + strlen(v);
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			*--ve = 0;
		for (char *q = v; *q; q++)
			if (((unsigned char)*q < ' ' && *q != '\t') || *q == 0x7f)
				return HTTP_BAD;
		if (req->n_headers == HTTP_MAX_HEADERS)
			return HTTP_TOO_LARGE;
		req->headers[req->n_headers++] = (struct http_header){ p, v };
		p = line_end + 2;
	}
	return HTTP_OK;
}

const char *http_header_get(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

int http_split_authority(const char *a, size_t len, char **host, int *port)
{
	const char *hs = a, *he, *colon = NULL;

	*host = NULL;
	*port = -1;
	if (len == 0)
		return -1;
	if (a[0] == '[') {
		const char *rb = memchr(a, ']', len);

		if (!rb || rb == a + 1)
			return -1;
		hs = a + 1;
		he = rb;
		if ((size_t)(rb + 1 - a) < len) {
			if (rb[1] != ':')
				return -1;
			colon = rb + 1;
		}
	} else {
		const char *c = memchr(a, ':', len);

		if (c && memchr(c + 1, ':', len - (size_t)(c + 1 - a)))
			return -1; /* bare IPv6 without brackets is ambiguous */
		he = c ? c : a + len;
		colon = c;
		if (he == hs)
			return -1;
	}
	if (colon) {
		const char *ps = colon + 1, *pe = a + len;
		long v = 0;

		if (ps == pe || pe - ps > 5)
			return -1;
		for (const char *q = ps; q < pe; q++) {
			if (!isdigit((unsigned char)*q))
				return -1;
			v = v * 10 + (*q - '0');
		}
		if (v > 65535)
			return -1;
		*port = (int)v;
	}
	*host = strndup(hs, (size_t)(he - hs));
	if (!*host)
		abort();
	return 0;
}

int http_parse_absolute_url(const char *target, struct http_url *out)
{
	const char *auth, *slash;
	size_t alen;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(target, "http://", 7) != 0)
		return -1;
	auth = target + 7;
	slash = auth + strcspn(auth, "/?#");
	alen = (size_t)(slash - auth);
	if (memchr(auth, '@', alen))
		return -1; /* userinfo has no place in a proxy request */
	if (http_split_authority(auth, alen, &out->host, &out->port) < 0)
		return -1;
	out->authority = strndup(auth, alen);
	if (*slash == '/')
		out->path = strdup(slash);
	else if (*slash == '?' && asprintf(&out->path, "/%s", slash) < 0)
		abort();
	else if (*slash != '?')
		out->path = strdup("/");
	if (!out->authority || !out->path)
		abort();
	/* a fragment is never sent */
	out->path[strcspn(out->path, "#")] = 0;
	return 0;
}

void http_url_clear(struct http_url *u)
{
	free(u->host);
	free(u->authority);
	free(u->path);
	memset(u, 0, sizeof(*u));
}

const char *http_reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Payload Too Large";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

void http_put_response(struct buf *out, int code, const char *content_type, const void *body, size_t len)
{
	buf_printf(out, "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\n", code, http_reason(code), len);
	if (content_type)
		buf_printf(out, "content-type: %s\r\n", content_type);
	buf_append_str(out, "\r\n");
	buf_append(out, body, len);
}
