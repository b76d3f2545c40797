/* Benchmark client: "thru HOST PORT BYTES" sends BYTES to an echo server while reading them back
 * and prints the seconds taken; "send", "recv" and "echo HOST PORT BYTES" do the same with a probe
 * "stream" server, one way each or both at once (its request: 'S', 'R' or 'E', then the count as
 * a little-endian u64); "lat HOST PORT N" does N one-byte round trips and prints the
 * median and 99th percentile in microseconds; "conn HOST PORT N" makes N connections one after
 * another, each a one-byte round trip, and prints the same for each whole connection.
 * With a last argument PROXYPORT, thru and conn go through the HTTP proxy on 127.0.0.1:PROXYPORT
 * (CONNECT HOST:PORT). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int proxy_port; /* 0: connect directly */

static int dial(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)(proxy_port ? proxy_port : port)) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	inet_pton(AF_INET, proxy_port ? "127.0.0.1" : host, &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (proxy_port) {
		char req[600], head[1024];
		size_t got = 0;
		int len = snprintf(req, sizeof(req), "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host, port);

		if (write(fd, req, (size_t)len) != len)
			exit(1);
		/* the proxy's answer, byte by byte so that nothing of the stream is read with it */
		while (got < sizeof(head) - 1 && (got < 4 || memcmp(head + got - 4, "\r\n\r\n", 4)))
			if (read(fd, head + got++, 1) != 1)
				exit(1);
		head[got] = 0;
		if (strncmp(head, "HTTP/1.1 200", 12)) {
			fprintf(stderr, "proxy: %s\n", head);
			exit(1);
		}
	}
	return fd;
}

struct job {
	int fd;
	long long bytes;
};

static void *sender(void *arg)
{
	struct job *j = arg;
	static char buf[1 << 18];
	long long left = j->bytes;

	memset(buf, 'z', sizeof(buf));
	while (left > 0) {
		ssize_t n = write(j->fd, buf, left < (long long)sizeof(buf) ? (size_t)left : sizeof(buf));

		if (n <= 0)
			exit(2);
		left -= n;
	}
	shutdown(j->fd, SHUT_WR);
	return NULL;
}

/* A probe "stream" server's request: what to do, and how many bytes. */
static bool request(int fd, char what, unsigned long long n)
{
	unsigned char req[9] = { (unsigned char)what };

	for (int i = 1; i <= 8; i++)
		req[i] = (unsigned char)(n >> (8 * (i - 1)));
	return write(fd, req, sizeof(req)) == (ssize_t)sizeof(req);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc == 6) {
		proxy_port = atoi(argv[5]);
		argc = 5;
	}
	if (argc == 5 && !strcmp(argv[1], "conn")) {
		int n = atoi(argv[4]);
		double *d = calloc((size_t)n, sizeof(*d));

		for (int i = 0; i < n; i++) {
			double t0 = now();
			int fd = dial(argv[2], atoi(argv[3]));
			char c = 'p';

			if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
				return 4;
			close(fd);
			d[i] = (now() - t0) * 1e6;
		}
		qsort(d, (size_t)n, sizeof(*d), cmp);
		printf("%.1f %.1f\n", d[n / 2], d[n * 99 / 100]);
		return 0;
	}
	if (argc == 5 && (!strcmp(argv[1], "thru") || !strcmp(argv[1], "echo"))) {
		struct job j = { dial(argv[2], atoi(argv[3])), atoll(argv[4]) };
		static char buf[1 << 18];
		long long got = 0;
		pthread_t t;
		double t0 = now();
		ssize_t n;

		if (argv[1][0] == 'e' && !request(j.fd, 'E', (unsigned long long)j.bytes))
			return 4;
		pthread_create(&t, NULL, sender, &j);
		while ((n = read(j.fd, buf, sizeof(buf))) > 0)
			got += n;
		pthread_join(t, NULL);
		if (got != j.bytes) {
			fprintf(stderr, "short echo: %lld of %lld\n", got, j.bytes);
			return 3;
		}
		printf("%.6f\n", now() - t0);
		return 0;
	}
	if (argc == 5 && (!strcmp(argv[1], "send") || !strcmp(argv[1], "recv"))) {
		/* one way, to a probe "stream" server: the seconds until all BYTES arrived */
		int fd = dial(argv[2], atoi(argv[3]));
		unsigned long long n = strtoull(argv[4], NULL, 10), done = 0, ack = 0;
		bool send = argv[1][0] == 's';
		static char buf[1 << 18];
		unsigned char a[8];
		double t0 = now();

		if (!request(fd, send ? 'S' : 'R', n))
			return 4;
		while (done < n) {
			size_t want = n - done < sizeof(buf) ? (size_t)(n - done) : sizeof(buf);
			ssize_t r = send ? write(fd, buf, want) : read(fd, buf, want);

			if (r <= 0) {
				fprintf(stderr, "%s: stopped after %llu of %llu bytes\n", argv[1], done, n);
				return 3;
			}
			done += (unsigned long long)r;
		}
		if (send && read(fd, a, 8) == 8)
			for (int i = 7; i >= 0; i--)
				ack = ack << 8 | a[i];
		if (send && ack != n) {
			fprintf(stderr, "send: no acknowledgement of %llu bytes\n", n);
			return 3;
		}
		printf("%.6f\n", now() - t0);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "lat")) {
		int fd = dial(argv[2], atoi(argv[3])), n = atoi(argv[4]);
		double *d = calloc((size_t)n, sizeof(*d));
		char c = 'p';

		for (int i = 0; i < n; i++) {
			double t0 = now();

			if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
				return 4;
			d[i] = (now() - t0) * 1e6;
		}
		qsort(d, (size_t)n, sizeof(*d), cmp);
		printf("%.1f %.1f\n", d[n / 2], d[n * 99 / 100]);
		return 0;
	}
	fprintf(stderr, "usage: bclient thru|send|recv|echo HOST PORT BYTES [PROXYPORT] | lat|conn HOST PORT N [PROXYPORT]\n");
	return 2;
}
