/* Test program run inside local enclaves: one static binary, one subcommand per behaviour. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <sys/time.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <linux/vm_sockets.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <grp.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static int listen_tcp(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8192) < 0) {
		perror("listen");
		exit(3);
	}
	return fd;
}

struct econn {
	int fd;
	char *buf; /* only while data is in flight: thousands of idle connections stay small */
	size_t off, len;
	int eof, shut;
};

/* An epoll echo server that honours half-close and backpressure. */
__attribute__((noreturn)) static void echo_on(int lfd, int port);

__attribute__((noreturn)) static void echo(int port)
{
	echo_on(listen_tcp(port), port);
}

__attribute__((noreturn)) static void echo_on(int lfd, int port)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, evs[128];

	printf("echo listening on %d\n", port);
	fflush(stdout);
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 128, -1);

		for (int i = 0; i < n; i++) {
			struct econn *c = evs[i].data.ptr;

			if (!c) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

				if (fd < 0)
					continue;
				c = calloc(1, sizeof(*c));
				c->fd = fd;
				ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = c };
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				continue;
			}
			for (;;) {
				if (c->off < c->len) {
					ssize_t w = write(c->fd, c->buf + c->off, c->len - c->off);

					if (w < 0 && errno == EAGAIN)
						break;
					if (w < 0)
						goto drop;
					c->off += (size_t)w;
					continue;
				}
				if (c->eof) {
					shutdown(c->fd, SHUT_WR);
					goto drop;
				}
				{
					ssize_t r;

					if (!c->buf)
						c->buf = malloc(65536);
					r = read(c->fd, c->buf, 65536);
					if (r < 0 && errno == EAGAIN) {
						free(c->buf);
						c->buf = NULL;
						break;
					}
					if (r <= 0) {
						c->eof = 1;
						continue;
					}
					c->off = 0;
					c->len = (size_t)r;
				}
			}
			ev = (struct epoll_event){ .events = c->off < c->len ? EPOLLOUT : EPOLLIN, .data.ptr = c };
			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			continue;
drop:
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			close(c->fd);
			free(c->buf);
			free(c);
		}
	}
}

/* For throughput: the client sends 'S', 'R' or 'E' and a little-endian u64 count. 'S': the client
 * sends count bytes, which are read and answered with the count once all came. 'R': count bytes
 * are sent to the client, then the connection closes. 'E': what comes is echoed until the client
 * ends. A process per connection. */
__attribute__((noreturn)) static void stream_on(int lfd, int port)
{
	printf("stream listening on %d\n", port);
	fflush(stdout);
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			continue;
		if (fork() == 0) {
			static char buf[1 << 18];
			unsigned char req[9];
			unsigned long long n = 0, done = 0;
			size_t got = 0;

			close(lfd);
			while (got < sizeof(req)) {
				ssize_t r = read(fd, req + got, sizeof(req) - got);

				if (r <= 0)
					_exit(1);
				got += (size_t)r;
			}
			for (int i = 8; i >= 1; i--)
				n = n << 8 | req[i];
			while (req[0] == 'E') {
				ssize_t r = read(fd, buf, sizeof(buf)), w = 0;

				if (r <= 0)
					_exit(r < 0);
				while (w < r) {
					ssize_t k = write(fd, buf + w, (size_t)(r - w));

					if (k <= 0)
						_exit(1);
					w += k;
				}
			}
			while (done < n) {
				size_t want = n - done < sizeof(buf) ? (size_t)(n - done) : sizeof(buf);
				ssize_t r = req[0] == 'S' ? read(fd, buf, want) : write(fd, buf, want);

				if (r <= 0)
					_exit(1);
				done += (unsigned long long)r;
			}
			if (req[0] == 'S' && write(fd, req + 1, 8) != 8)
				_exit(1);
			_exit(0);
		}
		close(fd);
	}
}

static unsigned long crc32_update(unsigned long c, const unsigned char *b, size_t n)
{
	static unsigned long table[256];

	if (!table[1])
		for (unsigned long i = 0; i < 256; i++) {
			unsigned long v = i;

			for (int k = 0; k < 8; k++)
				v = v & 1 ? 0xedb88320ul ^ (v >> 1) : v >> 1;
			table[i] = v;
		}
	c ^= 0xfffffffful;
	while (n--)
		c = table[(c ^ *b++) & 0xff] ^ (c >> 8);
	return c ^ 0xfffffffful;
}

/* One line per entry under dir (not crossing into other mounts): path, type, mode, uid, gid,
 * size, links, inode, the CRC-32 of the contents (files) or the target (symlinks), and the
 * file capabilities in hex ("-" for none). */
static void walk(const char *dir, dev_t dev)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[4096], target[4096] = "", caps[160] = "-";
		unsigned char cv[64];
		struct stat st;
		unsigned long h = 0;
		ssize_t cl;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") ? dir : "", de->d_name);
		if (lstat(path, &st) < 0 || st.st_dev != dev)
			continue;
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(path, target, sizeof(target) - 1);

			target[n > 0 ? n : 0] = 0;
			h = crc32_update(0, (const unsigned char *)target, strlen(target));
		} else if (S_ISREG(st.st_mode)) {
			int fd = open(path, O_RDONLY | O_NOFOLLOW);
			unsigned char b[65536];
			ssize_t n;

			while (fd >= 0 && (n = read(fd, b, sizeof(b))) > 0)
				h = crc32_update(h, b, (size_t)n);
			if (fd >= 0)
				close(fd);
			cl = lgetxattr(path, "security.capability", cv, sizeof(cv));
			for (ssize_t i = 0; i < cl; i++)
				snprintf(caps + 2 * i, 3, "%02x", cv[i]);
		}
		printf("%s\t%o\t%o\t%u\t%u\t%lld\t%lu\t%lu\t%08lx\t%s\n", path, (unsigned)(st.st_mode & S_IFMT) >> 12,
		       (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid, (long long)st.st_size,
		       (unsigned long)st.st_nlink, (unsigned long)st.st_ino, h, caps);
		if (S_ISDIR(st.st_mode))
			walk(path, dev);
	}
	closedir(d);
}

