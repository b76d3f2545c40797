/* odyn's log ring and the host's status-line parser. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "net/loop.h"
#include "net/vsock.h"

#include "enclave/console.h"
#include "host/console.h"

static void test_ring_keeps_the_newest(void)
{
	static struct log_ring r;
	static uint8_t big[3 * CONSOLE_LOG_CAPACITY], out[CONSOLE_LOG_CAPACITY + 10];
	uint64_t cursor = 0;
	size_t n;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i % 251);
	log_ring_write(&r, "early", 5);
	n = log_ring_read(&r, &cursor, out, sizeof(out));
	CHECK(n == 5 && memcmp(out, "early", 5) == 0);
	/* three capacities in pieces: a late reader gets exactly the last 128 KiB, in order */
	for (size_t i = 0; i < sizeof(big); i += 1000)
		log_ring_write(&r, big + i, sizeof(big) - i < 1000 ? sizeof(big) - i : 1000);
	cursor = 0;
	n = log_ring_read(&r, &cursor, out, sizeof(out));
	CHECK_EQ_INT(n, CONSOLE_LOG_CAPACITY);
	CHECK(memcmp(out, big + sizeof(big) - CONSOLE_LOG_CAPACITY, CONSOLE_LOG_CAPACITY) == 0);
	CHECK_EQ_INT(cursor, r.total);
	/* one write larger than the ring */
	log_ring_write(&r, big, sizeof(big));
	cursor = log_ring_oldest(&r);
	n = log_ring_read(&r, &cursor, out, sizeof(out));
	CHECK(n == CONSOLE_LOG_CAPACITY && memcmp(out, big + sizeof(big) - CONSOLE_LOG_CAPACITY, n) == 0);
}

static void test_status_lines(void)
{
	struct app_status st;
	struct err err = { 0 };
	const char *l;

	l = "{ \"status\": \"exited\", \"code\": 3 }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK(st.state == APP_EXITED && st.code == 3 && app_status_exit_code(&st) == 3);
	l = "{ \"status\": \"exited\", \"code\": 300 }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK_EQ_INT(app_status_exit_code(&st), 300 & 0xff);
	/* upstream odyn writes a name, upstream's host wanted a number: both are accepted */
	l = "{ \"status\": \"signaled\", \"signal\": \"SIGTERM\" }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK(st.state == APP_SIGNALED && st.signal == SIGTERM && app_status_exit_code(&st) == 107);
	l = "{\"status\":\"signaled\",\"signal\":9}";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK_EQ_INT(st.signal, 9);
	l = "{ \"status\": \"fatal\", \"error\": \"bad \\\"quoted\\\"\\nthing\" }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK(st.state == APP_FATAL && app_status_exit_code(&st) == 108);
	CHECK_STR(st.error, "bad \"quoted\"\nthing");
	l = "{ \"status\": \"running\" }";
	CHECK_EQ_INT(app_status_parse(l, strlen(l), &st, &err), 0);
	CHECK(st.state == APP_RUNNING);
	l = "{ \"status\": \"fatal\", \"error\": \"unescaped \" quote\" }";
	CHECK(app_status_parse(l, strlen(l), &st, &err) < 0);
	l = "{ \"status\": \"weird\" }";
	CHECK(app_status_parse(l, strlen(l), &st, &err) < 0);
}

static int ended;

