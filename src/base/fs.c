/* File helpers. */
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/mem.h"

ssize_t fs_read_full(int fd, void *data, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (uint8_t *)data + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int fs_write_full(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fs_pwrite_full(int fd, const void *data, size_t len, off_t off)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

int fs_copy_range(int in, uint64_t off, uint64_t len, int out, struct err *err)
{
	uint8_t *chunk = malloc(1 << 20);
	int rc = 0;

	if (!chunk)
		abort();
	while (len && rc == 0) {
		ssize_t n = pread(in, chunk, len > (1 << 20) ? (1 << 20) : (size_t)len, (off_t)off);

		if (n <= 0)
			rc = n < 0 ? err_sys(err, "read") : err_set(err, EIO, "read: the file ended early");
		else if (fs_write_full(out, chunk, (size_t)n) < 0)
			rc = err_sys(err, "write");
		off += n > 0 ? (uint64_t)n : 0;
		len -= n > 0 ? (uint64_t)n : 0;
	}
	free(chunk);
	return rc;
}

static int read_fd(int fd, const char *name, size_t max, struct buf *out, struct err *err)
{
	uint8_t chunk[65536];

	buf_reset(out);
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return err_sys(err, "%s: read", name);
		}
		if (n == 0)
			break;
		if (out->len + (size_t)n > max)
			return err_set(err, EFBIG, "%s: larger than the limit of %zu bytes", name, max);
		buf_append(out, chunk, (size_t)n);
	}
	buf_reserve(out, 0);
	return 0;
}

int fs_read_file(const char *path, size_t max, struct buf *out, struct err *err)
{
	autoclose int fd = -1;

	if (strcmp(path, "-") == 0)
		return read_fd(0, "<stdin>", max, out, err);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "%s", path);
	return read_fd(fd, path, max, out, err);
}

int fs_read_regular(const char *path, size_t max, struct buf *out, struct err *err)
{
	autoclose int fd = -1;
	struct stat st;

	/* O_NOFOLLOW: a link in the last component fails (ELOOP) instead of leading elsewhere;
	 * O_NONBLOCK: a FIFO planted there cannot hold the open. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 && errno == ELOOP)
		return err_set(err, ELOOP, "%s: is a symbolic link, not a file", path);
	if (fd < 0)
		return err_sys(err, "%s", path);
	if (fstat(fd, &st) < 0)
		return err_sys(err, "%s", path);
	if (!S_ISREG(st.st_mode))
		return err_set(err, EINVAL, "%s: not a regular file", path);
	return read_fd(fd, path, max, out, err);
}

/* --- partial outputs, removed on interruption ---
 * The handler may run at any instant, also in another thread: the table holds copies of the
 * paths in static storage (nothing the handler reads is ever freed), and a slot's flag is set
 * only once its path is written. The removal uses only async-signal-safe calls. */

#define PARTIAL_SLOTS 16
#define PARTIAL_DEPTH 16

static char partial_paths[PARTIAL_SLOTS][4096];
static volatile sig_atomic_t partial_used[PARTIAL_SLOTS];

int fs_partial_add(const char *path)
{
	if (strlen(path) >= sizeof(partial_paths[0]))
		return 0;
	for (int i = 0; i < PARTIAL_SLOTS; i++)
		if (!partial_used[i]) {
			memcpy(partial_paths[i], path, strlen(path) + 1);
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
			partial_used[i] = 1;
			return i + 1;
		}
	return 0;
}

void fs_partial_remove(int handle)
{
	if (handle > 0 && handle <= PARTIAL_SLOTS)
		partial_used[handle - 1] = 0;
}

/* unlinkat, or for a folder its contents first (getdents64: no allocation). */
static void remove_raw(int dirfd, const char *name, int depth)
{
	char buf[4096];
	int fd;
	long n;

	if (unlinkat(dirfd, name, 0) == 0 || (errno != EISDIR && errno != EPERM) || depth > PARTIAL_DEPTH)
		return;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct linux_dirent64 {
				uint64_t d_ino;
				int64_t d_off;
				unsigned short d_reclen;
				unsigned char d_type;
				char d_name[];
			} *d = (void *)(buf + off);

			if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
				remove_raw(fd, d->d_name, depth + 1);
			off += d->d_reclen;
		}
		/* entries were removed under the cursor: read the folder from its start again */
		lseek(fd, 0, SEEK_SET);
	}
	close(fd);
	unlinkat(dirfd, name, AT_REMOVEDIR);
}

static void on_interrupt(int sig)
{
	for (int i = 0; i < PARTIAL_SLOTS; i++)
		if (partial_used[i])
			remove_raw(AT_FDCWD, partial_paths[i], 0);
	signal(sig, SIG_DFL);
	raise(sig);
}