static int proxy_fd(void)
{
	const char *p = getenv("http_proxy");
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int port, fd;

	if (!p || sscanf(p, "http://127.0.0.1:%d", &port) != 1) {
		fprintf(stderr, "no http_proxy\n");
		exit(4);
	}
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect proxy");
		exit(4);
	}
	return fd;
}

static void dump_reply(int fd)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	fflush(stdout);
}

/* api PORT METHOD PATH BODY: one request to odyn's API; prints the status line, then the body
 * in hex, 1000 digits a line (log lines are bounded). */
static int api_call(int port, const char *method, const char *path, const char *body)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	static char reply[1 << 20];
	size_t got = 0;
	ssize_t n;
	char *end, *p;

	for (int i = 0; i < 50 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0; i++) {
		close(fd);
		usleep(100000);
		fd = socket(AF_INET, SOCK_STREAM, 0);
	}
	dprintf(fd, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s", method,
		path, strlen(body), body);
	while (got < sizeof(reply) - 1 && (n = read(fd, reply + got, sizeof(reply) - 1 - got)) > 0)
		got += (size_t)n;
	reply[got] = 0;
	close(fd);
	end = strstr(reply, "\r\n\r\n");
	if (!end) {
		printf("api: no reply\n");
		return 1;
	}
	*strstr(reply, "\r\n") = 0;
	printf("api-status: %s\n", reply);
	for (p = reply; p < end; p++)
		if (!strncasecmp(p, "\ncontent-type: ", 15) || !strncasecmp(p, "\0content-type: ", 15))
			printf("api-type: %.*s\n", (int)strcspn(p + 15, "\r"), p + 15);
	p = end + 4;
	for (size_t i = 0; p + i < reply + got; i += 500) {
		size_t k = (size_t)(reply + got - p) - i < 500 ? (size_t)(reply + got - p) - i : 500;

		printf("api-body: ");
		for (size_t j = 0; j < k; j++)
			printf("%02x", (unsigned char)p[i + j]);
		printf("\n");
	}
	printf("api-end\n");
	return 0;
}

/* kms COUNT INTERVAL_MS TARGET BODY: KMS JSON requests to $AWS_KMS_ENDPOINT, signed as far as
 * the proxy looks (it re-signs): prints each answer's status line and body. */
static int kms_calls(int count, int interval_ms, const char *target, const char *body)
{
	const char *ep = getenv("AWS_KMS_ENDPOINT");
	int port, failed = 0;

	if (!ep || sscanf(ep, "http://127.0.0.1:%d", &port) != 1) {
		printf("kms: no AWS_KMS_ENDPOINT\n");
		return 3;
	}
	for (int i = 0; i < count; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		static char reply[1 << 16];
		size_t got = 0;
		ssize_t n;
		char *end;

		if (i)
			usleep((useconds_t)interval_ms * 1000);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			perror("kms connect");
			return 3;
		}
		dprintf(fd, "POST / HTTP/1.1\r\nHost: kms.us-east-1.amazonaws.com\r\nContent-Type: application/x-amz-json-1.1\r\n"
			    "X-Amz-Target: %s\r\nX-Amz-Date: 20240101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 "
			    "Credential=AKIDEXAMPLE/20240101/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, "
			    "Signature=0000000000000000000000000000000000000000000000000000000000000000\r\n"
			    "Connection: close\r\nContent-Length: %zu\r\n\r\n%s", target, strlen(body), body);
		while (got < sizeof(reply) - 1 && (n = read(fd, reply + got, sizeof(reply) - 1 - got)) > 0)
			got += (size_t)n;
		reply[got] = 0;
		close(fd);
		end = strstr(reply, "\r\n\r\n");
		*strstr(reply, "\r\n") = 0;
		printf("kms-status: %s\n", reply);
		printf("kms-body: %s\n", end ? end + 4 : "");
		failed += strstr(reply, " 200 ") == NULL;
	}
	return failed ? 1 : 0;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

/* kms-bench N TARGET BODY: N requests one after another on one kept connection, as the AWS
 * SDKs make them; prints latency percentiles and the rate. */
struct kms_run {
	int count, ok;
	const char *target, *body;
	long *lat; /* this client's slice */
};

/* One answer on fd into reply (NUL-terminated): its head and a body of content-length bytes.
 * Returns 0, or -1 when the connection ended first. */
