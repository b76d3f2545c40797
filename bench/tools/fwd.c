/* The "direct copy" baseline: the simplest forwarder, two blocking threads per connection
 * moving 64 KiB reads. "tcp2unix PORT PATH" or "unix2tcp PATH PORT". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct pair {
	int from, to;
};

static void *pump(void *arg)
{
	struct pair *p = arg;
	char buf[65536];
	ssize_t n;

	while ((n = read(p->from, buf, sizeof(buf))) > 0)
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(p->to, buf + off, (size_t)(n - off));

			if (w <= 0)
				return NULL;
			off += w;
		}
	shutdown(p->to, SHUT_WR);
	return NULL;
}

static int connect_to(const char *spec, int unix_side)
{
	int fd;

	if (unix_side) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", spec);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return -1;
	} else {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(spec)),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return -1;
	}
	return fd;
}

static void *serve(void *arg)
{
	int *fds = arg;
	struct pair a = { fds[0], fds[1] }, b = { fds[1], fds[0] };
	pthread_t t;

	pthread_create(&t, NULL, pump, &b);
	pump(&a);
	pthread_join(t, NULL);
	close(fds[0]);
	close(fds[1]);
	free(fds);
	return NULL;
}

int main(int argc, char **argv)
{
	int lfd, tcp_in;

	if (argc != 4)
		return 2;
	tcp_in = !strcmp(argv[1], "tcp2unix");
	if (tcp_in) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
		int one = 1;

		lfd = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return 3;
	} else {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[2]);
		unlink(argv[2]);
		lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return 3;
	}
	listen(lfd, 128);
	for (;;) {
		int c = accept(lfd, NULL, NULL), *fds;
		pthread_t t;

		if (c < 0)
			continue;
		fds = malloc(2 * sizeof(int));
		fds[0] = c;
		fds[1] = connect_to(argv[3], tcp_in);
		if (fds[1] < 0) {
			close(c);
			free(fds);
			continue;
		}
		pthread_create(&t, NULL, serve, fds);
		pthread_detach(t);
	}
}
