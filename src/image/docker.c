/* Docker Engine API over a Unix socket or TCP, through the small HTTP client. */
#include "image/docker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"

#define DEFAULT_SOCKET "/var/run/docker.sock"

struct docker {
	char *where;  /* as the user would write it */
	char *base;   /* URL prefix: "http://localhost" or "https://host:port" */
	char *socket; /* Unix socket path, or NULL */
	char *ca, *cert, *key;
};

static char *cert_file(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

int docker_open(struct docker **out, struct err *err)
{
	const char *host = getenv("DOCKER_HOST");
	struct docker *d = calloc(1, sizeof(*d));

	if (!d)
		abort();
	if (!host || !*host)
		host = "unix://" DEFAULT_SOCKET;
	d->where = strdup(host);
	if (!strncmp(host, "unix://", 7) && host[7]) {
		d->socket = strdup(host + 7);
		d->base = strdup("http://localhost");
	} else if (!strncmp(host, "tcp://", 6) && host[6]) {
		const char *tls = getenv("DOCKER_TLS_VERIFY");
		bool https = tls && *tls && strcmp(tls, "0");

		if (asprintf(&d->base, "%s://%.*s", https ? "https" : "http", (int)strcspn(host + 6, "/"), host + 6) < 0)
			abort();
		if (https) {
			const char *dir = getenv("DOCKER_CERT_PATH");
			char home[4096];

			if (!dir || !*dir) {
				snprintf(home, sizeof(home), "%s/.docker", getenv("HOME") ? getenv("HOME") : "/root");
				dir = home;
			}
			d->ca = cert_file(dir, "ca.pem");
			d->cert = cert_file(dir, "cert.pem");
			d->key = cert_file(dir, "key.pem");
		}
	} else {
		docker_free(d);
		return err_set(err, EINVAL, "DOCKER_HOST=%s: only unix:// and tcp:// daemons are supported", host);
	}
	*out = d;
	return 0;
}

void docker_free(struct docker *d)
{
	if (!d)
		return;
	free(d->where);
	free(d->base);
	free(d->socket);
	free(d->ca);
	free(d->cert);
	free(d->key);
	free(d);
}

const char *docker_where(const struct docker *d)
{
	return d->where;
}

int docker_raw(struct docker *d, const char *path, struct hc_req *r, struct hc_resp *resp, struct err *err)
{
	char *url;
	int rc;

	if (asprintf(&url, "%s%s", d->base, path) < 0)
		abort();
	r->url = url;
	r->unix_socket = d->socket;
	r->tls_ca = d->ca;
	r->tls_cert = d->cert;
	r->tls_key = d->key;
	rc = hc_do(r, resp, err);
	free(url);
	r->url = NULL;
	if (rc < 0 && d->socket && access(d->socket, F_OK) < 0)
		return err_set(err, EHOSTDOWN, /* not ENOENT, which callers read as "no such image" */
			       "no Docker daemon at %s (%s does not exist): start dockerd, or set DOCKER_HOST to "
			       "the daemon's socket",
			       d->where, d->socket);
	if (rc < 0 && d->socket && access(d->socket, R_OK | W_OK) < 0)
		return err_set(err, EACCES,
			       "the Docker daemon's socket %s is not open to this user: run as root or as a member "
			       "of the socket's group (docker)",
			       d->socket);
	/* curl names "localhost port 80" for a Unix socket: say what was tried instead */
	if (rc < 0 && d->socket)
		return err_set(err, EHOSTDOWN,
			       "the Docker daemon at %s does not answer on its socket: is dockerd running? (DOCKER_HOST "
			       "names another daemon)",
			       d->where);
	if (rc < 0)
		return err_wrap(err, "the Docker daemon at %s does not answer (is it running? DOCKER_HOST names another "
				     "daemon)",
				d->where);
	return 0;
}

/* The daemon's {"message": ...} of an error answer. */
static int daemon_error(struct docker *d, struct hc_resp *resp, const char *what, struct err *err)
{
	json_t *j = json_loadb((const char *)resp->body.data, resp->body.len, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "message"));
	int code = resp->status == 404 ? ENOENT : resp->status == 409 ? EEXIST : EIO;

	err_set(err, code, "%s: Docker daemon at %s answered %ld: %s", what, d->where, resp->status,
		msg ? msg : "(no message)");
	json_decref(j);
	return -1;
}