static int read_answer(int fd, char *reply, size_t size)
{
	size_t got = 0, want = 0;
	ssize_t n;

	for (;;) {
		char *end = got ? strstr(reply, "\r\n\r\n") : NULL;

		if (end && !want) {
			const char *cl = strcasestr(reply, "content-length:");

			if (!cl || cl > end)
				return -1;
			want = (size_t)(end + 4 - reply) + strtoul(cl + 15, NULL, 10);
			if (want >= size)
				return -1;
		}
		if (want && got >= want)
			return 0;
		n = read(fd, reply + got, size - 1 - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
		reply[got] = 0;
	}
}

/* One KMS request on the kept connection fd; its latency into *us. Returns 1 for a 200. */
static int kms_once(int fd, const char *target, const char *body, char *reply, size_t size, long *us)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	dprintf(fd, "POST / HTTP/1.1\r\nHost: kms\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: %s\r\n"
		    "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/kms/aws4_request, "
		    "SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\n"
		    "Content-Length: %zu\r\n\r\n%s", target, strlen(body), body);
	if (read_answer(fd, reply, size) < 0)
		exit(3);
	clock_gettime(CLOCK_MONOTONIC, &b);
	*us = (b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000;
	return strstr(reply, " 200 ") != NULL;
}

/* A kept connection to the KMS proxy at $AWS_KMS_ENDPOINT. */
static int kms_connect(void)
{
	const char *ep = getenv("AWS_KMS_ENDPOINT");
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, port;

	if (!ep || sscanf(ep, "http://127.0.0.1:%d", &port) != 1)
		exit(3);
	sa.sin_port = htons((uint16_t)port);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		exit(3);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* count requests to the KMS proxy one after another on one connection */
static void *kms_client(void *arg)
{
	struct kms_run *r = arg;
	int fd = kms_connect();
	char *reply = malloc(1 << 16);

	if (!reply)
		exit(3);
	for (int i = 0; i < r->count; i++)
		r->ok += kms_once(fd, r->target, r->body, reply, 1 << 16, &r->lat[i]);
	close(fd);
	free(reply);
	return NULL;
}

/* kms-mixed TARGET BODY: on one kept connection to the KMS proxy, a good call; a good call
 * written in two parts 5 ms apart; one with no signature; and a good call; prints the four
 * statuses. What a worker serving the connection itself must hand back to the loop, and take
 * again after. */
static int kms_mixed(const char *target, const char *body)
{
	int fd = kms_connect();
	char *reply = malloc(1 << 16), req[4096];
	int n, codes[4] = { 0 };
	long us;

	if (!reply)
		return 3;
	kms_once(fd, target, body, reply, 1 << 16, &us);
	sscanf(reply, "HTTP/1.1 %d", &codes[0]);
	n = snprintf(req, sizeof(req),
		     "POST / HTTP/1.1\r\nHost: kms\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: %s\r\n"
		     "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/kms/aws4_request, "
		     "SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\n"
		     "Content-Length: %zu\r\n\r\n%s", target, strlen(body), body);
	if (write(fd, req, (size_t)n / 2) < 0 || usleep(5000) < 0 || write(fd, req + n / 2, (size_t)(n - n / 2)) < 0 ||
	    read_answer(fd, reply, 1 << 16) < 0)
		return 3;
	sscanf(reply, "HTTP/1.1 %d", &codes[1]);
	dprintf(fd, "POST / HTTP/1.1\r\nHost: kms\r\nX-Amz-Target: %s\r\nContent-Length: %zu\r\n\r\n%s", target,
		strlen(body), body);
	if (read_answer(fd, reply, 1 << 16) < 0)
		return 3;
	sscanf(reply, "HTTP/1.1 %d", &codes[2]);
	kms_once(fd, target, body, reply, 1 << 16, &us);
	sscanf(reply, "HTTP/1.1 %d", &codes[3]);
	printf("kms-mixed: %d %d %d %d\n", codes[0], codes[1], codes[2], codes[3]);
	close(fd);
	free(reply);
	return 0;
}

/* kms-paced HOST:PORT TARGET BODY: one KMS request each time the coordinator at HOST:PORT
 * (reached through the egress proxy) sends "g", answering "OK|FAIL MICROSECONDS"; ends at "q".
 * bench/kms's baseline client takes its turn between, so that both see the same moments of
 * this machine. */
static int kms_paced(const char *hostport, const char *target, const char *body)
{
	int c = proxy_fd(), fd = kms_connect(), one = 1;
	char *reply = malloc(1 << 16), head[1024], go;
	size_t got = 0;

	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	dprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hostport, hostport);
	while (got < sizeof(head) - 1 && !memmem(head, got, "\r\n\r\n", 4)) {
		ssize_t n = read(c, head + got, 1); /* byte by byte: nothing after the head is taken */

		if (n <= 0 || !reply)
			return 3;
		got += (size_t)n;
	}
	head[got] = 0;
	if (!strstr(head, " 200 ")) {
		printf("kms-paced: the proxy refused: %.100s\n", head);
		return 3;
	}
	while (read(c, &go, 1) == 1 && go == 'g') {
		long us;
		int ok = kms_once(fd, target, body, reply, 1 << 16, &us);

		dprintf(c, "%s %ld\n", ok ? "OK" : "FAIL", us);
	}
	close(fd);
	close(c);
	free(reply);
	return 0;
}

/* kms-bench COUNT TARGET BODY [CONCURRENCY]: COUNT calls in all, from CONCURRENCY clients */
static int kms_bench(int count, const char *target, const char *body, int conc)
{
	struct timespec t0, t1;
	int ok = 0;
	long *lat;
	struct kms_run *runs = calloc((size_t)(conc > 0 ? conc : 1), sizeof(*runs));
	pthread_t *th = calloc((size_t)(conc > 0 ? conc : 1), sizeof(*th));

	count = conc > 0 ? count / conc * conc : 0;
	lat = calloc((size_t)(count > 0 ? count : 1), sizeof(long));
	if (!lat || !runs || !th || count < 1)
		return 3;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < conc; i++) {
		runs[i] = (struct kms_run){ count / conc, 0, target, body, lat + i * (count / conc) };
		pthread_create(&th[i], NULL, kms_client, &runs[i]);
	}
	for (int i = 0; i < conc; i++) {
		pthread_join(th[i], NULL);
		ok += runs[i].ok;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	qsort(lat, (size_t)count, sizeof(long), cmp_long);
	printf("kms-bench: n=%d ok=%d p50_us=%ld p99_us=%ld rps=%.1f\n", count, ok, lat[count / 2],
	       lat[(count * 99) / 100 < count ? (count * 99) / 100 : count - 1],
	       count / ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
	free(lat);
	free(runs);
	free(th);
	return ok == count ? 0 : 1;
}

/* The host's egress tunnel port, as odyn reaches it (the emulated vsock folder). */
static int egress_port_fd(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/run/enclaver/vsock/3.17002");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("egress port");
		close(fd);
		return -1;
	}
	return fd;
}

/* An address of either family from text; port in host order. */
static socklen_t ip_addr(const char *ip, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		return sizeof(*s4);
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return sizeof(*s6);
	}
	return 0;
}

