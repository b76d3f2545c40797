/* Log and status clients. Runs in enclaver-run; the bytes come from the enclave. */
#include "host/console.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/vsock.h"

#define RETRY_MS 250
#define STATUS_ATTEMPTS 100
#define MAX_LOG_LINE 4096
#define MAX_STATUS_LINE 1024

static int signal_from_name(const char *name)
{
	if (!strncasecmp(name, "SIG", 3))
		name += 3;
	for (int s = 1; s < NSIG; s++) {
		const char *abbrev = sigabbrev_np(s);

		if (abbrev && !strcasecmp(abbrev, name))
			return s;
	}
	return 0;
}

int app_status_parse(const char *line, size_t len, struct app_status *out, struct err *err)
{
	json_error_t je;
	json_t *j = json_loadb(line, len, 0, &je), *st, *v;
	const char *s;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (!j)
		return err_set(err, EINVAL, "status line is not JSON: %s", je.text);
	st = json_object_get(j, "status");
	s = json_string_value(st);
	if (!s) {
		err_set(err, EINVAL, "status line has no \"status\"");
	} else if (!strcmp(s, "running")) {
		out->state = APP_RUNNING;
		rc = 0;
	} else if (!strcmp(s, "exited") && json_is_integer(v = json_object_get(j, "code"))) {
		out->state = APP_EXITED;
		out->code = (int)json_integer_value(v);
		rc = 0;
	} else if (!strcmp(s, "signaled")) {
		/* odyn writes a name ("SIGTERM"); accept a number too (upstream's host expects one). */
		v = json_object_get(j, "signal");
		out->state = APP_SIGNALED;
		if (json_is_integer(v))
			out->signal = (int)json_integer_value(v);
		else if (json_is_string(v))
			out->signal = signal_from_name(json_string_value(v));
		rc = json_is_integer(v) || json_is_string(v) ? 0 : err_set(err, EINVAL, "signaled without a signal");
	} else if (!strcmp(s, "fatal")) {
		out->state = APP_FATAL;
		v = json_object_get(j, "error");
		snprintf(out->error, sizeof(out->error), "%s", json_is_string(v) ? json_string_value(v) : "unknown");
		rc = 0;
	} else {
		err_set(err, EINVAL, "unknown status \"%s\"", s);
	}
	json_decref(j);
	return rc;
}

int app_status_exit_code(const struct app_status *st)
{
	switch (st->state) {
	case APP_EXITED:
		return st->code & 0xff;
	case APP_SIGNALED:
		return EXIT_SIGNALED;
	case APP_FATAL:
		return EXIT_FATAL;
	default:
		return 1;
	}
}

/* A reconnecting line reader over a vsock port, shared by both clients. */
struct line_client {
	struct loop *loop;
	uint32_t cid, port;
	struct loop_io io;
	struct loop_timer timer;
	int fd;
	char line[MAX_LOG_LINE + 1];
	size_t len;
	bool skipping; /* inside a line that was too long */
	int attempts;
	int max_attempts; /* 0: forever */
	int retry_ms;
	bool connecting;  /* a connect in progress: its outcome comes as EPOLLOUT or EPOLLERR */
	vsock_connect_fn connect;
	bool eof;	  /* the last connection ended with EOF, and no new one is up yet */
	void (*on_eof)(struct line_client *lc); /* instead of reconnecting, when set */
	void (*on_line)(struct line_client *lc, const char *line, size_t len);
	void (*on_give_up)(struct line_client *lc);
	size_t max_line;
};

static void lc_connect(struct loop *l, void *data);

static void lc_close(struct line_client *lc)
{
	if (lc->fd >= 0) {
		loop_io_del(lc->loop, &lc->io);
		close(lc->fd);
		lc->fd = -1;
	}
}

static void lc_drain(struct line_client *lc, bool blocking_ok)
{
	for (;;) {
		ssize_t n = recv(lc->fd, lc->line + lc->len, lc->max_line - lc->len, MSG_DONTWAIT);
		size_t start = 0;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			lc_close(lc);
			lc->eof = n == 0;
			if (lc->eof && lc->on_eof) {
				lc->on_eof(lc);
				return;
			}
			/* the stream ended: reconnect, like upstream */
			if (!blocking_ok)
				loop_timer_start(lc->loop, &lc->timer, (uint64_t)lc->retry_ms);
			return;
		}
		lc->len += (size_t)n;
		for (size_t i = 0; i < lc->len; i++) {
			if (lc->line[i] != '\n')
				continue;
			if (!lc->skipping)
				lc->on_line(lc, lc->line + start, i - start);
			lc->skipping = false;
			start = i + 1;
		}
		memmove(lc->line, lc->line + start, lc->len - start);
		lc->len -= start;
		if (lc->len == lc->max_line) {
			/* Longer than a line may be: upstream drops it; keep its start rather than nothing. */
			if (!lc->skipping)
				lc->on_line(lc, lc->line, lc->len);
			lc->skipping = true;
			lc->len = 0;
		}
	}
}

/* A connection attempt that failed, however it failed: counted, then retried or given up. */
static void lc_attempt_failed(struct line_client *lc)
{
	lc_close(lc);
	if (lc->max_attempts && ++lc->attempts >= lc->max_attempts) {
		lc->on_give_up(lc);
		return;
	}
	loop_timer_start(lc->loop, &lc->timer, (uint64_t)lc->retry_ms);
}