bool docker_reachable(struct docker *d)
{
	struct hc_req r = { .timeout_s = 2, .connect_timeout_s = 1 };
	struct hc_resp resp;
	struct err err = { 0 };
	bool ok;

	if (docker_raw(d, "/_ping", &r, &resp, &err) < 0)
		return false;
	ok = resp.status == 200;
	hc_resp_free(&resp);
	return ok;
}

int docker_json(struct docker *d, const char *method, const char *path, json_t *body, json_t **out,
		struct err *err)
{
	static const char *const json_hdr[] = { "Content-Type: application/json", NULL };
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct hc_req r = { .method = method, .headers = text ? json_hdr : NULL, .body = text,
			    .body_len = text ? strlen(text) : 0 };
	struct hc_resp resp;
	int rc = -1;

	if (out)
		*out = NULL;
	if (docker_raw(d, path, &r, &resp, err) < 0)
		goto done;
	if (resp.status >= 400) {
		daemon_error(d, &resp, path, err);
	} else {
		if (out && resp.body.len) {
			json_error_t je;

			*out = json_loadb((const char *)resp.body.data, resp.body.len, 0, &je);
			if (!*out) {
				err_set(err, EINVAL, "%s: Docker daemon sent invalid JSON: %s", path, je.text);
				goto free_resp;
			}
		}
		rc = 0;
	}
free_resp:
	hc_resp_free(&resp);
done:
	free(text);
	return rc;
}

int docker_image_inspect(struct docker *d, const char *ref, json_t **out, struct err *err)
{
	char *name = hc_escape(ref), *path;
	int rc;

	if (asprintf(&path, "/images/%s/json", name) < 0)
		abort();
	free(name);
	rc = docker_json(d, "GET", path, NULL, out, err);
	free(path);
	if (rc < 0 && err->code == ENOENT) {
		err_clear(err);
		return 0;
	}
	return rc < 0 ? -1 : 1;
}

/* One line of a JSON message stream ({"status"...}, {"stream"...}, {"error"...}). */
struct stream_ctx {
	const char *what;
	char last[256];
};

static int on_message(void *ctx, const char *line, size_t len, struct err *err)
{
	return docker_stream_message(((struct stream_ctx *)ctx)->what, line, len, err);
}

int docker_stream_message(const char *what, const char *line, size_t len, struct err *err)
{
	struct stream_ctx one = { .what = what }, *s = &one;
	json_t *j = json_loadb(line, len, 0, NULL);
	const char *e, *status, *id, *stream;

	if (!j)
		return 0; /* not a message; the daemon's own business */
	e = json_string_value(json_object_get(j, "error"));
	if (e) {
		err_set(err, EIO, "%s: %s", s->what, e);
		json_decref(j);
		return -1;
	}
	status = json_string_value(json_object_get(j, "status"));
	id = json_string_value(json_object_get(j, "id"));
	stream = json_string_value(json_object_get(j, "stream"));
	if (stream) {
		snprintf(s->last, sizeof(s->last), "%.*s", (int)strcspn(stream, "\n"), stream);
		log_debug("%s: %s", s->what, s->last);
	}
	if (status) {
		const char *prog = json_string_value(json_object_get(j, "progress"));

		progress_show("%s: %s%s%s %s", s->what, id ? id : "", id ? " " : "", status, prog ? prog : "");
		log_debug("%s: %s%s%s", s->what, id ? id : "", id ? " " : "", status);
	}
	json_decref(j);
	return 0;
}

static int stream_call(struct docker *d, const char *method, const char *path, struct hc_req *r, const char *what,
		       struct err *err)
{
	struct stream_ctx s = { .what = what };
	struct hc_resp resp;
	int rc = -1;

	r->method = method;
	r->on_line = on_message;
	r->ctx = &s;
	if (docker_raw(d, path, r, &resp, err) < 0)
		goto out;
	if (resp.status >= 400)
		daemon_error(d, &resp, what, err);
	else
		rc = 0;
	hc_resp_free(&resp);
out:
	progress_end();
	return rc;
}

