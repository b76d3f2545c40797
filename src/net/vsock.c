/*
 * vsock transports. The emulated one maps CIDs 2 and 3 (host, parent) to one name, "3",
 * as both mean "the parent" to an enclave; a listener on ANY is filed under the process's own CID.
 *
 * Where the emulated sockets live is a security boundary: the host (root) connects to the
 * enclave's listeners, and the enclave is hostile. A path the enclave could create, rename or
 * replace with a symlink would let it point the host's connect() at any Unix socket of the host
 * (Docker's, for one). So the parent's listeners are files in the folder, which the host owns
 * and the enclave can only read, and every other CID's listeners are abstract Unix sockets:
 * they have no file, follow no link, and live in a network namespace. The host side makes the
 * sockets it connects with inside the enclave's network namespace (vsock_set_peer_netns), where
 * only the enclave's own processes can have bound a name. Abstract names carry the folder's
 * device and inode, so that enclaves sharing a namespace (the nitro-cli development hook) do not
 * meet.
 */
#include "net/vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stddef.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char emu_dir[108];
static char emu_key[40];
static uint32_t emu_cid;
static bool emulated;
static int peer_netns = -1, own_netns = -1;

int vsock_use_emulated(const char *dir, uint32_t local_cid, struct err *err)
{
	struct stat st;

	if (!dir) {
		emulated = false;
		return 0;
	}
	/* "<dir>/<cid>.<port>" must fit sun_path with the longest cid and port. */
	if (strlen(dir) + 1 + 10 + 1 + 10 + 1 > sizeof(emu_dir))
		return err_set(err, ENAMETOOLONG, "vsock folder %s: path too long for Unix sockets", dir);
	if (stat(dir, &st) < 0)
		return err_sys(err, "vsock folder %s", dir);
	snprintf(emu_dir, sizeof(emu_dir), "%s", dir);
	snprintf(emu_key, sizeof(emu_key), "%llx.%llx", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
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

int vsock_set_peer_netns(int nsfd, struct err *err)
{
	if (own_netns < 0) {
		own_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		if (own_netns < 0)
			return err_sys(err, "/proc/self/ns/net");
	}
	if (peer_netns >= 0)
		close(peer_netns);
	peer_netns = nsfd;
	return 0;
}

static uint32_t name_cid(uint32_t cid)
{
	if (cid == VSOCK_CID_HOST)
		return VSOCK_CID_PARENT;
	return cid == VSOCK_CID_ANY ? emu_cid : cid;
}

int vsock_emulated_path(uint32_t cid, uint32_t port, char *out, size_t size, struct err *err)
{
	cid = name_cid(cid);
	if (cid != VSOCK_CID_PARENT)
		return err_set(err, EINVAL, "vsock %u:%u: only the parent's ports are files", cid, port);
	if ((size_t)snprintf(out, size, "%s/%u.%u", emu_dir, cid, port) >= size)
		return err_set(err, ENAMETOOLONG, "vsock path too long");
	return 0;
}

/* The parent's ports are files in the folder; an enclave's are abstract names (see the top). */
static int unix_addr(uint32_t cid, uint32_t port, struct sockaddr_un *sa, socklen_t *len, struct err *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	cid = name_cid(cid);
	if (cid == VSOCK_CID_PARENT) {
		*len = sizeof(*sa);
		return vsock_emulated_path(cid, port, sa->sun_path, sizeof(sa->sun_path), err);
	}
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
			   (size_t)snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "enclaver-vsock/%s/%u.%u",
					    emu_key, cid, port));
	return 0;
}

