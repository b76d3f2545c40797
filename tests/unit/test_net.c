/* net/: the event loop, the emulated vsock transport, the relay and the tunnel frames. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto/sha.h"
#include "net/accept.h"
#include "net/dns.h"
#include "net/loop.h"
#include "net/relay.h"
#include "net/tunnel.h"
#include "net/vsock.h"
#include "host/ingress.h"

static int fired[4];

static void on_timer(struct loop *l, void *data)
{
	fired[(long)data] = (int)loop_now(l);
}

static void test_timers_fire_in_order(void)
{
	signal(SIGPIPE, SIG_IGN); /* as odyn and enclaver-run do: splice() cannot say MSG_NOSIGNAL */
	struct loop *l;
	struct err err = { 0 };
	struct loop_timer t[3];

	CHECK_EQ_INT(loop_new(&l, &err), 0);
	memset(fired, 0, sizeof(fired));
	loop_timer_init(&t[0], on_timer, (void *)0L);
	loop_timer_init(&t[1], on_timer, (void *)1L);
	loop_timer_init(&t[2], on_timer, (void *)2L);
	loop_timer_start(l, &t[0], 30);
	loop_timer_start(l, &t[1], 10);
	loop_timer_start(l, &t[2], 20);
	loop_timer_stop(l, &t[2]);
	for (int i = 0; i < 50 && !fired[0]; i++)
		loop_run_once(l, 100, &err);
	CHECK(fired[1] && fired[0] && !fired[2]);
	CHECK(fired[1] <= fired[0]);
	CHECK(!loop_timer_armed(&t[0]));
	loop_free(l);
}

static int got_signal;

static void on_sig(struct loop *l, int sig, void *data)
{
	got_signal = sig;
	loop_stop(l);
}

static void test_signals_through_the_loop(void)
{
	struct loop *l;
	struct err err = { 0 };
	int sigs[] = { SIGUSR1 };
	sigset_t set;

	CHECK_EQ_INT(loop_new(&l, &err), 0);
	CHECK_EQ_INT(loop_signals(l, sigs, 1, on_sig, NULL, &err), 0);
	kill(getpid(), SIGUSR1);
	CHECK_EQ_INT(loop_run(l, &err), 0);
	CHECK_EQ_INT(got_signal, SIGUSR1);
	loop_free(l);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}

static char vdir[64];

static void test_emulated_vsock(void)
{
	struct err err = { 0 };
	int lfd, cfd, afd, hfd;
	char path[108], b = 0;
	bool pending;

	snprintf(vdir, sizeof(vdir), "/tmp/vsock-XXXXXX");
	CHECK(mkdtemp(vdir) != NULL);
	CHECK_EQ_INT(vsock_use_emulated(vdir, 16, &err), 0);
	CHECK(vsock_is_emulated());
	lfd = vsock_listen(8000, 16, &err);
	CHECK(lfd >= 0);
	/* an enclave's listener is no file: nothing in the folder can stand for it */
	CHECK(vsock_emulated_path(16, 8000, path, sizeof(path), &err) < 0);
	snprintf(path, sizeof(path), "%s/16.8000", vdir);
	CHECK(access(path, F_OK) < 0);
	/* the parent's CIDs 2 and 3 are one place, a file */
	CHECK_EQ_INT(vsock_emulated_path(2, 17002, path, sizeof(path), &err), 0);
	CHECK(strstr(path, "/3.17002") != NULL);
	cfd = vsock_connect(16, 8000, &pending, &err);
	CHECK(cfd >= 0);
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	CHECK(afd >= 0);
	CHECK(write(cfd, "x", 1) == 1 && read(afd, &b, 1) == 1 && b == 'x');
	close(afd);
	close(cfd);
	/* the parent's listener is a file in the folder, reached from the enclave's side */
	CHECK_EQ_INT(vsock_use_emulated(vdir, 3, &err), 0);
	hfd = vsock_listen(17002, 16, &err);
	CHECK(hfd >= 0);
	snprintf(path, sizeof(path), "%s/3.17002", vdir);
	CHECK(access(path, F_OK) == 0);
	CHECK_EQ_INT(vsock_use_emulated(vdir, 16, &err), 0);
	cfd = vsock_connect(3, 17002, &pending, &err);
	CHECK(cfd >= 0);
	close(cfd);
	close(hfd);
	unlink(path);
/* nobody listening: a clear error, not a hang */
	CHECK(vsock_connect(16, 9999, &pending, &err) < 0);
	CHECK(strstr(err.msg, "16:9999") != NULL);
	CHECK_EQ_INT(vsock_use_emulated(vdir, 16, &err), 0);
	CHECK(vsock_use_emulated("/tmp/a-very-long-folder-name-that-goes-on-and-on-and-on-and-on-and-on-and-on-and-on-xx", 3, &err) < 0);
	close(lfd);
}