static void on_end(void *data)
{
	(void)data;
	ended++;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* The app prints its last line and ends at once, while the host's log client is between two
 * connection attempts: the host must still print the line, once, before it exits. Both sides
 * run here, odyn's console capturing this process's stdout as it captures the app's. */
static void test_last_lines_reach_the_host(void)
{
	char dir[64] = "/tmp/console-XXXXXX", out_text[4096] = "";
	struct err err = { 0 };
	struct loop *l;
	struct console *c = NULL;
	struct log_client *lc = NULL;
	FILE *out = tmpfile();
	int saved_out = dup(1), saved_err = dup(2), end_at_once;
	size_t n;

	CHECK(mkdtemp(dir) != NULL);
	CHECK_EQ_INT(loop_new(&l, &err), 0);
	CHECK_EQ_INT(vsock_use_emulated(dir, 16, &err), 0);
	/* the host's client first: nothing listens yet, its next attempt is 250 ms away */
	CHECK_EQ_INT(log_client_start(l, 16, out, &lc, &err), 0);
	CHECK_EQ_INT(console_new(l, true, &c, &err), 0);
	if (write(1, "last words\n", 11) != 11)
		abort();
	console_status_exited(c, 3); /* what odyn does when the app is reaped */
	ended = 0;
	log_client_await_end(lc, on_end, NULL);
	for (int i = 0; i < 100 && !ended; i++)
		loop_run_once(l, 10, &err);
	/* the stream has ended: awaiting again (a status after the EOF) ends at once, no replay */
	end_at_once = ended;
	log_client_await_end(lc, on_end, NULL);
	end_at_once = ended - end_at_once;
	console_free(c);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	log_client_stop(lc);
	rewind(out);
	n = fread(out_text, 1, sizeof(out_text) - 1, out);
	out_text[n] = 0;
	fclose(out);
	loop_free(l);
	rmdir(dir);
	CHECK_EQ_INT(ended, 2);
	CHECK_EQ_INT(end_at_once, 1);
	CHECK_EQ_INT(count(out_text, "last words\n"), 1);
}

/* A connector with AF_VSOCK's manners: loopback TCP, whose non-blocking connect is always in
 * progress at first, a refusal arriving later. The port stands for the CID. */
static int tcp_pending, tcp_attempts;

static int tcp_connect(uint32_t cid, uint32_t port, bool *in_progress, struct err *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)cid),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	tcp_attempts++;
	*in_progress = false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINPROGRESS) {
			close(fd);
			return err_sys(err, "connect");
		}
		*in_progress = true;
		tcp_pending++;
	}
	return fd;
}

static struct app_status got;
static int got_count;

static void on_status(void *data, const struct app_status *st)
{
	got = *st;
	got_count++;
}

static uint16_t closed_port(int *keep)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* bound and not listening: connections to it are refused, and the port stays ours */
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		abort();
	*keep = fd;
	return ntohs(sa.sin_port);
}

static void test_status_gives_up_when_refused_after_in_progress(void)
{
	struct status_client_opts opts = { .attempts = 5, .retry_ms = 10, .connect = tcp_connect };
	struct status_client *sc = NULL;
	struct err err = { 0 };
	struct loop *l;
	int keep, lfd, conn;
	uint16_t port = closed_port(&keep);

	CHECK_EQ_INT(loop_new(&l, &err), 0);
	got_count = tcp_pending = tcp_attempts = 0;
	CHECK_EQ_INT(status_client_start(l, port, &opts, on_status, NULL, &sc, &err), 0);
	for (int i = 0; i < 200 && !got_count; i++)
		loop_run_once(l, 10, &err);
	CHECK_EQ_INT(got_count, 1);
	CHECK(got.state == APP_FATAL);
	CHECK_STR(got.error, "failed to connect to enclave status port after 5 attempts");
	CHECK_EQ_INT(tcp_attempts, 5);
	CHECK_EQ_INT(tcp_pending, 5); /* every refusal came after EINPROGRESS */
	status_client_stop(sc);

	/* the same path connects when something listens, and the status arrives */
	CHECK_EQ_INT(listen(keep, 4), 0);
	lfd = keep;
	got_count = tcp_pending = tcp_attempts = 0;
	CHECK_EQ_INT(status_client_start(l, port, &opts, on_status, NULL, &sc, &err), 0);
	for (int i = 0; i < 100 && (conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0; i++)
		loop_run_once(l, 10, &err);
	CHECK(conn >= 0);
	if (conn >= 0 && write(conn, "{\"status\":\"exited\",\"code\":3}\n", 30) != 30)
		abort();
	for (int i = 0; i < 200 && !got_count; i++)
		loop_run_once(l, 10, &err);
	CHECK_EQ_INT(got_count, 1);
	CHECK(got.state == APP_EXITED && got.code == 3);
	CHECK_EQ_INT(tcp_attempts, 1);
	status_client_stop(sc);
	close(conn);
	close(lfd);
	loop_free(l);
}

TEST_MAIN(T(test_ring_keeps_the_newest), T(test_status_lines), T(test_last_lines_reach_the_host),
	  T(test_status_gives_up_when_refused_after_in_progress))