static void lc_on_io(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct line_client *lc = io->data;

	if (lc->connecting) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		/* On AF_VSOCK every connect is in progress at first: a refusal arrives here. */
		if (getsockopt(lc->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr ||
		    (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN))) {
			lc_attempt_failed(lc);
			return;
		}
		lc->connecting = false;
		loop_io_mod(l, io, EPOLLIN);
		if (!(events & EPOLLIN))
			return;
	}
	lc_drain(lc, false);
}

static void lc_connect(struct loop *l, void *data)
{
	struct line_client *lc = data;
	struct err err = { 0 };
	bool pending;

	lc->fd = lc->connect(lc->cid, lc->port, &pending, &err);
	if (lc->fd < 0) {
		lc_attempt_failed(lc);
		return;
	}
	lc->len = 0;
	lc->skipping = false;
	lc->eof = false;
	lc->connecting = pending;
	if (loop_io_add(l, &lc->io, lc->fd, pending ? EPOLLIN | EPOLLOUT : EPOLLIN, lc_on_io, lc, &err) < 0) {
		close(lc->fd);
		lc->fd = -1;
		loop_timer_start(l, &lc->timer, (uint64_t)lc->retry_ms);
	}
}

static void lc_init(struct line_client *lc, struct loop *l, uint32_t cid, uint32_t port, size_t max_line)
{
	lc->loop = l;
	lc->cid = cid;
	lc->port = port;
	lc->fd = -1;
	lc->max_line = max_line;
	lc->retry_ms = RETRY_MS;
	lc->connect = vsock_connect;
	loop_timer_init(&lc->timer, lc_connect, lc);
}

struct log_client {
	struct line_client lc; /* first */
	FILE *out;
	void (*on_end)(void *data);
	void *end_data;
};

static void log_ended(struct line_client *lc)
{
	struct log_client *c = (struct log_client *)lc;

	loop_timer_stop(lc->loop, &lc->timer);
	lc->on_eof = NULL;
	c->on_end(c->end_data);
}

void log_client_await_end(struct log_client *c, void (*fn)(void *data), void *data)
{
	c->on_end = fn;
	c->end_data = data;
	/* An EOF just before the status came is the end; a reconnect would replay the log. */
	if (c->lc.eof) {
		log_ended(&c->lc);
		return;
	}
	c->lc.on_eof = log_ended;
	if (c->lc.fd < 0) {
		loop_timer_stop(c->lc.loop, &c->lc.timer);
		lc_connect(c->lc.loop, &c->lc);
	}
}

static void log_line(struct line_client *lc, const char *line, size_t len)
{
	struct log_client *c = (struct log_client *)lc;

	fwrite(line, 1, len, c->out);
	fputc('\n', c->out);
	fflush(c->out);
}

int log_client_start(struct loop *l, uint32_t cid, FILE *out, struct log_client **res, struct err *err)
{
	struct log_client *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	lc_init(&c->lc, l, cid, 17001, MAX_LOG_LINE);
	c->lc.on_line = log_line;
	c->out = out;
	lc_connect(l, &c->lc);
	*res = c;
	return 0;
}

void log_client_stop(struct log_client *c)
{
	if (!c)
		return;
	if (c->lc.fd >= 0)
		lc_drain(&c->lc, true);
	if (c->lc.len)
		log_line(&c->lc, c->lc.line, c->lc.len);
	lc_close(&c->lc);
	loop_timer_stop(c->lc.loop, &c->lc.timer);
	free(c);
}

struct status_client {
	struct line_client lc;
	status_fn fn;
	void *data;
	bool done;
};

static void status_line(struct line_client *lc, const char *line, size_t len)
{
	struct status_client *c = (struct status_client *)lc;
	struct app_status st;
	struct err err = { 0 };

	if (c->done)
		return;
	if (app_status_parse(line, len, &st, &err) < 0) {
		log_warn("error parsing status line: %s", err.msg);
		return;
	}
	if (st.state == APP_RUNNING) {
		log_debug("enclave status: running");
		return;
	}
	c->done = true;
	c->fn(c->data, &st);
}

static void status_give_up(struct line_client *lc)
{
	struct status_client *c = (struct status_client *)lc;
	struct app_status st = { .state = APP_FATAL };

	snprintf(st.error, sizeof(st.error), "failed to connect to enclave status port after %d attempts",
		 lc->max_attempts);
	c->done = true;
	c->fn(c->data, &st);
}

int status_client_start(struct loop *l, uint32_t cid, const struct status_client_opts *opts, status_fn fn,
			void *data, struct status_client **res, struct err *err)
{
	struct status_client *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	lc_init(&c->lc, l, cid, 17000, MAX_STATUS_LINE);
	c->lc.on_line = status_line;
	c->lc.on_give_up = status_give_up;
	c->lc.max_attempts = opts && opts->attempts ? opts->attempts : STATUS_ATTEMPTS;
	if (opts && opts->retry_ms)
		c->lc.retry_ms = opts->retry_ms;
	if (opts && opts->connect)
		c->lc.connect = opts->connect;
	c->fn = fn;
	c->data = data;
	lc_connect(l, &c->lc);
	*res = c;
	return 0;
}

void status_client_stop(struct status_client *c)
{
	if (!c)
		return;
	lc_close(&c->lc);
	loop_timer_stop(c->lc.loop, &c->lc.timer);
	free(c);
}
