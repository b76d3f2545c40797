/* Benchmark client: "thru HOST PORT BYTES" sends BYTES to an echo server while reading them back
 * and prints the seconds taken; "lat HOST PORT N" does N one-byte round trips and prints the
 * median and 99th percentile in microseconds. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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

static int dial(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	inet_pton(AF_INET, host, &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "thru")) {
		struct job j = { dial(argv[2], atoi(argv[3])), atoll(argv[4]) };
		static char buf[1 << 18];
		long long got = 0;
		pthread_t t;
		double t0 = now();
		ssize_t n;

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
	fprintf(stderr, "usage: bclient thru HOST PORT BYTES | lat HOST PORT N\n");
	return 2;
}