int docker_image_pull(struct docker *d, const char *ref, struct err *err)
{
	char *name = hc_escape(ref), *path, what[300];
	struct hc_req r = { 0 };
	int rc;

	if (asprintf(&path, "/images/create?fromImage=%s", name) < 0)
		abort();
	free(name);
	snprintf(what, sizeof(what), "pull %s", ref);
	log_info("pulling %s through the Docker daemon", ref);
	rc = stream_call(d, "POST", path, &r, what, err);
	free(path);
	return rc;
}

static void save_progress(void *ctx, uint64_t done, uint64_t total)
{
	char size[32];

	(void)total;
	progress_size(done, size);
	progress_show("reading %s from the Docker daemon: %s", (const char *)ctx, size);
}

int docker_image_save(struct docker *d, const char *ref, int fd, struct err *err)
{
	char *name = hc_escape(ref), *path;
	struct hc_req r = { .out_to_fd = true, .out_fd = fd, .ctx = (void *)ref };
	struct hc_resp resp;
	int rc = -1;

	if (progress_on())
		r.on_progress = save_progress;
	if (asprintf(&path, "/images/%s/get", name) < 0)
		abort();
	free(name);
	if (docker_raw(d, path, &r, &resp, err) == 0) {
		if (resp.status >= 400)
			daemon_error(d, &resp, ref, err);
		else
			rc = 0;
		hc_resp_free(&resp);
	}
	progress_end();
	free(path);
	return rc;
}

int docker_image_load(struct docker *d, const char *path, struct err *err)
{
	static const char *const hdr[] = { "Content-Type: application/x-tar", NULL };
	struct hc_req r = { .headers = hdr, .body_from_fd = true };
	struct stat st;
	int rc;

	r.body_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r.body_fd < 0 || fstat(r.body_fd, &st) < 0) {
		rc = err_sys(err, "%s", path);
		goto out;
	}
	r.body_len = (uint64_t)st.st_size;
	rc = stream_call(d, "POST", "/images/load", &r, "load the release image into Docker", err);
out:
	if (r.body_fd >= 0)
		close(r.body_fd);
	return rc;
}

/* --- containers --- */

int docker_container_create(struct docker *d, const char *name, json_t *body, char id[80], struct err *err)
{
	char path[160];
	json_t *out = NULL;
	const char *cid;

	/* name: docker's own rule ([A-Za-z0-9][A-Za-z0-9_.-]+, checked by the caller) needs no
	 * escaping in a query */
	snprintf(path, sizeof(path), "/containers/create%s%.80s", name ? "?name=" : "", name ? name : "");
	if (docker_json(d, "POST", path, body, &out, err) < 0)
		return -1;
	cid = json_string_value(json_object_get(out, "Id"));
	if (!cid || strlen(cid) >= 80 || strspn(cid, "0123456789abcdef") != strlen(cid)) {
		json_decref(out);
		return err_set(err, EINVAL, "the Docker daemon gave no container ID");
	}
	snprintf(id, 80, "%s", cid);
	{
		size_t i;
		json_t *w;

		json_array_foreach(json_object_get(out, "Warnings"), i, w)
			if (json_is_string(w))
				log_warn("Docker: %s", json_string_value(w));
	}
	json_decref(out);
	return 0;
}

int docker_container_do(struct docker *d, const char *id, const char *action, struct err *err)
{
	char path[200];

	if (!strcmp(action, "remove"))
		snprintf(path, sizeof(path), "/containers/%s?force=1", id);
	else
		snprintf(path, sizeof(path), "/containers/%s/%s", id, action);
	return docker_json(d, !strcmp(action, "remove") ? "DELETE" : "POST", path, NULL, NULL, err);
}

int docker_container_stop(struct docker *d, const char *id, int seconds, struct err *err)
{
	char path[200];

	snprintf(path, sizeof(path), "/containers/%s/stop?t=%d", id, seconds);
	return docker_json(d, "POST", path, NULL, NULL, err);
}