void fs_cleanup_on_signals(void)
{
	struct sigaction sa = { .sa_handler = on_interrupt };

	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaddset(&sa.sa_mask, SIGTERM);
	sigaddset(&sa.sa_mask, SIGHUP);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

int atomic_file_open(struct atomic_file *af, const char *path, mode_t mode, struct err *err)
{
	size_t n = strlen(path) + 16;
	sigset_t stop, old;

	af->fd = -1;
	af->path = strdup(path);
	af->tmp = malloc(n);
	if (!af->path || !af->tmp)
		abort();
	/* Same directory as the target so that rename() stays atomic. */
	snprintf(af->tmp, n, "%s.tmpXXXXXX", path);
	af->partial = 0;
	/* created and registered with the cleanup signals held: none can fall in between */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, &old);
	af->fd = mkostemp(af->tmp, O_CLOEXEC);
	if (af->fd >= 0)
		af->partial = fs_partial_add(af->tmp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (af->fd < 0) {
		int e = errno;

		free(af->tmp);
		af->tmp = NULL;
		errno = e;
		return err_sys(err, "%s: cannot create output", path);
	}
	mode_t um = umask(0);

	umask(um);
	if (fchmod(af->fd, mode & ~um) < 0) {
		err_sys(err, "%s: chmod", path);
		atomic_file_abort(af);
		return -1;
	}
	return 0;
}

int atomic_file_commit(struct atomic_file *af, struct err *err)
{
	int rc = 0;

	if (fsync(af->fd) < 0)
		rc = err_sys(err, "%s: fsync", af->path);
	if (close(af->fd) < 0 && rc == 0)
		rc = err_sys(err, "%s: close", af->path);
	af->fd = -1;
	if (rc == 0 && rename(af->tmp, af->path) < 0)
		rc = err_sys(err, "%s: rename", af->path);
	fs_partial_remove(af->partial); /* renamed: a complete output now, or removed below */
	af->partial = 0;
	if (rc == 0) {
		free(af->tmp);
		af->tmp = NULL;
	}
	atomic_file_abort(af);
	return rc;
}

void atomic_file_abort(struct atomic_file *af)
{
	if (af->fd >= 0)
		close(af->fd);
	af->fd = -1;
	if (af->tmp)
		unlink(af->tmp);
	fs_partial_remove(af->partial);
	af->partial = 0;
	free(af->tmp);
	free(af->path);
	af->tmp = NULL;
	af->path = NULL;
}

int fs_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, struct err *err)
{
	struct atomic_file af;

	if (atomic_file_open(&af, path, mode, err) < 0)
		return -1;
	if (fs_write_full(af.fd, data, len) < 0) {
		err_sys(err, "%s: write", path);
		atomic_file_abort(&af);
		return -1;
	}
	return atomic_file_commit(&af, err);
}

void fs_beside_self(const char *name, char *out, size_t size)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	out[0] = 0;
	if (n <= 0)
		return;
	self[n] = 0;
	slash = strrchr(self, '/');
	if (slash) {
		*slash = 0;
		snprintf(out, size, "%s/%s", self, name);
	}
}

char *fs_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d;

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	d = strndup(path, (size_t)(slash - path));
	if (!d)
		abort();
	return d;
}

char *fs_join(const char *dir, const char *rel)
{
	char *out;

	if (rel[0] == '/' || strcmp(dir, ".") == 0)
		out = strdup(rel);
	else if (asprintf(&out, "%s/%s", dir, rel) < 0)
		out = NULL;
	if (!out)
		abort();
	return out;
}

static int remove_at(int at, const char *name, struct err *err)
{
	struct stat st;
	int fd, rc = 0;
	DIR *d;
	struct dirent *e;

	if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : err_sys(err, "%s", name);
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(at, name, 0) < 0 && errno != ENOENT)
			return err_sys(err, "remove %s", name);
		return 0;
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "%s", name);
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return err_sys(err, "%s", name);
	}
	while (rc == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			rc = remove_at(dirfd(d), e->d_name, err);
	closedir(d);
	if (rc == 0 && unlinkat(at, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = err_sys(err, "remove %s", name);
	return rc;
}

int fs_remove_tree(const char *path, struct err *err)
{
	return remove_at(AT_FDCWD, path, err);
}

int fs_mkdir_p(const char *path, mode_t mode, struct err *err)
{
	char tmp[4096];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return err_set(err, ENAMETOOLONG, "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return err_sys(err, "%s", tmp);
			*p = '/';
		}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return err_sys(err, "%s", tmp);
	return 0;
}

const char *fs_tmp_dir(void)
{
	const char *t = getenv("TMPDIR");

	return t && *t ? t : "/var/tmp";
}

void fs_tmpfs_like(const char *path, char *out, size_t size)
{
	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(out, size, "mode=%o,uid=%u,gid=%u", (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
			 (unsigned)st.st_gid);
	else
		snprintf(out, size, "mode=1777");
}