/* --- relay --- */

struct feeder {
	int fd;
	size_t len;
	uint8_t digest[48];
	int shutdown_after;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;
	uint8_t chunk[65536];
	struct sha_ctx c;
	size_t left = f->len;
	unsigned seed = 12345;

	sha_init(&c, "SHA384");
	while (left) {
		size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
		size_t off = 0;

		for (size_t i = 0; i < n; i++)
			chunk[i] = (uint8_t)(seed = seed * 1103515245 + 12345) >> 3;
		sha_update(&c, chunk, n);
		while (off < n) {
			ssize_t w = write(f->fd, chunk + off, n - off);

			if (w <= 0)
				abort();
			off += (size_t)w;
		}
		left -= n;
	}
	sha_final(&c, f->digest);
	if (f->shutdown_after)
		shutdown(f->fd, SHUT_WR);
	return NULL;
}

struct drainer {
	int fd;
	size_t got;
	uint8_t digest[48];
	int slow;
};

static void *drain(void *arg)
{
	struct drainer *d = arg;
	uint8_t chunk[65536];
	struct sha_ctx c;
	ssize_t n;

	sha_init(&c, "SHA384");
	while ((n = read(d->fd, chunk, sizeof(chunk))) > 0) {
		sha_update(&c, chunk, (size_t)n);
		d->got += (size_t)n;
		if (d->slow && d->got < (8u << 20))
			usleep(200);
	}
	sha_final(&c, d->digest);
	return NULL;
}

static struct relay_stats last_stats;
static int relays_done;

static void on_done(void *data, const struct relay_stats *st)
{
	last_stats = *st;
	relays_done++;
	if (data)
		loop_stop(data);
}

static void pair(int type, int out[2])
{
	if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, out) < 0)
		abort();
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* client <-> [a relay b] <-> server, 64 MiB each way at once, then half-close both ways. */
/* The attack: the enclave plants "<folder>/16.<port>" as a symlink to a host socket. The host
 * must never connect through it: an enclave's port is an abstract name, not a path. */