/* A socket made in the enclave's network namespace, where its abstract names are. */
static int peer_socket(uint32_t cid)
{
	int fd, e;

	if (peer_netns < 0 || name_cid(cid) == VSOCK_CID_PARENT)
		return socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (setns(peer_netns, CLONE_NEWNET) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	e = errno;
	/* staying in the enclave's namespace would send every later socket of this thread there */
	if (setns(own_netns, CLONE_NEWNET) < 0)
		abort();
	errno = e;
	return fd;
}

/* An unconnected socket and the address for (cid, port), in the enclave's namespace when the
 * port is the enclave's. */
static int emulated_socket(uint32_t cid, uint32_t port, struct sockaddr_un *sa, socklen_t *len, struct err *err)
{
	int fd;

	if (unix_addr(cid, port, sa, len, err) < 0)
		return -1;
	fd = peer_socket(cid);
	return fd < 0 ? err_sys(err, "socket") : fd;
}

static bool emulated_in_use(const struct sockaddr_un *sa, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sa, len) == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

static int emulated_listen(uint32_t cid, uint32_t port, int backlog, struct err *err)
{
	struct sockaddr_un sa;
	socklen_t len;
	bool file = name_cid(cid) == VSOCK_CID_PARENT;
	int fd;

	if (unix_addr(cid, port, &sa, &len, err) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_sys(err, "socket");
	/* A socket left by a previous run is replaced; one with a listener behind it is in use,
	 * as the port would be on AF_VSOCK. */
	if (file && emulated_in_use(&sa, len)) {
		close(fd);
		errno = EADDRINUSE;
		return err_sys(err, "vsock port %u", port);
	}
	if (file)
		unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, backlog) < 0) {
		err_sys(err, "vsock port %u", port);
		close(fd);
		return -1;
	}
	/* The enclave's root is another uid than the host's: the folder (root's, readable by
	 * the enclave's group only) is what keeps others out. */
	if (file)
		chmod(sa.sun_path, 0666);
	return fd;
}

int vsock_emulated_listen_as(uint32_t cid, uint32_t port, int backlog, struct err *err)
{
	if (!emulated)
		return err_set(err, EINVAL, "vsock port %u: listening as CID %u needs the emulated transport", port, cid);
	return emulated_listen(cid, port, backlog, err);
}

/* An AF_VSOCK stream socket whose peer may have VSOCK_BUFFER_BYTES unread in it. That is the
 * peer's credit: with the kernel's 256 KiB, a Linux receiver gives credit back only after reading
 * 192 KiB, so a fast sender stalls on each round trip (a VM enclave's host-to-guest stream
 * measured 130 MiB/s at 256 KiB, 200 at 1 MiB). The buffer is a bound, not an allocation.
 * Accepted connections take the listener's. Failing to set it costs speed only. */
#define VSOCK_BUFFER_BYTES (1ull << 20)

static int vsock_socket(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	unsigned long long size = VSOCK_BUFFER_BYTES;

	if (fd >= 0) {
		setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &size, sizeof(size));
		setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &size, sizeof(size));
	}
	return fd;
}

int vsock_listen(uint32_t port, int backlog, struct err *err)
{
	int fd;

	if (emulated)
		return emulated_listen(VSOCK_CID_ANY, port, backlog, err);
	{
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };

		fd = vsock_socket();
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
		socklen_t len;

		fd = emulated_socket(cid, port, &sa, &len, err);
		if (fd < 0)
			return -1;
		rc = connect(fd, (struct sockaddr *)&sa, len);
	} else {
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };

		fd = vsock_socket();
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

int vsock_peer_cid(int fd, uint32_t *cid)
{
	struct sockaddr_vm sa;
	socklen_t len = sizeof(sa);

	if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	if (sa.svm_family != AF_VSOCK) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	*cid = sa.svm_cid;
	return 0;
}

bool vsock_peer_is_parent(int fd)
{
	if (emulated) {
		struct ucred cred;
		socklen_t len = sizeof(cred);

		/* The kernel reports pid 0 for a peer outside this PID namespace: in a local enclave,
		 * the host. No process inside can be such a peer. */
		return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid == 0;
	}
	{
		struct sockaddr_vm sa;
		socklen_t len = sizeof(sa);

		return getpeername(fd, (struct sockaddr *)&sa, &len) == 0 && sa.svm_family == AF_VSOCK &&
		       (sa.svm_cid == VSOCK_CID_HOST || sa.svm_cid == VSOCK_CID_PARENT);
	}
}