int docker_container_list(struct docker *d, const char *label, bool all, json_t **out, struct err *err)
{
	char path[300];
	json_t *filters = json_pack("{s:[s]}", "label", label);
	char *text = json_dumps(filters, JSON_COMPACT), *q = path;
	size_t used;

	json_decref(filters);
	used = (size_t)snprintf(path, sizeof(path), "/containers/json?all=%d&filters=", all);
	q = path + used;
	/* the filter is JSON in a query: every byte but [A-Za-z0-9.-_] percent-encoded */
	for (const char *c = text; *c && q < path + sizeof(path) - 4; c++) {
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr(".-_", *c))
			*q++ = *c;
		else
			q += sprintf(q, "%%%02X", (unsigned char)*c);
	}
	*q = 0;
	free(text);
	if (docker_json(d, "GET", path, NULL, out, err) < 0)
		return -1;
	if (!json_is_array(*out)) {
		json_decref(*out);
		*out = NULL;
		return err_set(err, EIO, "the Docker daemon at %s answered its container list with something else", d->where);
	}
	return 0;
}

int docker_container_has_path(struct docker *d, const char *id, const char *path, bool *has, struct err *err)
{
	char url[300];
	struct hc_req r = { .method = "HEAD" };
	struct hc_resp resp = { 0 };
	int rc = 0;

	/* the path is ours (a constant): it needs no escaping in the query */
	snprintf(url, sizeof(url), "/containers/%s/archive?path=%s", id, path);
	if (docker_raw(d, url, &r, &resp, err) < 0)
		return -1;
	if (resp.status == 200 || resp.status == 404)
		*has = resp.status == 200;
	else
		rc = err_set(err, EIO, "%s: the Docker daemon answered %ld", url, resp.status);
	hc_resp_free(&resp);
	return rc;
}

int docker_container_wait(struct docker *d, const char *id, int *code, struct err *err)
{
	char path[200];
	json_t *out = NULL;
	json_t *sc;

	snprintf(path, sizeof(path), "/containers/%s/wait", id);
	if (docker_json(d, "POST", path, NULL, &out, err) < 0)
		return -1;
	sc = json_object_get(out, "StatusCode");
	if (!json_is_integer(sc)) {
		json_decref(out);
		return err_set(err, EINVAL, "the Docker daemon gave no exit code");
	}
	*code = (int)json_integer_value(sc);
	json_decref(out);
	return 0;
}

/* The logs of a container without a TTY come multiplexed: frames of an 8-byte header (stream,
 * 0, 0, 0, big-endian length) and the bytes. */
int docker_demux_feed(void *ctx, const void *data, size_t len, struct err *err)
{
	struct docker_demux *m = ctx;
	const uint8_t *p = data;

	while (len) {
		if (m->left) {
			size_t n = len < m->left ? len : m->left;

			if (fs_write_full(m->fd, p, n) < 0 && errno != EPIPE)
				return err_sys(err, "write logs");
			p += n;
			len -= n;
			m->left -= (uint32_t)n;
			continue;
		}
		m->head[m->have++] = *p++;
		len--;
		if (m->have < 8)
			continue;
		m->have = 0;
		m->fd = m->head[0] == 2 ? m->err_fd : m->out_fd;
		m->left = (uint32_t)m->head[4] << 24 | (uint32_t)m->head[5] << 16 | (uint32_t)m->head[6] << 8 | m->head[7];
	}
	return 0;
}

int docker_container_logs(struct docker *d, const char *id, bool follow, int out_fd, struct err *err)
{
	char path[200];
	struct docker_demux m = { .out_fd = out_fd, .err_fd = STDERR_FILENO, .fd = out_fd };
	struct hc_req r = { .on_data = docker_demux_feed, .ctx = &m };
	struct hc_resp resp;
	int rc = -1;

	snprintf(path, sizeof(path), "/containers/%s/logs?follow=%d&stdout=1&stderr=1", id, follow);
	if (docker_raw(d, path, &r, &resp, err) < 0)
		return -1;
	if (resp.status >= 400)
		daemon_error(d, &resp, "logs", err);
	else
		rc = 0;
	hc_resp_free(&resp);
	return rc;
}
