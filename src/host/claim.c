/*
 * Claims on shared parent vsock ports (see claim.h). A claim is an flock on a small file: the
 * kernel drops it when its holder dies, so a crashed enclaver-run never leaves a port claimed.
 */
#include "host/claim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"

struct port_claim {
	int fd;
};

static void claim_path(uint32_t port, char *out, size_t size)
{
	const char *dir = getenv(CLAIM_DIR_ENV);

	snprintf(out, size, "%s/vsock-%u.owner", dir && *dir ? dir : CLAIM_DIR_DEFAULT, port);
}

static void read_owner(int fd, char *out, size_t size)
{
	ssize_t n = pread(fd, out, size - 1, 0);

	out[n > 0 ? n : 0] = 0;
	out[strcspn(out, "\n")] = 0;
	if (!out[0])
		snprintf(out, size, "another enclaver-run that is starting");
}

void port_claim_describe(struct port_claim *c, const char *what)
{
	char who[1024], host[256] = "";
	int n;

	if (!c)
		return;
	/* the pid alone is ambiguous across containers; their host name is their ID */
	gethostname(host, sizeof(host) - 1);
	n = snprintf(who, sizeof(who), "enclaver-run pid %d on %s, %s\n", (int)getpid(), host, what);
	if (n < 0 || (size_t)n >= sizeof(who))
		n = (int)strlen(who);
	if (ftruncate(c->fd, 0) < 0 || fs_pwrite_full(c->fd, who, (size_t)n, 0) < 0)
		log_debug("claim file: %s", strerror(errno));
}

int port_claim_take(uint32_t port, const char *use, const char *what, int wait_ms, struct port_claim **out,
		    struct err *err)
{
	char path[4200], *dir, owner[512];
	struct timespec pause = { 0, 100 * 1000000 };
	bool said = false;
	int fd;

	*out = NULL;
	claim_path(port, path, sizeof(path));
	dir = fs_dirname(path);
	/* O_NOFOLLOW: in a folder others might write, a link must not send our writes elsewhere */
	fd = fs_mkdir_p(dir, 0755, err) < 0 ? -1 : open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	free(dir);
	if (fd < 0) {
		/* A claim only names the holder; the port itself is what the kernel arbitrates. */
		log_warn("cannot record a claim on vsock port %u in %s (%s): another enclave holding it will not be named",
			 port, path, err->msg[0] ? err->msg : strerror(errno));
		err_clear(err);
		return 0;
	}
	for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; waited += 100) {
		if (errno != EWOULDBLOCK) {
			err_sys(err, "claiming vsock port %u: %s", port, path);
			close(fd);
			return -1;
		}
		read_owner(fd, owner, sizeof(owner));
		if (waited >= wait_ms) {
			close(fd);
			if (wait_ms)
				return err_set(err, EADDRINUSE, "vsock port %u (%s) is still held by %s after %d s: try again later",
					       port, use, owner, wait_ms / 1000);
			return err_set(err, EADDRINUSE,
				       "vsock port %u (%s) is held by %s: one enclave per host can have it; stop that one first",
				       port, use, owner);
		}
		if (!said)
			log_info("waiting for %s to release vsock port %u (%s)", owner, port, use);
		said = true;
		nanosleep(&pause, NULL);
	}
	*out = calloc(1, sizeof(**out));
	if (!*out)
		abort();
	(*out)->fd = fd;
	port_claim_describe(*out, what);
	return 0;
}

void port_claim_release(struct port_claim *c)
{
	if (!c)
		return;
	/* emptied before the lock goes, so that nobody reads a stale owner */
	if (ftruncate(c->fd, 0) < 0)
		log_debug("claim file: %s", strerror(errno));
	close(c->fd);
	free(c);
}

int port_claim_explain_busy(uint32_t port, const char *use, struct err *err)
{
	return err_set(err, EADDRINUSE,
		       "vsock port %u (%s) is in use by a program other than enclaver-run (a vsock-proxy, an enclave nitro-cli is booting, or an enclaver-run whose container does not share " CLAIM_DIR_DEFAULT "?): stop it or try again",
		       port, use);
}
