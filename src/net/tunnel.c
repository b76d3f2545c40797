/* Egress tunnel frames. */
#include "net/tunnel.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void put_frame(struct buf *out, const char *json)
{
	size_t n = strlen(json);
	uint8_t hdr[2] = { (uint8_t)(n & 0xff), (uint8_t)(n >> 8) };

	buf_append(out, hdr, 2);
	buf_append(out, json, n);
}

static void put_json(struct buf *out, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	if (!s)
		abort();
	put_frame(out, s);
	free(s);
	json_decref(j);
}

int tunnel_put_request(struct buf *out, const char *host, uint16_t port, struct err *err)
{
	if (!*host || strlen(host) > TUNNEL_MAX_HOST)
		return err_set(err, EINVAL, "egress: host name of %zu bytes", strlen(host));
	put_json(out, json_pack("{s:s, s:i}", "host", host, "port", (int)port));
	return 0;
}

void tunnel_put_ok(struct buf *out)
{
	put_frame(out, "\"Ok\"");
}

void tunnel_put_err(struct buf *out, int os_code, const char *message)
{
	char cut[1024];

	/* Bounded so that the frame always fits its 16-bit length. */
	snprintf(cut, sizeof(cut), "%s", message);
	put_json(out, json_pack("{s:{s:i, s:s}}", "Err", "os_code", os_code, "message", cut));
}

static json_t *load(const uint8_t *json, size_t len, struct err *err)
{
	json_error_t je;
	json_t *j = json_loadb((const char *)json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);

	if (!j)
		err_set(err, EINVAL, "egress tunnel: invalid JSON: %s", je.text);
	return j;
}

int tunnel_parse_request(const uint8_t *json, size_t len, char **host, uint16_t *port, struct err *err)
{
	json_t *j = load(json, len, err), *h, *p;
	const char *hs;
	size_t hl;
	json_int_t pv;

	if (!j)
		return -1;
	h = json_object_get(j, "host");
	p = json_object_get(j, "port");
	if (!json_is_object(j) || !json_is_string(h) || !json_is_integer(p) || json_object_size(j) != 2) {
		json_decref(j);
		return err_set(err, EINVAL, "egress tunnel: expected {\"host\": string, \"port\": number}");
	}
	hs = json_string_value(h);
	hl = json_string_length(h);
	pv = json_integer_value(p);
	if (hl == 0 || hl > TUNNEL_MAX_HOST || strlen(hs) != hl || pv < 0 || pv > 65535) {
		json_decref(j);
		return err_set(err, EINVAL, "egress tunnel: host or port out of range");
	}
	*host = strdup(hs);
	if (!*host)
		abort();
	*port = (uint16_t)pv;
	json_decref(j);
	return 0;
}

int tunnel_parse_reply(const uint8_t *json, size_t len, int *os_code, char **message, struct err *err)
{
	json_t *j = load(json, len, err), *e, *c, *m;
	int rc;

	if (!j)
		return -1;
	if (json_is_string(j) && strcmp(json_string_value(j), "Ok") == 0) {
		json_decref(j);
		*os_code = 0;
		return 0;
	}
	e = json_object_get(j, "Err");
	c = json_object_get(e, "os_code");
	m = json_object_get(e, "message");
	if (json_is_integer(c) && json_is_string(m)) {
		*os_code = (int)json_integer_value(c);
		*message = strdup(json_string_value(m));
		if (!*message)
			abort();
		rc = 1;
	} else {
		rc = err_set(err, EINVAL, "egress tunnel: unexpected reply");
	}
	json_decref(j);
	return rc;
}

int tunnel_frame_recv(int fd, uint8_t *frame, size_t max, size_t *got)
{
	for (;;) {
		size_t need = *got < 2 ? 2 - *got : 2 + (size_t)(frame[0] | frame[1] << 8) - *got;
		ssize_t n;

		if (*got >= 2 && (size_t)(frame[0] | frame[1] << 8) > max)
			return -1;
		if (*got >= 2 && need == 0)
			return 1;
		n = recv(fd, frame + *got, need, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0)
			return -1;
		*got += (size_t)n;
	}
}

static int read_exact(int fd, uint8_t *p, size_t n, int timeout_ms, struct err *err)
{
	while (n) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pf, 1, timeout_ms) == 0)
			return err_set(err, ETIMEDOUT, "egress tunnel: no reply");
		r = read(fd, p, n);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return err_sys(err, "egress tunnel: read");
		if (r == 0)
			return err_set(err, ECONNRESET, "egress tunnel: closed by the host");
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int tunnel_read_frame(int fd, uint8_t **payload, size_t *len, int timeout_ms, struct err *err)
{
	uint8_t hdr[2];
	size_t n;

	if (read_exact(fd, hdr, 2, timeout_ms, err) < 0)
		return -1;
	n = (size_t)hdr[0] | (size_t)hdr[1] << 8;
	*payload = malloc(n ? n : 1);
	if (!*payload)
		abort();
	if (read_exact(fd, *payload, n, timeout_ms, err) < 0) {
		free(*payload);
		*payload = NULL;
		return -1;
	}
	*len = n;
	return 0;
}
