/*
 * vsock transports. The emulated one maps CIDs 2 and 3 (host, parent) to one name, "3",
 * as both mean "the parent" to an enclave; a listener on ANY is filed under the process's own CID.
 */
#include "net/vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char emu_dir[108];
static uint32_t emu_cid;
static bool emulated;

int vsock_use_emulated(const char *dir, uint32_t local_cid, struct err *err)
{
	if (!dir) {
		emulated = false;
		return 0;
	}
	/* "<dir>/<cid>.<port>" must fit sun_path with the longest cid and port. */
	if (strlen(dir) + 1 + 10 + 1 + 10 + 1 > sizeof(emu_dir))
		return err_set(err, ENAMETOOLONG, "vsock folder %s: path too long for Unix sockets", dir);
	snprintf(emu_dir, sizeof(emu_dir), "%s", dir);
	emu_cid = local_cid == VSOCK_CID_HOST ? VSOCK_CID_PARENT : local_cid;
	emulated = true;
	return 0;
}

bool vsock_is_emulated(void)
{
	return emulated;
}

const char *vsock_emulated_dir(void)
{
	return emulated ? emu_dir : NULL;
}

int vsock_emulated_path(uint32_t cid, uint32_t port, char *out, size_t size, struct err *err)
{
	if (cid == VSOCK_CID_HOST)
		cid = VSOCK_CID_PARENT;
	if (cid == VSOCK_CID_ANY)
		cid = emu_cid;
	if ((size_t)snprintf(out, size, "%s/%u.%u", emu_dir, cid, port) >= size)
		return err_set(err, ENAMETOOLONG, "vsock path too long");
	return 0;
}

static int unix_addr(uint32_t cid, uint32_t port, struct sockaddr_un *sa, struct err *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	return vsock_emulated_path(cid, port, sa->sun_path, sizeof(sa->sun_path), err);
}

int vsock_listen(uint32_t port, int backlog, struct err *err)
{
	int fd;

	if (emulated) {
		struct sockaddr_un sa;

		if (unix_addr(VSOCK_CID_ANY, port, &sa, err) < 0)
			return -1;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return err_sys(err, "socket");
		unlink(sa.sun_path); /* a stale socket from a previous run of this enclave */
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
			err_sys(err, "vsock port %u (%s)", port, sa.sun_path);
			close(fd);
			return -1;
		}
		/* Either side may connect (the enclave's root is another uid than the host's): the
		 * folder, owned by the enclave's root with mode 0700, is what keeps others out. */
		chmod(sa.sun_path, 0666);
		return fd;
	}
	{
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };

		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return err_sys(err, "vsock socket");
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
			err_sys(err, "vsock port %u", port);
			close(fd);
			return -1;
		}
		return fd;
	}
}

int vsock_connect(uint32_t cid, uint32_t port, bool *in_progress, struct err *err)
{
	int fd, rc;

	*in_progress = false;
	if (emulated) {
		struct sockaddr_un sa;

		if (unix_addr(cid, port, &sa, err) < 0)
			return -1;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return err_sys(err, "socket");
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	} else {
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };

		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return err_sys(err, "vsock socket");
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	if (rc < 0 && errno == EINPROGRESS) {
		*in_progress = true;
	} else if (rc < 0) {
		/* Unix sockets answer a full backlog with EAGAIN: the caller may retry. */
		err_sys(err, "vsock connect %u:%u", cid, port);
		close(fd);
		return -1;
	}
	return fd;
}

int vsock_connect_blocking(uint32_t cid, uint32_t port, int timeout_ms, struct err *err)
{
	bool pending;
	int fd = vsock_connect(cid, port, &pending, err);
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	struct pollfd p;

	if (fd < 0 || !pending)
		goto done;
	p = (struct pollfd){ .fd = fd, .events = POLLOUT };
	if (poll(&p, 1, timeout_ms) != 1) {
		close(fd);
		return err_set(err, ETIMEDOUT, "vsock connect %u:%u: timed out", cid, port);
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr) {
		errno = soerr ? soerr : errno;
		err_sys(err, "vsock connect %u:%u", cid, port);
		close(fd);
		return -1;
	}
done:
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}
