/*
 * bench/kms's baseline: KMS JSON requests straight to kms-local over HTTP, signed with the
 * state folder's credentials, one after another, each on a new connection (as the enclave's
 * app does to the proxy). Prints latency percentiles and the rate.
 *   kms_direct STATE_DIR HOST:PORT COUNT TARGET BODY
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypto/sigv4.h"
#include "host/local_creds.h"

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct local_master m;
	struct err err = { 0 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int count, ok = 0;
	long *lat;
	char host[64];
	struct timespec t0, t1;

	if (argc != 6 || sscanf(argv[2], "%63[^:]:%hu", host, &sa.sin_port) != 2) {
		fprintf(stderr, "usage: kms_direct STATE_DIR HOST:PORT COUNT TARGET BODY\n");
		return 2;
	}
	sa.sin_port = htons(sa.sin_port);
	inet_pton(AF_INET, host, &sa.sin_addr);
	count = atoi(argv[3]);
	lat = calloc((size_t)count, sizeof(long));
	if (!lat || local_creds_open(argv[1], NULL, &m, &err) < 0) {
		fprintf(stderr, "kms_direct: %s\n", err.msg);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < count; i++) {
		struct timespec a, b;
		char date[17], target[128], *auth = NULL;
		const char *body = argv[5];
		struct sigv4_header h[4];
		struct sigv4_request sr;
		static char reply[1 << 16];
		size_t got = 0;
		ssize_t n;
		int fd;

		clock_gettime(CLOCK_MONOTONIC, &a);
		sigv4_amz_date((long long)time(NULL), date);
		snprintf(target, sizeof(target), "TrentService.%s", argv[4]);
		h[0] = (struct sigv4_header){ "content-type", "application/x-amz-json-1.1" };
		h[1] = (struct sigv4_header){ "host", argv[2] };
		h[2] = (struct sigv4_header){ "x-amz-date", date };
		h[3] = (struct sigv4_header){ "x-amz-target", target };
		sr = (struct sigv4_request){ "POST", "/", NULL, h, 4, (const uint8_t *)body, strlen(body) };
		if (sigv4_sign(&sr, date, m.region, "kms", m.access_key, m.secret_key, &auth, &err) < 0)
			return 1;
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			perror("connect");
			return 1;
		}
		dprintf(fd, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Date: %s\r\n"
			    "X-Amz-Target: %s\r\nAuthorization: %s\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
			argv[2], date, target, auth, strlen(body), body);
		while (got < sizeof(reply) - 1 && (n = read(fd, reply + got, sizeof(reply) - 1 - got)) > 0)
			got += (size_t)n;
		close(fd);
		free(auth);
		clock_gettime(CLOCK_MONOTONIC, &b);
		reply[got] = 0;
		ok += strstr(reply, " 200 ") != NULL;
		lat[i] = (b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	qsort(lat, (size_t)count, sizeof(long), cmp_long);
	printf("kms-direct: n=%d ok=%d p50_us=%ld p99_us=%ld rps=%.1f\n", count, ok, lat[count / 2],
	       lat[(count * 99) / 100 < count ? (count * 99) / 100 : count - 1],
	       count / ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
	return ok == count ? 0 : 1;
}