static void test_emulated_vsock_ignores_planted_symlinks(void)
{
	struct err err = { 0 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[64], link[128];
	int victim, cfd, got;
	bool pending;

	snprintf(dir, sizeof(dir), "/tmp/vsock-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/victim.sock", dir);
	victim = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(bind(victim, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(victim, 4) == 0);
	snprintf(link, sizeof(link), "%s/16.7000", dir);
	CHECK(symlink(sa.sun_path, link) == 0);
	CHECK_EQ_INT(vsock_use_emulated(dir, 3, &err), 0);
	cfd = vsock_connect(16, 7000, &pending, &err);
	CHECK(cfd < 0);
	got = accept4(victim, NULL, NULL, SOCK_CLOEXEC);
	CHECK(got < 0 && errno == EAGAIN);
	if (cfd >= 0)
		close(cfd);
	if (got >= 0)
		close(got);
	close(victim);
	unlink(link);
	unlink(sa.sun_path);
	rmdir(dir);
}

/* The host reaches an enclave's listener inside the enclave's network namespace only. */
static void test_emulated_vsock_peer_netns(void)
{
	struct err err = { 0 };
	char dir[64], path[64], c;
	int ready[2], done[2], cfd, nsfd;
	char before[64], after[64];
	ssize_t n1, n2;
	bool pending;
	pid_t pid;

	n1 = readlink("/proc/self/ns/net", before, sizeof(before));
	snprintf(dir, sizeof(dir), "/tmp/vsock-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	CHECK(pipe(ready) == 0 && pipe(done) == 0);
	pid = fork();
	if (pid == 0) {
		int lfd;

		if (unshare(CLONE_NEWNET) < 0)
			_exit(3); /* not root: nothing to test */
		if (vsock_use_emulated(dir, 16, &err) < 0 || (lfd = vsock_listen(8100, 4, &err)) < 0)
			_exit(1);
		if (write(ready[1], "r", 1) != 1 || read(done[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(done[0]);
	if (read(ready[0], &c, 1) == 1) {
		CHECK_EQ_INT(vsock_use_emulated(dir, 3, &err), 0);
		/* from this namespace the name does not exist */
		cfd = vsock_connect(16, 8100, &pending, &err);
		CHECK(cfd < 0);
		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
		nsfd = open(path, O_RDONLY | O_CLOEXEC);
		CHECK(nsfd >= 0);
		CHECK_EQ_INT(vsock_set_peer_netns(nsfd, &err), 0);
		cfd = vsock_connect(16, 8100, &pending, &err);
		CHECK(cfd >= 0);
		if (cfd >= 0)
			close(cfd);
		/* and this thread is back in its own namespace for every other socket */
		n2 = readlink("/proc/thread-self/ns/net", after, sizeof(after));
		CHECK(n1 > 0 && n1 == n2 && !memcmp(before, after, (size_t)n1));
		vsock_set_peer_netns(-1, &err);
	}
	CHECK(write(done[1], "d", 1) == 1);
	close(done[1]);
	close(ready[0]);
	waitpid(pid, NULL, 0);
	rmdir(dir);
}

static int accepted_fd = -1;

static void take_conn(struct acceptor *a, int fd)
{
	(void)a;
	accepted_fd = fd;
}

/* Out of descriptors, a listener must not wake the loop again and again: the acceptor pauses
 * it, and takes the waiting connection once a descriptor is free. */
static void test_acceptor_backs_off_on_emfile(void)
{
	struct loop *l;
	struct err err = { 0 };
	struct acceptor a;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct rlimit old, low;
	int lfd, cfd, spare[64], n_spare = 0;

	CHECK_EQ_INT(loop_new(&l, &err), 0);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 16) == 0);
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	CHECK_EQ_INT(acceptor_start(l, &a, lfd, "test listener", 0, take_conn, NULL, &err), 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	/* use up every descriptor */
	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	low.rlim_cur = 64;
	CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	while (n_spare < 64) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* not dup(0): stdin may be closed */

		if (fd < 0)
			break;
		spare[n_spare++] = fd;
	}
	accepted_fd = -1;
	/* (the back-off ends after ACCEPT_BACKOFF_MS, and the next try pauses again: look at once) */
	for (int i = 0; i < 20 && !a.paused; i++)
		loop_run_once(l, 5, &err);
	CHECK(a.paused);
	CHECK(!a.io.in_epoll); /* out of epoll: no busy loop while descriptors are short */
	CHECK_EQ_INT(accepted_fd, -1);
	/* descriptors come free: the owner says so and the waiting connection is taken (accept
	 * takes a descriptor before it looks at the queue: two are needed not to pause again) */
	close(spare[--n_spare]);
	close(spare[--n_spare]);
	acceptor_release(&a);
	for (int i = 0; i < 20 && accepted_fd < 0; i++)
		loop_run_once(l, 5, &err);
	CHECK(accepted_fd >= 0);
	CHECK(!a.paused);
	while (n_spare)
		close(spare[--n_spare]);
	setrlimit(RLIMIT_NOFILE, &old);
	if (accepted_fd >= 0)
		close(accepted_fd);
	close(cfd);
	acceptor_stop(&a);
	loop_free(l);
}

static int cap_fds[8], n_cap;

static void keep_conn(struct acceptor *a, int fd)
{
	(void)a;
	cap_fds[n_cap++] = fd;
}

/* Past the cap a connection is accepted and closed at once; room comes back on release. */
static void test_acceptor_caps_connections(void)
{
	struct loop *l;
	struct err err = { 0 };
	struct acceptor a;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int lfd, c[4];
	char b;

	CHECK_EQ_INT(loop_new(&l, &err), 0);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 16) == 0);
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	n_cap = 0;
	CHECK_EQ_INT(acceptor_start(l, &a, lfd, "capped", 2, keep_conn, NULL, &err), 0);
	for (int i = 0; i < 3; i++) {
		c[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK(connect(c[i], (struct sockaddr *)&sa, sizeof(sa)) == 0);
	}
	for (int i = 0; i < 10; i++)
		loop_run_once(l, 5, &err);
	CHECK_EQ_INT(n_cap, 2);
	CHECK_EQ_INT(a.live, 2);
	CHECK(a.said_full);
	CHECK(recv(c[2], &b, 1, 0) == 0); /* the third was closed */
	close(cap_fds[0]);
	acceptor_release(&a);
	CHECK(!a.said_full);
	c[3] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(connect(c[3], (struct sockaddr *)&sa, sizeof(sa)) == 0);
	for (int i = 0; i < 10 && n_cap < 3; i++)
		loop_run_once(l, 5, &err);
	CHECK_EQ_INT(n_cap, 3);
	for (int i = 0; i < 4; i++)
		close(c[i]);
	close(cap_fds[1]);
	close(cap_fds[2]);
	acceptor_stop(&a);
	loop_free(l);
}

static void test_relay_both_ways_with_half_close(void)
{
	struct loop *l;
	struct err err = { 0 };
	int c[2], s[2];
	pthread_t t1, t2, t3, t4;
	struct feeder fc, fs;
	struct drainer dc, ds;
	unsigned cached, in_use;

	pair(SOCK_STREAM, c);
	pair(SOCK_STREAM, s);
	nonblock(c[1]);
	nonblock(s[0]);
	CHECK_EQ_INT(loop_new(&l, &err), 0);
	relays_done = 0;
	CHECK_EQ_INT(relay_start(l, c[1], s[0], NULL, on_done, l, NULL, &err), 0);
	fc = (struct feeder){ .fd = c[0], .len = 64u << 20, .shutdown_after = 1 };
	fs = (struct feeder){ .fd = s[1], .len = 48u << 20, .shutdown_after = 1 };
	dc = (struct drainer){ .fd = c[0], .slow = 1 };
	ds = (struct drainer){ .fd = s[1] };
	pthread_create(&t1, NULL, feed, &fc);
	pthread_create(&t2, NULL, feed, &fs);
	pthread_create(&t3, NULL, drain, &dc);
	pthread_create(&t4, NULL, drain, &ds);
	CHECK_EQ_INT(loop_run(l, &err), 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_join(t3, NULL);
	pthread_join(t4, NULL);
	CHECK_EQ_INT(relays_done, 1);
	CHECK_EQ_INT(last_stats.error, 0);
	CHECK_EQ_INT(last_stats.a_to_b, 64u << 20);
	CHECK_EQ_INT(last_stats.b_to_a, 48u << 20);
	CHECK_EQ_INT(ds.got, 64u << 20);
	CHECK_EQ_INT(dc.got, 48u << 20);
	CHECK(memcmp(fc.digest, ds.digest, 48) == 0);
	CHECK(memcmp(fs.digest, dc.digest, 48) == 0);
	relay_pool_stats(&cached, &in_use);
	CHECK_EQ_INT(in_use, 0);
	close(c[0]);
	close(s[1]);
	loop_free(l);
}

/* One side half-closes and the other keeps talking: the open direction still flows. */
static void test_relay_half_close_keeps_other_direction(void)
{
	struct loop *l;
	struct err err = { 0 };
	int c[2], s[2];
	char buf[16];

	pair(SOCK_STREAM, c);
	pair(SOCK_STREAM, s);
	nonblock(c[1]);
	nonblock(s[0]);
	CHECK_EQ_INT(loop_new(&l, &err), 0);
	relays_done = 0;
	CHECK_EQ_INT(relay_start(l, c[1], s[0], NULL, on_done, NULL, NULL, &err), 0);
	CHECK(write(c[0], "ping", 4) == 4);
	shutdown(c[0], SHUT_WR);
	for (int i = 0; i < 10; i++)
		loop_run_once(l, 10, &err);
	CHECK(read(s[1], buf, sizeof(buf)) == 4);
	CHECK(read(s[1], buf, sizeof(buf)) == 0); /* the server sees EOF */
	CHECK(write(s[1], "pong", 4) == 4);
	for (int i = 0; i < 10; i++)
		loop_run_once(l, 10, &err);
	CHECK(read(c[0], buf, sizeof(buf)) == 4 && memcmp(buf, "pong", 4) == 0);
	CHECK_EQ_INT(relays_done, 0);
	close(s[1]);
	for (int i = 0; i < 10 && !relays_done; i++)
		loop_run_once(l, 10, &err);
	CHECK_EQ_INT(relays_done, 1);
	CHECK(read(c[0], buf, sizeof(buf)) == 0);
	close(c[0]);
	loop_free(l);
}

static void test_relay_idle_timeout_and_no_pipes_when_idle(void)
{
	struct loop *l;
	struct err err = { 0 };
	int c[2], s[2];
	unsigned cached, in_use;
	struct relay_opts o = { .idle_timeout_ms = 100 };
	char buf[8];

	pair(SOCK_STREAM, c);
	pair(SOCK_STREAM, s);
	nonblock(c[1]);
	nonblock(s[0]);
	CHECK_EQ_INT(loop_new(&l, &err), 0);
	relays_done = 0;
	CHECK_EQ_INT(relay_start(l, c[1], s[0], &o, on_done, l, NULL, &err), 0);
	CHECK(write(c[0], "hi", 2) == 2);
	loop_run_once(l, 20, &err);
	CHECK(read(s[1], buf, sizeof(buf)) == 2);
	relay_pool_stats(&cached, &in_use);
	CHECK_EQ_INT(in_use, 0); /* idle: the pipe went back to the pool */
	CHECK_EQ_INT(loop_run(l, &err), 0);
	CHECK_EQ_INT(relays_done, 1);
	CHECK(last_stats.idle_timeout);
	CHECK(read(s[1], buf, sizeof(buf)) == 0);
	close(c[0]);
	close(s[1]);
	loop_free(l);
}

static void test_relay_peer_reset(void)
{
	struct loop *l;
	struct err err = { 0 };
	int c[2], s[2];

	pair(SOCK_STREAM, c);
	pair(SOCK_STREAM, s);
	nonblock(c[1]);
	nonblock(s[0]);
	CHECK_EQ_INT(loop_new(&l, &err), 0);
	relays_done = 0;
	CHECK_EQ_INT(relay_start(l, c[1], s[0], NULL, on_done, l, NULL, &err), 0);
	close(s[1]); /* the server goes away entirely */
	CHECK(write(c[0], "data", 4) == 4);
	CHECK_EQ_INT(loop_run(l, &err), 0);
	CHECK_EQ_INT(relays_done, 1);
	close(c[0]);
	loop_free(l);
}

/* --- tunnel frames --- */

static void test_tunnel_frames(void)
{
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	char *host = NULL, *msg = NULL;
	uint16_t port = 0;
	int code = -1;

	CHECK_EQ_INT(tunnel_put_request(&b, "kms.us-east-1.amazonaws.com", 443, &err), 0);
	CHECK(b.len == 2 + (size_t)(b.data[0] | b.data[1] << 8));
	CHECK(memcmp(b.data + 2, "{\"host\":\"kms.us-east-1.amazonaws.com\",\"port\":443}", b.len - 2) == 0);
	CHECK_EQ_INT(tunnel_parse_request(b.data + 2, b.len - 2, &host, &port, &err), 0);
	CHECK_STR(host, "kms.us-east-1.amazonaws.com");
	CHECK_EQ_INT(port, 443);
	free(host);
	buf_reset(&b);
	tunnel_put_ok(&b);
	CHECK(b.len == 6 && memcmp(b.data, "\x04\x00\"Ok\"", 6) == 0);
	CHECK_EQ_INT(tunnel_parse_reply(b.data + 2, b.len - 2, &code, &msg, &err), 0);
	buf_reset(&b);
	tunnel_put_err(&b, 111, "Connection refused (os error 111)");
	CHECK_EQ_INT(tunnel_parse_reply(b.data + 2, b.len - 2, &code, &msg, &err), 1);
	CHECK_EQ_INT(code, 111);
	CHECK_STR(msg, "Connection refused (os error 111)");
	free(msg);
	CHECK(tunnel_parse_request((const uint8_t *)"{\"host\":\"a\",\"port\":70000}", 25, &host, &port, &err) < 0);
	CHECK(tunnel_parse_request((const uint8_t *)"{\"host\":\"\",\"port\":1}", 20, &host, &port, &err) < 0);
	CHECK(tunnel_parse_request((const uint8_t *)"{\"host\":\"a\\u0000b\",\"port\":1}", 28, &host, &port, &err) < 0);
	CHECK(tunnel_parse_request((const uint8_t *)"[1]", 3, &host, &port, &err) < 0);
	CHECK(tunnel_parse_reply((const uint8_t *)"\"Nope\"", 6, &code, &msg, &err) < 0);
	buf_free(&b);
}

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", vdir);
	CHECK(system(cmd) == 0);
}

static void on_dns(void *data, const struct dns_result *res)
{
	*(struct dns_result *)data = *res;
}

/* IP literals are answered at once: no DNS server is asked (a slow one once held egress to
 * 169.254.169.254 and routed stand-ins for seconds). */
static void test_dns_literals_need_no_server(void)
{
	struct loop *l = NULL;
	struct dns *d = NULL;
	struct err err = { 0 };
	struct dns_result r = { .status = -1 };

	CHECK_EQ_INT(loop_new(&l, &err), 0);
	CHECK_EQ_INT(dns_new(l, &d, &err), 0);
	dns_resolve(d, "169.254.169.254", 80, on_dns, &r);
	CHECK(r.status == 0 && r.n == 1 && ((struct sockaddr_in *)&r.addrs[0])->sin_port == htons(80));
	r.status = -1;
	dns_resolve(d, "::1", 443, on_dns, &r);
	CHECK(r.status == 0 && r.n == 1 && r.addrs[0].ss_family == AF_INET6);
	dns_free(d);
	loop_free(l);
}

/* docker run's -p forms, and what is published once the manifest's ports are merged in. */
static void test_publish_specs(void)
{
	static const struct {
		const char *spec, *where; /* where: host side, or NULL for a refused spec */
		unsigned port;
	} cases[] = {
		{ "8080", "0.0.0.0:0", 8080 },
		{ "9000:8080", "0.0.0.0:9000", 8080 },
		{ "9000:8080/tcp", "0.0.0.0:9000", 8080 },
		{ "127.0.0.1:9000:8080", "127.0.0.1:9000", 8080 },
		{ "127.0.0.1::8080", "127.0.0.1:0", 8080 },
		{ "[::1]:9000:8080", "[::1]:9000", 8080 },
		{ "[::]::80", "[::]:0", 80 },
		{ "65535:1", "0.0.0.0:65535", 1 },
		{ "0:80", NULL, 0 },
		{ "9000:65536", NULL, 0 },
		{ "9000:80/udp", NULL, 0 },
		{ "x:80", NULL, 0 },
		{ "1.2.3:9000:80", NULL, 0 },
		{ "[1.2.3.4]:9000:80", NULL, 0 },
		{ "[::1:9000:80", NULL, 0 },
		{ "a1:2", NULL, 0 },
		{ ":80", "0.0.0.0:0", 80 },
		{ "", NULL, 0 },
		{ "1:2:3:4", NULL, 0 },
		{ "127.0.0.1:9000:8080:", NULL, 0 },
		{ "99999999999999999999999999999999999999999999999999999999999999999999999999999999999999:1", NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct host_port_map m;
		struct err err = { 0 };
		char where[80];
		int rc = host_publish_parse(cases[i].spec, &m, &err);

		if (!cases[i].where) {
			if (rc == 0)
				fprintf(stderr, "accepted: %s\n", cases[i].spec);
			CHECK(rc < 0 && strstr(err.msg, cases[i].spec));
			continue;
		}
		CHECK_EQ_INT(rc, 0);
		host_publish_format(&m, where, sizeof(where));
		CHECK_STR(where, cases[i].where);
		CHECK_EQ_INT(m.enclave_port, cases[i].port);
	}

	/* the manifest publishes 80 and 443; -p moves 80 twice, 443 stays on itself */
	{
		struct host_port_map given[2], out[8];
		const uint16_t ports[] = { 80, 443 };
		struct err err = { 0 };
		size_t n = 0;
		char where[80];

		CHECK_EQ_INT(host_publish_parse("127.0.0.1:8080:80", &given[0], &err), 0);
		CHECK_EQ_INT(host_publish_parse("8081:80", &given[1], &err), 0);
		CHECK_EQ_INT(host_publish_merge(given, 2, ports, 2, out, 8, &n, &err), 0);
		CHECK_EQ_INT(n, 3);
		host_publish_format(&out[0], where, sizeof(where));
		CHECK_STR(where, "127.0.0.1:8080");
		host_publish_format(&out[1], where, sizeof(where));
		CHECK_STR(where, "0.0.0.0:8081");
		host_publish_format(&out[2], where, sizeof(where));
		CHECK_STR(where, "0.0.0.0:443");
		CHECK_EQ_INT(out[2].enclave_port, 443);
		/* a port the manifest does not publish, and more than fit */
		CHECK_EQ_INT(host_publish_parse("9000:22", &given[1], &err), 0);
		CHECK(host_publish_merge(given, 2, ports, 2, out, 8, &n, &err) < 0 &&
		      strstr(err.msg, "publishes no port 22 (its ingress: 80, 443)"));
		CHECK(host_publish_merge(given, 1, ports, 2, out, 1, &n, &err) < 0 && err.code == E2BIG);
		CHECK(host_publish_merge(given, 1, NULL, 0, out, 8, &n, &err) < 0 && strstr(err.msg, "(its ingress: none)"));
		CHECK_EQ_INT(host_publish_merge(NULL, 0, ports, 2, out, 8, &n, &err), 0);
		CHECK_EQ_INT(n, 2);
	}
}

TEST_MAIN(T(test_publish_specs), T(test_dns_literals_need_no_server), T(test_timers_fire_in_order), T(test_signals_through_the_loop), T(test_emulated_vsock),
	  T(test_emulated_vsock_ignores_planted_symlinks), T(test_emulated_vsock_peer_netns),
	  T(test_acceptor_backs_off_on_emfile), T(test_acceptor_caps_connections),
	  T(test_relay_both_ways_with_half_close), T(test_relay_half_close_keeps_other_direction),
	  T(test_relay_idle_timeout_and_no_pipes_when_idle), T(test_relay_peer_reset), T(test_tunnel_frames),
	  T(cleanup))