/* One DNS query over UDP to server:53; prints the rcode and A/PTR answers on one line, and puts
 * the first A answer in a4 (when not NULL). Returns the rcode, -1 on no answer. */
static int dns_query(const char *server, const char *name, int type, char *a4, bool quiet)
{
	uint8_t q[512], r[1024];
	size_t o = 12;
	struct sockaddr_storage ss;
	socklen_t len = ip_addr(server, 53, &ss);
	int fd = socket(ss.ss_family, SOCK_DGRAM, 0), rcode;
	struct timeval tv = { .tv_sec = 3 };
	ssize_t n;
	const char *p = name;

	memset(q, 0, 12);
	q[0] = 0x42;
	q[2] = 1;
	q[5] = 1;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		q[o++] = (uint8_t)l;
		memcpy(q + o, p, l);
		o += l;
		p += l + (dot ? 1 : 0);
	}
	q[o++] = 0;
	q[o++] = (uint8_t)(type >> 8);
	q[o++] = (uint8_t)type;
	q[o++] = 0;
	q[o++] = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (sendto(fd, q, o, 0, (struct sockaddr *)&ss, len) < 0 || (n = recv(fd, r, sizeof(r), 0)) < 12) {
		printf("dns %s %s: %s\n", server, name, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	rcode = r[3] & 0xf;
	if (!quiet)
		printf("dns %s %s type %d: rcode %d answers %d", server, name, type, rcode, r[7]);
	{
		size_t at = o; /* after the echoed question */

		for (int i = 0; i < r[7] && at + 12 <= (size_t)n; i++) {
			unsigned t = (unsigned)r[at + 2] << 8 | r[at + 3], rdlen = (unsigned)r[at + 10] << 8 | r[at + 11];
			char text[300] = "";

			if (at + 12 + rdlen > (size_t)n)
				break;
			if (t == 1 && rdlen == 4) {
				inet_ntop(AF_INET, r + at + 12, text, sizeof(text));
				if (a4 && i == 0)
					strcpy(a4, text);
			} else if (t == 12) {
				size_t k = 0;

				for (size_t j = at + 12; j < at + 12 + rdlen && r[j]; j += r[j] + 1U)
					k += (size_t)snprintf(text + k, sizeof(text) - k, "%s%.*s", k ? "." : "", r[j],
							      (const char *)r + j + 1);
			}
			if (!quiet)
				printf(" %s", text);
			at += 12 + rdlen;
		}
	}
	if (!quiet)
		printf("\n");
	return rcode;
}

/* A plain TCP connection (no proxy) to ip:port: sends msg, half-closes, prints the answer. */
static int tcp_send(const char *ip, int port, const char *msg)
{
	struct sockaddr_storage ss;
	socklen_t len = ip_addr(ip, port, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);
	char buf[4096];
	ssize_t n, got = 0;
	struct timeval tv = { .tv_sec = 10 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		printf("tsend %s:%d: connect: %s\n", ip, port, strerror(errno));
		close(fd);
		return 1;
	}
	if (send(fd, msg, strlen(msg), MSG_NOSIGNAL) < 0) {
		printf("tsend %s:%d: send: %s\n", ip, port, strerror(errno));
		close(fd);
		return 1;
	}
	shutdown(fd, SHUT_WR);
	while ((n = recv(fd, buf + got, sizeof(buf) - 1 - (size_t)got, 0)) > 0)
		got += n;
	buf[got] = 0;
	printf("tsend %s:%d: %s%s%s\n", ip, port, n < 0 ? "recv: " : "", n < 0 ? strerror(errno) : "", buf);
	close(fd);
	return n < 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "dns") && argc == 5) { /* dns SERVER NAME TYPE: one query over UDP */
		return dns_query(argv[2], argv[3], atoi(argv[4]), NULL, false) < 0;
	}
	if (!strcmp(argv[1], "tsend") && argc == 5) { /* tsend IP PORT MSG: straight TCP, no proxy */
		return tcp_send(argv[2], atoi(argv[3]), argv[4]);
	}
	if (!strcmp(argv[1], "nsend") && argc == 5) { /* nsend NAME PORT MSG: its A from the resolver, then TCP */
		char a4[64] = "";

		if (dns_query("127.0.0.1", argv[2], 1, a4, true) != 0 || !a4[0]) {
			printf("nsend %s: does not resolve\n", argv[2]);
			return 1;
		}
		return tcp_send(a4, atoi(argv[3]), argv[4]);
	}
	if (!strcmp(argv[1], "udp") && argc == 4) { /* udp IP PORT: can a datagram be sent there? */
		struct sockaddr_storage ss;
		socklen_t len = ip_addr(argv[2], atoi(argv[3]), &ss);
		int fd = socket(ss.ss_family, SOCK_DGRAM, 0);

		printf("udp %s:%s: %s\n", argv[2], argv[3],
		       sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len) < 0 ? strerror(errno) : "SENT");
		return 0;
	}
	if (!strcmp(argv[1], "unrule")) { /* what a root app would try to undo transparent egress */
		int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
		struct {
			struct nlmsghdr nh;
			struct rtmsg rt;
		} req = { .nh = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_DELROUTE,
				  .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK },
			  .rt = { .rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_scope = RT_SCOPE_NOWHERE } };
		struct {
			struct nlmsghdr nh;
			struct nlmsgerr e;
		} ack = { 0 };
		struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
		int nfd;

		printf("unrule raw socket: %s\n", fd < 0 ? strerror(errno) : "OPENED");
		/* with a raw socket, the xtables table swap iptables -F makes */
		if (fd >= 0) {
			char info[84] = "nat";
			socklen_t il = sizeof(info);

			printf("unrule read nat: %s\n", getsockopt(fd, IPPROTO_IP, 64, info, &il) < 0 ? strerror(errno) : "READ");
		}
		nfd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
		if (sendto(nfd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0 ||
		    recv(nfd, &ack, sizeof(ack), 0) < 0)
			printf("unrule delete route: %s\n", strerror(errno));
		else
			printf("unrule delete route: %s\n", ack.e.error ? strerror(-ack.e.error) : "DELETED");
		printf("unrule unshare net: %s\n", unshare(CLONE_NEWNET) < 0 ? strerror(errno) : "UNSHARED");
		return 0;
	}
	if (!strcmp(argv[1], "nconns") && argc == 5) { /* nconns NAME PORT N: N connections open at once, each echoed */
		char a4[64] = "";
		struct sockaddr_storage ss;
		socklen_t len;
		int n = atoi(argv[4]), ok = 0, *fds = calloc((size_t)n, sizeof(int));

		if (dns_query("127.0.0.1", argv[2], 1, a4, true) != 0 || !a4[0]) {
			printf("nconns %s: does not resolve\n", argv[2]);
			return 1;
		}
		len = ip_addr(a4, atoi(argv[3]), &ss);
		for (int i = 0; i < n; i++) {
			fds[i] = socket(ss.ss_family, SOCK_STREAM, 0);
			if (connect(fds[i], (struct sockaddr *)&ss, len) < 0) {
				printf("nconns: connection %d: %s\n", i, strerror(errno));
				return 1;
			}
		}
		for (int i = 0; i < n; i++) {
			char c = 0;
			struct timeval tv = { .tv_sec = 20 };

			setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			if (send(fds[i], "y", 1, MSG_NOSIGNAL) == 1 && recv(fds[i], &c, 1, 0) == 1 && c == 'y')
				ok++;
		}
		printf("nconns: %d of %d echoed while all were open\n", ok, n);
		return ok != n;
	}
	if (!strcmp(argv[1], "exec") && argc >= 3) { /* exec PROGRAM ARGS...: becomes it (in a seq, one step) */
		execv(argv[2], argv + 2);
		printf("exec %s: %s\n", argv[2], strerror(errno));
		return 127;
	}
	if (!strcmp(argv[1], "exit")) {
		printf("probe exiting with %s\n", argv[2]);
		return atoi(argv[2]);
	}
	if (!strcmp(argv[1], "signal")) {
		printf("probe killing itself with %s\n", argv[2]);
		kill(getpid(), atoi(argv[2]));
		pause();
	}
	if (!strcmp(argv[1], "echo"))
		echo(atoi(argv[2]));
	if (!strcmp(argv[1], "stream"))
		stream_on(listen_tcp(atoi(argv[2])), atoi(argv[2]));
	if (!strcmp(argv[1], "vsock-echo") || !strcmp(argv[1], "vsock-stream")) {
		/* vsock-echo|vsock-stream PORT: in a VM enclave's guest, on its own vsock, with the
		 * buffer odyn's vsock sockets have (src/net/vsock.c) */
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
					  .svm_port = (unsigned)atoi(argv[2]) };
		int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		unsigned long long b = 1 << 20;

		setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &b, sizeof(b));
		setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &b, sizeof(b));
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
			perror("vsock-echo");
			return 1;
		}
		if (!strcmp(argv[1], "vsock-stream"))
			stream_on(fd, atoi(argv[2]));
		echo_on(fd, atoi(argv[2]));
	}
	if (!strcmp(argv[1], "sleep")) {
		printf("probe sleeping\n");
		sleep((unsigned)atoi(argv[2]));
		return 0;
	}
	if (!strcmp(argv[1], "connect")) { /* connect HOST:PORT MESSAGE: CONNECT through the proxy */
		int fd = proxy_fd();

		dprintf(fd, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", argv[2], argv[2]);
		if (argc > 3) {
			/* wait for the proxy's answer before speaking to the target */
			char c, last[4] = { 0 };

			while (read(fd, &c, 1) == 1) {
				putchar(c);
				memmove(last, last + 1, 3);
				last[3] = c;
				if (!memcmp(last, "\r\n\r\n", 4))
					break;
			}
			if (write(fd, argv[3], strlen(argv[3])) < 0)
				return 5;
			shutdown(fd, SHUT_WR);
		}
		dump_reply(fd);
		return 0;
	}
	if (!strcmp(argv[1], "get")) { /* get URL: absolute-form GET through the proxy */
		int fd = proxy_fd();

		dprintf(fd, "GET %s HTTP/1.1\r\nHost: ignored\r\nConnection: keep-alive\r\n\r\n", argv[2]);
		dump_reply(fd);
		return 0;
	}
	if (!strcmp(argv[1], "kms-mixed") && argc == 4)
		return kms_mixed(argv[2], argv[3]);
	if (!strcmp(argv[1], "kms-paced") && argc == 5)
		return kms_paced(argv[2], argv[3], argv[4]);
	if (!strcmp(argv[1], "kms-bench") && (argc == 5 || argc == 6))
		return kms_bench(atoi(argv[2]), argv[3], argv[4], argc > 5 ? atoi(argv[5]) : 1);
	if (!strcmp(argv[1], "kms") && argc == 6)
		return kms_calls(atoi(argv[2]), atoi(argv[3]), argv[4], argv[5]);
	if (!strcmp(argv[1], "api")) { /* api PORT METHOD PATH BODY [PORT METHOD PATH BODY]... */
		for (int i = 2; i + 3 < argc; i += 4)
			api_call(atoi(argv[i]), argv[i + 1], argv[i + 2], argv[i + 3]);
		return 0;
	}
	if (!strcmp(argv[1], "par-get")) { /* par-get N URL: N absolute-form GETs at once, each in a child */
		int n = atoi(argv[2]), ok = 0;

		for (int i = 0; i < n; i++)
			if (fork() == 0) {
				int fd = proxy_fd();
				char buf[65536];
				ssize_t k, got = 0;

				dprintf(fd, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", argv[3]);
				while ((k = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
					got += k;
				_exit(got > 0 && strstr(buf, " 200 ") == buf + 8 ? 0 : 1);
			}
		for (int i = 0; i < n; i++) {
			int st;

			wait(&st);
			ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
		}
		printf("par-get: %d of %d answered\n", ok, n);
		return ok == n ? 0 : 1;
	}
	if (!strcmp(argv[1], "post")) { /* post URL BODY: absolute-form POST with a body */
		int fd = proxy_fd();

		dprintf(fd, "POST %s HTTP/1.1\r\nHost: ignored\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
			argv[2], strlen(argv[3]), argv[3]);
		dump_reply(fd);
		return 0;
	}
	if (!strcmp(argv[1], "drop")) { /* what Vault's entrypoint does: chown, then run as a user */
		int fd = open("/tmp/owned", O_CREAT | O_WRONLY, 0600);

		if (fd < 0 || fchown(fd, 100, 1000) < 0) {
			perror("chown");
			return 7;
		}
		close(fd);
		if (setgroups(0, NULL) < 0 || setgid(1000) < 0 || setuid(100) < 0) {
			perror("drop");
			return 8;
		}
		fd = open("/tmp/owned", O_WRONLY);
		printf("as uid=%d: %s\n", (int)getuid(), fd >= 0 && write(fd, "x", 1) == 1 ? "wrote its own file" : strerror(errno));
		return 0;
	}
	if (!strcmp(argv[1], "setcap")) { /* what Vault's entrypoint does: setcap cap_ipc_lock, drop, run */
		struct { uint32_t magic; struct { uint32_t permitted, inheritable; } data[2]; } cap = {
			0x02000000 | 1 /* VFS_CAP_REVISION_2 | effective */, { { 1u << 14, 0 }, { 0, 0 } } };
		int in = open("/proc/self/exe", O_RDONLY), out = open("/capped", O_CREAT | O_WRONLY, 0755);
		char buf[65536];
		ssize_t n;
		pid_t pid;
		int status;

		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)n) != n)
				return 9;
		close(in);
		close(out);
		if (setxattr("/capped", "security.capability", &cap, sizeof(cap), 0) < 0) {
			perror("setcap");
			return 10;
		}
		pid = fork();
		if (pid == 0) {
			if (setgroups(0, NULL) < 0 || setgid(1000) < 0 || setuid(100) < 0)
				_exit(11);
			execl("/capped", "capped", "capeff", (char *)NULL);
			_exit(12);
		}
		waitpid(pid, &status, 0);
		return WIFEXITED(status) ? WEXITSTATUS(status) : 13;
	}
	if (!strcmp(argv[1], "capeff")) {
		FILE *f = fopen("/proc/self/status", "r");
		char line[256];

		while (f && fgets(line, sizeof(line), f))
			if (!strncmp(line, "CapEff:", 7))
				printf("uid=%d %s", (int)getuid(), line);
		return 0;
	}
	if (!strcmp(argv[1], "vsock")) {
		int fd = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);

		printf("vsock socket: %s\n", fd < 0 ? strerror(errno) : "OPENED");
		if (fd >= 0)
			return 1;
		/* the kernel reads an int: high bits set in the 64-bit register must not get past
		 * the filter, for socket() nor socketpair() (no connection is ever attempted) */
		fd = (int)syscall(SYS_socket, (1L << 32) | 40, (long)SOCK_STREAM, 0L);
		printf("vsock socket (high bits): %s\n", fd < 0 ? strerror(errno) : "OPENED");
		if (fd >= 0)
			return 1;
		{
			int sv[2];
			long rc = syscall(SYS_socketpair, (0xdeadL << 32) | 40, (long)SOCK_STREAM, 0L, sv);

			printf("vsock socketpair (high bits): %s\n", rc < 0 ? strerror(errno) : "OPENED");
			return rc < 0 ? 0 : 1;
		}
	}
	if (!strcmp(argv[1], "tcp")) { /* tcp IP PORT: can this enclave reach it? */
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		inet_pton(AF_INET, argv[2], &sa.sin_addr);
		printf("tcp %s:%s: %s\n", argv[2], argv[3],
		       connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? strerror(errno) : "CONNECTED");
		return 0;
	}
	if (!strcmp(argv[1], "pids")) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		int n = 0;

		while (d && (e = readdir(d)))
			if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
				n++;
		printf("visible processes: %d\n", n);
		return 0;
	}
	if (!strcmp(argv[1], "alloc")) { /* alloc MB: touch MB MiB, 1 MiB at a time */
		long mb = atol(argv[2]);

		for (long i = 0; i < mb; i++) {
			char *p = malloc(1 << 20);

			memset(p, 1, 1 << 20);
		}
		printf("allocated %ld MiB\n", mb);
		return 0;
	}
	if (!strcmp(argv[1], "burst")) { /* burst BYTES then say done */
		static char line[1024];
		long total = atol(argv[2]);

		memset(line, 'x', sizeof(line) - 1);
		line[sizeof(line) - 1] = '\n';
		for (long w = 0; w < total; w += (long)sizeof(line))
			if (fwrite(line, 1, sizeof(line), stdout) != sizeof(line))
				return 6;
		printf("burst done\n");
		return 0;
	}
	if (!strcmp(argv[1], "seq")) { /* seq "CMD ARGS" ...: run each as a probe, in order */
		for (int i = 2; i < argc; i++) {
			char *args[16], *save = NULL, *copy = strdup(argv[i]);
			int n = 0, status;
			pid_t pid;

			args[n++] = argv[0];
			for (char *t = strtok_r(copy, " ", &save); t && n < 15; t = strtok_r(NULL, " ", &save))
				args[n++] = t;
			args[n] = NULL;
			printf("=== %s\n", argv[i]);
			pid = fork();
			if (pid == 0) {
				execv("/proc/self/exe", args);
				_exit(127);
			}
			waitpid(pid, &status, 0);
			printf("\n=== end\n");
			free(copy);
		}
		return 0;
	}
	if (!strcmp(argv[1], "plant") && argc == 4) { /* plant TARGET LINK: a symlink where the host looks */
		unlink(argv[3]);
		if (symlink(argv[2], argv[3]) < 0)
			printf("plant %s: %s\n", argv[3], strerror(errno));
		else
			printf("plant %s: planted\n", argv[3]);
		return 0;
	}
	if (!strcmp(argv[1], "fill") && argc == 4) { /* fill PATH MB: write MB MiB into PATH */
		static char chunk[1 << 20];
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		long mb = atol(argv[3]), done = 0;

		if (fd < 0) {
			printf("fill %s: %s\n", argv[2], strerror(errno));
			return 0;
		}
		while (done < mb && write(fd, chunk, sizeof(chunk)) == (ssize_t)sizeof(chunk))
			done++;
		printf("fill %s: wrote %ld MiB\n", argv[2], done);
		close(fd);
		return 0;
	}
	if (!strcmp(argv[1], "tunnel") && argc == 4) { /* tunnel HOST PORT: a frame straight to the host's egress port */
		int fd = egress_port_fd();
		char json[512], reply[600];
		uint8_t hdr[2];
		size_t len;
		ssize_t n;

		if (fd < 0)
			return 1;
		len = (size_t)snprintf(json, sizeof(json), "{\"host\":\"%s\",\"port\":%s}", argv[2], argv[3]);
		hdr[0] = (uint8_t)len;
		hdr[1] = (uint8_t)(len >> 8);
		if (write(fd, hdr, 2) != 2 || write(fd, json, len) != (ssize_t)len)
			perror("tunnel write");
		n = read(fd, reply, sizeof(reply) - 1);
		reply[n > 2 ? n : 2] = 0;
		printf("tunnel %s:%s: %s\n", argv[2], argv[3], n > 2 ? reply + 2 : "(no reply)");
		close(fd);
		return 0;
	}
	if (!strcmp(argv[1], "tunnel-flood") && argc == 3) { /* tunnel-flood N: N half-sent frames, held */
		int n = atoi(argv[2]), open_ok = 0, closed = 0;
		int *fds = calloc((size_t)n, sizeof(int));
		bool *gone = calloc((size_t)n, sizeof(bool));

		for (int i = 0; i < n; i++) {
			fds[i] = egress_port_fd();
			if (fds[i] < 0)
				continue;
			open_ok++;
			/* the host may close one over its cap before the byte goes: that is a close too */
			if (send(fds[i], "\xff", 1, MSG_NOSIGNAL) != 1)
				gone[i] = true;
		}
		usleep(500000);
		for (int i = 0; i < n; i++) { /* the host closed the ones over its cap */
			char c;
			ssize_t r = fds[i] >= 0 && !gone[i] ? recv(fds[i], &c, 1, MSG_DONTWAIT) : 1;

			if (gone[i] || r == 0 || (r < 0 && errno == ECONNRESET)) /* reset: closed with our byte unread */
				closed++;
		}
		printf("tunnel-flood: %d sent, %d closed by the host\n", open_ok, closed);
		fflush(stdout);
		sleep(3);
		return 0;
	}
	if (!strcmp(argv[1], "hold-console") && argc == 5) { /* hold-console N SECONDS CODE */
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		struct stat st;
		int n = atoi(argv[2]), held = 0;
		socklen_t len;

		if (stat("/run/enclaver/vsock", &st) < 0) {
			perror("vsock folder");
			return 1;
		}
		/* odyn's status port, by the name the emulated transport gives it */
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
				  (size_t)snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "enclaver-vsock/%llx.%llx/16.17000",
						   (unsigned long long)st.st_dev, (unsigned long long)st.st_ino));
		for (int i = 0; i < n; i++) {
			int fd = socket(AF_UNIX, SOCK_STREAM, 0);
			char c;

			/* a slot is held once odyn has sent its status line */
			if (connect(fd, (struct sockaddr *)&sa, len) == 0 && recv(fd, &c, 1, 0) == 1)
				held++;
		}
		printf("hold-console: holding %d\n", held);
		fflush(stdout);
		sleep((unsigned)atoi(argv[3]));
		return atoi(argv[4]);
	}
	if (!strcmp(argv[1], "forkbomb")) { /* fork until the kernel says no, then report */
		int n = 0, e = 0;

		for (;;) {
			pid_t p = fork();

			if (p == 0) {
				pause();
				_exit(0);
			}
			if (p < 0) {
				e = errno;
				break;
			}
			if (++n >= 100000)
				break;
		}
		printf("forkbomb: %d children, then: %s\n", n, e ? strerror(e) : "no limit");
		fflush(stdout);
		kill(0, SIGKILL); /* the probe's process group: the children and itself */
		return 0;
	}
	if (!strcmp(argv[1], "idle-conns") && argc == 5) { /* idle-conns PORT N SECONDS: connect, say nothing */
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int n = atoi(argv[3]), ok = 0, closed = 0;
		int *fds = calloc((size_t)n, sizeof(int));

		for (int i = 0; i < n; i++) {
			fds[i] = socket(AF_INET, SOCK_STREAM, 0);
			if (fds[i] >= 0 && connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) == 0)
				ok++;
		}
		usleep(500000);
		for (int i = 0; i < n; i++) { /* those over the proxy's cap were closed at once */
			char c;

			if (fds[i] >= 0 && recv(fds[i], &c, 1, MSG_DONTWAIT) == 0)
				closed++;
		}
		printf("idle-conns: %d connected, %d closed by the proxy\n", ok, closed);
		fflush(stdout);
		sleep((unsigned)atoi(argv[4]));
		return 0;
	}
	if (!strcmp(argv[1], "env")) { /* the environment the app was given */
		extern char **environ;

		for (char **e = environ; *e; e++)
			printf("%s\n", *e);
		return 0;
	}
	if (!strcmp(argv[1], "uname")) { /* the kernel this runs on */
		struct utsname u;

		if (uname(&u) < 0)
			return 1;
		printf("uname %s\n", u.release);
		return 0;
	}
	if (!strcmp(argv[1], "walk")) { /* walk DIR: every entry of DIR's file system under it */
		struct stat st;

		if (argc < 3 || stat(argv[2], &st) < 0)
			return 2;
		walk(argv[2], st.st_dev);
		return 0;
	}
	if (!strcmp(argv[1], "stat")) { /* stat PATH...: mode, owner */
		for (int i = 2; i < argc; i++) {
			struct stat st;

			if (stat(argv[i], &st) < 0)
				printf("%s: %s\n", argv[i], strerror(errno));
			else
				printf("%s %o %u %u\n", argv[i], (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
				       (unsigned)st.st_gid);
		}
		return 0;
	}
	if (!strcmp(argv[1], "id")) { /* who and where the app is, as docker run would set them */
		gid_t groups[64];
		int n = getgroups(64, groups);
		char cwd[4096] = "?";

		printf("uid=%u gid=%u groups=", (unsigned)getuid(), (unsigned)getgid());
		for (int i = 0; i < n; i++)
			printf("%s%u", i ? "," : "", (unsigned)groups[i]);
		printf(" cwd=%s home=%s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?", getenv("HOME") ?: "(unset)");
		return 0;
	}
	if (!strcmp(argv[1], "cat") && argc == 3) { /* cat PATH: a file's contents, relative to the cwd */
		char b[4096];
		int fd = open(argv[2], O_RDONLY);
		ssize_t n = fd < 0 ? -1 : read(fd, b, sizeof(b) - 1);

		if (n < 0)
			printf("cat %s: %s\n", argv[2], strerror(errno));
		else
			printf("%.*s", (int)n, b);
		return 0;
	}
	if (!strcmp(argv[1], "write") && argc == 3) { /* write PATH: makes a file, or says why not */
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);

		printf("write %s: %s\n", argv[2], fd < 0 ? strerror(errno) : "ok");
		return 0;
	}
	if (!strcmp(argv[1], "bind") && argc == 3) { /* bind PORT: a TCP listener, or why not */
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		printf("bind %s: %s\n", argv[2], bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? strerror(errno) : "ok");
		return 0;
	}
	if (!strcmp(argv[1], "whoami")) {
		printf("uid=%d gid=%d pid=%d\n", (int)getuid(), (int)getgid(), (int)getpid());
		return 0;
	}
	return 2;
}
