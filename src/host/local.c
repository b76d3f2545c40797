/*
 * The local launcher: runs an EIF on any Linux machine, with nothing confidential about it.
 * Runs in enclaver-run (as root on the host). The enclave's PID 1 is a child of this process
 * in new user (root mapped to an unprivileged range), mount, PID, network, IPC, UTS and cgroup
 * namespaces, under memory and CPU limits and a seccomp filter. It does what the enclave's init
 * does (spec/nitro.md §3) on a tmpfs holding the EIF's ramdisks, then runs /cmd with /env.
 * Every step before the workload starts fails closed, and reports why to the parent.
 */
#include "host/launcher.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/proc.h"
#include "eif/cpio.h"
#include "enclave/launcher.h"
#include "eif/initfiles.h"
#include "net/vsock.h"

#define LOCAL_CID 16
#define ID_RANGE 65536
/* A uid_map is written in one write of less than a page: the line for 0-65535 and 160 of at
 * most 24 bytes fit (the kernel's 340-line bound is not reached first). */
#define MAX_HIGH_IDS 160
#define STACK_SIZE (1 << 20)
#define DEFAULT_PATH "/sbin:/usr/sbin:/bin:/usr/bin"
#define ENCLAVE_VSOCK_DIR "/run/enclaver/vsock"

struct local {
	char state[64]; /* /tmp/enclaver-XXXXXX: short, for Unix socket paths */
	char vdir[80];
	char root[80];
	uid_t base, high_base; /* host ids for the enclave's 0-65535, and for the ids above */
	pid_t pid;
	int pidfd;
	char cgroups[4][256];
	size_t n_cgroups;
	int status;
	bool reaped;
	/* handed to the child */
	const struct launch_spec *spec;
	int sync_rd, report_wr;
	int sync_wr, report_rd; /* the parent's ends: the child closes its copies at once */
	int eif_fd; /* opened by the host: the enclave's root may not reach the file's folder */
};

/* --- child side: everything here runs in the new namespaces and dies on failure --- */

static int report_fd = -1;

__attribute__((noreturn, format(printf, 1, 2))) static void child_die(const char *fmt, ...)
{
	char msg[1024];
	int e = errno, n;
	va_list ap;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e && n > 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(e));
	if (report_fd >= 0 && write(report_fd, msg, strlen(msg)) < 0)
		_exit(126);
	_exit(126);
}

struct range_src {
	int fd;
	uint64_t off, left;
};

static ssize_t range_read(void *ctx, void *data, size_t len)
{
	struct range_src *s = ctx;
	ssize_t n;

	if (len > s->left)
		len = (size_t)s->left;
	if (!len)
		return 0;
	n = pread(s->fd, data, len, (off_t)s->off);
	if (n > 0) {
		s->off += (uint64_t)n;
		s->left -= (uint64_t)n;
	}
	return n;
}

/* The EIF's ramdisks that the enclave unpacks: the bootstrap ramdisk (init, nsm.ko) serves a real
 * boot only; with a single ramdisk it is the whole image. Later ramdisks overlay earlier ones, as
 * in the kernel's initramfs. The n-th of them as a source, or false past the last. */
static bool app_ramdisk(const struct eif_info *in, int fd, size_t n, struct range_src *src)
{
	unsigned n_ramdisks = 0;

	for (size_t i = 0; i < in->n_sections; i++)
		n_ramdisks += in->sections[i].type == EIF_SEC_RAMDISK;
	for (size_t i = 0, k = 0, taken = 0; i < in->n_sections; i++) {
		if (in->sections[i].type != EIF_SEC_RAMDISK || (k++ == 0 && n_ramdisks > 1))
			continue;
		if (taken++ == n) {
			*src = (struct range_src){ fd, in->sections[i].offset + EIF_SEC_HDR_LEN, in->sections[i].size };
			return true;
		}
	}
	return false;
}

static int range_skip(void *ctx, uint64_t len)
{
	struct range_src *s = ctx;

	if (len > s->left)
		return -1;
	s->off += len;
	s->left -= len;
	return 0;
}

static void unpack_ramdisks(struct local *lc)
{
	struct range_src src;
	struct err err = { 0 };

	for (size_t n = 0; app_ramdisk(lc->spec->eif, lc->eif_fd, n, &src); n++)
		if (cpio_extract(range_read, &src, lc->root, CPIO_EXTRACT_OWNER, &err) < 0) {
			errno = 0;
			child_die("unpacking the EIF's ramdisk: %s", err.msg);
		}
	close(lc->eif_fd);
}

static void add_id(uint32_t *ids, size_t *n, uint32_t id)
{
	for (size_t i = 0; i < *n; i++)
		if (ids[i] == id)
			return;
	if (*n < MAX_HIGH_IDS)
		ids[*n] = id;
	(*n)++;
}

/* odyn's --user in /cmd (one argument a line), read from the current entry. */
static bool cmd_user(struct cpio_reader *r, const struct cpio_entry *e, struct launch_as *as)
{
	static char data[65536];
	size_t got = 0, n_items = 0;
	ssize_t n;
	struct err err = { 0 };
	char **items = NULL;
	bool found = false;

	while (got < e->size && (n = cpio_read_data(r, data + got, (size_t)e->size - got, &err)) > 0)
		got += (size_t)n;
	/* split as init splits it, so that the arguments are the ones odyn will get */
	if (initfiles_parse(data, got, &items, &n_items, &err) < 0)
		return false;
	for (size_t i = 0; i + 1 < n_items && strcmp(items[i], "--"); i++)
		if (!strcmp(items[i], "--user")) {
			found = launch_as_parse_user(items[i + 1], as);
			break;
		}
	initfiles_free(items);
	return found;
}

/* The user namespace maps ids 0-65535 to a range of unprivileged host ids. An image may own files
 * by any id up to 2^32-2: each one above the range gets a host id of its own, from a second range
 * of this enclave's, so that the file keeps its owner inside. */
static int id_maps(struct local *lc, char *uid_map, char *gid_map, size_t size, struct err *err)
{
	uint32_t uids[MAX_HIGH_IDS], gids[MAX_HIGH_IDS];
	size_t nu = 0, ng = 0;
	struct range_src src;
	struct launch_as as;

	for (size_t n = 0; app_ramdisk(lc->spec->eif, lc->eif_fd, n, &src); n++) {
		struct cpio_reader r;
		struct cpio_entry e;
		int st;

		cpio_reader_init(&r, range_read, &src);
		r.skip = range_skip; /* headers only: the files' data is passed over */
		while ((st = cpio_next(&r, &e, err)) == 1) {
			if (e.uid >= ID_RANGE)
				add_id(uids, &nu, e.uid);
			if (e.gid >= ID_RANGE)
				add_id(gids, &ng, e.gid);
			if (!strcmp(e.name, "cmd") && e.size < 65536 && cmd_user(&r, &e, &as)) {
				/* the app's USER too: it must be able to become it */
				if (as.uid >= ID_RANGE)
					add_id(uids, &nu, as.uid);
				for (size_t i = 0; i <= as.n_groups; i++)
					if ((i ? as.groups[i - 1] : as.gid) >= ID_RANGE)
						add_id(gids, &ng, i ? as.groups[i - 1] : as.gid);
			}
		}
		if (st < 0)
			return err_wrap(err, "the EIF's ramdisk");
	}
	if (nu > MAX_HIGH_IDS || ng > MAX_HIGH_IDS)
		return err_set(err, E2BIG,
			       "the EIF's files have %zu owners and %zu groups above 65535; a local enclave maps at most %d "
			       "of each (the image runs unchanged on Nitro)",
			       nu, ng, MAX_HIGH_IDS);
	for (int which = 0; which < 2; which++) {
		char *map = which ? gid_map : uid_map;
		const uint32_t *ids = which ? gids : uids;
		size_t n = which ? ng : nu, len;

		len = (size_t)snprintf(map, size, "0 %u %u\n", lc->base, ID_RANGE);
		for (size_t i = 0; i < n && len < size; i++)
			len += (size_t)snprintf(map + len, size - len, "%u %u 1\n", ids[i], lc->high_base + (uint32_t)i);
	}
	return 0;
}

static char **read_items(const char *path)
{
	struct err err = { 0 };
	char **items;

	if (initfiles_take(path, &items, &err) < 0) {
		errno = 0;
		child_die("%s", err.msg);
	}
	return items;
}

static void xmount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		child_die("mount %s on %s", type ? type : src, dst);
}

static void xmkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		child_die("mkdir %s", path);
}

/* /dev as a tmpfs with the harmless host devices bound in: devtmpfs cannot be mounted in a
 * user namespace, and nothing else of the host's /dev belongs in an enclave. */
static void setup_dev(const char *rootfs)
{
	static const char *const devs[] = { "null", "zero", "full", "random", "urandom", "tty" };
	static const char *const links[][2] = { { "/proc/self/fd", "fd" },   { "/proc/self/fd/0", "stdin" },
						 { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
						 { "pts/ptmx", "ptmx" } };
	char path[4096], host[64];

	snprintf(path, sizeof(path), "%s/dev", rootfs);
	xmkdir(path, 0755);
	xmount("dev", path, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/dev/%s", rootfs, devs[i]);
		snprintf(host, sizeof(host), "/dev/%s", devs[i]);
		fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
		if (fd < 0)
			child_die("create %s", path);
		close(fd);
		xmount(host, path, NULL, MS_BIND, NULL);
	}
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		snprintf(path, sizeof(path), "%s/dev/%s", rootfs, links[i][1]);
		if (symlink(links[i][0], path) < 0)
			child_die("symlink %s", path);
	}
	snprintf(path, sizeof(path), "%s/dev/pts", rootfs);
	xmkdir(path, 0755);
	xmount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
	snprintf(path, sizeof(path), "%s/dev/shm", rootfs);
	xmkdir(path, 01777);
	xmount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
}

static void setup_rootfs(struct local *lc, const char *rootfs)
{
	char path[4096];

	xmount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL);
	snprintf(path, sizeof(path), "%s/proc", rootfs);
	xmkdir(path, 0555);
	xmount("proc", path, "proc", MS_NODEV | MS_NOSUID | MS_NOEXEC, NULL);
	snprintf(path, sizeof(path), "%s/sys", rootfs);
	xmkdir(path, 0555);
	xmount("sysfs", path, "sysfs", MS_NODEV | MS_NOSUID | MS_NOEXEC | MS_RDONLY, NULL);
	setup_dev(rootfs);
	snprintf(path, sizeof(path), "%s/run", rootfs);
	xmkdir(path, 0755);
	xmount("run", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	snprintf(path, sizeof(path), "%s/run/enclaver", rootfs);
	xmkdir(path, 0755);
	snprintf(path, sizeof(path), "%s%s", rootfs, ENCLAVE_VSOCK_DIR);
	xmkdir(path, 0700);
	/* read-only as well as not the enclave's: it holds the host's sockets and the root of trust */
	xmount(lc->vdir, path, NULL, MS_BIND, NULL);
	xmount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	snprintf(path, sizeof(path), "%s/tmp", rootfs);
	xmkdir(path, 01777);
	{
		char like[64];

		/* the image's own mode and owner, as docker run leaves /tmp */
		fs_tmpfs_like(path, like, sizeof(like));
		xmount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, like);
	}
}

static void enter_rootfs(const char *rootfs)
{
	if (chdir(rootfs) < 0)
		child_die("chdir %s", rootfs);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		child_die("pivot_root");
	/* the old root is stacked under the new one: detach it so nothing of the host remains */
	if (umount2(".", MNT_DETACH) < 0)
		child_die("detach the host's root");
	if (chdir("/") < 0)
		child_die("chdir /");
}

/* What a real enclave cannot do either, and what would reach past the sandbox: vsock is not
 * namespaced (it would reach the host's real vsock peers), io_uring can open sockets without
 * the socket() syscall, and keyrings and modules are the host kernel's. */
static void install_seccomp(void)
{
	static const int denied[] = { SCMP_SYS(init_module), SCMP_SYS(finit_module), SCMP_SYS(delete_module),
				      SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load), SCMP_SYS(add_key),
				      SCMP_SYS(request_key), SCMP_SYS(keyctl), SCMP_SYS(reboot),
				      SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
				      SCMP_SYS(acct), SCMP_SYS(swapon), SCMP_SYS(swapoff), SCMP_SYS(bpf),
				      SCMP_SYS(open_by_handle_at), SCMP_SYS(perf_event_open) };
	/* The kernel reads the family as an int, libseccomp compares all 64 bits of the register:
	 * compare the low 32 bits only, or AF_VSOCK | 1 << 32 would pass as "not AF_VSOCK". */
	const struct scmp_arg_cmp vsock_family = { .arg = 0, .op = SCMP_CMP_MASKED_EQ, .datum_a = 0xffffffffu,
						   .datum_b = AF_VSOCK };
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);

	if (!ctx)
		child_die("seccomp_init");
	/* Without no_new_privs: file capabilities inside (e.g. Vault's cap_ipc_lock) keep working;
	 * root of the user namespace may install the filter. */
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0) < 0)
			child_die("seccomp rule %d", denied[i]);
	if (seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, &vsock_family) < 0 ||
	    seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socketpair), 1, &vsock_family) < 0)
		child_die("seccomp vsock rule");
	if (seccomp_load(ctx) < 0)
		child_die("seccomp_load");
	seccomp_release(ctx);
}

static char **build_env(char **image_env)
{
	size_t n = 0, k = 0;
	char **env;

	for (char **e = image_env; e && *e; e++)
		n++;
	env = calloc(n + 3, sizeof(*env));
	if (!env)
		child_die("calloc");
	/* The image cannot speak for the launcher: its ENCLAVER_* variables are dropped. */
	for (char **e = image_env; e && *e; e++)
		if (strncmp(*e, "ENCLAVER_", 9) != 0)
			env[k++] = *e;
	env[k++] = VSOCK_DIR_ENV "=" ENCLAVE_VSOCK_DIR;
	env[k++] = "ENCLAVER_VSOCK_CID=16";
	env[k] = NULL;
	return env;
}

static int child_main(void *arg)
{
	struct local *lc = arg;
	char rootfs[128], path[160], c;
	char **cmd, **env;
	int exec_pipe[2], status, child_errno = 0;
	pid_t app;
	ssize_t n;
	struct stat st;

	/* Whatever instant enclaver-run dies at, this process must follow: the parent-death signal
	 * from the start, and the parent's ends of the pipes closed here, so that a parent that
	 * died before setting the signal up shows as EOF on the sync pipe instead of a read that
	 * waits for ever on a pipe this process holds both ends of. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	close(lc->sync_wr);
	close(lc->report_rd);
	report_fd = lc->report_wr;
	if (read(lc->sync_rd, &c, 1) != 1)
		child_die("the launcher went away");
	if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		child_die("become root of the enclave's user namespace");
	/* again after the credential change, which clears it; the parent holds the sync pipe open
	 * until the enclave runs, so a hang-up now means it died before the signal was set again */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	{
		struct pollfd pf = { .fd = lc->sync_rd, .events = POLLIN };

		if (poll(&pf, 1, 0) != 0) {
			errno = 0;
			child_die("the launcher went away");
		}
	}
	close(lc->sync_rd);
	if (unshare(CLONE_NEWCGROUP) < 0)
		child_die("cgroup namespace");
	xmount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	snprintf(path, sizeof(path), "size=%dm,mode=0755", lc->spec->memory_mb);
	xmount("enclave", lc->root, "tmpfs", 0, path);
	unpack_ramdisks(lc);
	snprintf(path, sizeof(path), "%s/env", lc->root);
	env = read_items(path);
	snprintf(path, sizeof(path), "%s/cmd", lc->root);
	cmd = read_items(path);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", lc->root);
	/* lstat: a /rootfs that is a link would make the host's own tree the enclave's root */
	if (lstat(rootfs, &st) < 0 || !S_ISDIR(st.st_mode)) {
		errno = 0;
		child_die("the EIF's /rootfs is missing or not a folder");
	}
	setup_rootfs(lc, rootfs);
	if (sethostname("enclave", 7) < 0)
		child_die("sethostname");
	enter_rootfs(rootfs);
	install_seccomp();
	if (!cmd || !cmd[0]) {
		static char *sh[] = { "sh", NULL };

		cmd = sh;
	}
	env = build_env(env);
	/* The lookup PATH is init's, not the image's, as AWS init does. */
	setenv("PATH", DEFAULT_PATH, 1);
	if (pipe2(exec_pipe, O_CLOEXEC) < 0)
		child_die("pipe");
	app = fork();
	if (app < 0)
		child_die("fork");
	if (app == 0) {
		proc_reset_signals();
		setsid();
		close(exec_pipe[0]);
		execvpe(cmd[0], cmd, env);
		child_errno = errno;
		if (write(exec_pipe[1], &child_errno, sizeof(child_errno)) < 0)
			_exit(127);
		_exit(127);
	}
	close(exec_pipe[1]);
	n = read(exec_pipe[0], &child_errno, sizeof(child_errno));
	close(exec_pipe[0]);
	if (n == sizeof(child_errno)) {
		errno = child_errno;
		child_die("cannot start %s", cmd[0]);
	}
	if (write(report_fd, "R", 1) != 1)
		_exit(126);
	close(report_fd);
	/* PID 1's duty: reap everything; end when the command does. */
	for (;;) {
		pid_t p = wait(&status);

		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0)
			_exit(1);
		if (p == app)
			_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
}

/* --- host side --- */

static int write_file(const char *path, const char *data, struct err *err)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return err_sys(err, "%s", path);
	if (fs_write_full(fd, data, strlen(data)) < 0) {
		err_sys(err, "%s", path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* A fork bomb is bounded by this, not only by memory: 4 processes or threads per MiB, at
 * least 256 (docs/local-development.md). */
static long local_pids_max(int memory_mb)
{
	long n = (long)memory_mb * 4;

	return n < 256 ? 256 : n;
}

static bool cgroup_v2(void)
{
	return access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

/* In a container (docker run of a release image) the cgroup hierarchy is mounted read-only over
 * the container's own cgroup: with CAP_SYS_ADMIN it is remounted read-write in this mount
 * namespace only, so the enclave's cgroup nests inside the container's and stays under its
 * limits. On a host the hierarchy is writable and nothing is remounted. */
static int cgroup_writable(const char *mnt, struct err *err)
{
	if (access(mnt, W_OK) == 0 || errno != EROFS)
		return 0;
	if (mount(NULL, mnt, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return err_set(err, EROFS,
			       "%s is read-only (in a container, run it with --cap-add=ALL --cap-drop=SYS_RESOURCE --security-opt seccomp=unconfined)",
			       mnt);
	return 0;
}

static int cgroup_mkdir(const char *cg, struct err *err)
{
	char mnt[256];

	snprintf(mnt, sizeof(mnt), "%s", cg);
	*strrchr(mnt, '/') = 0;
	if (cgroup_writable(mnt, err) < 0)
		return -1;
	return mkdir(cg, 0755) < 0 ? err_sys(err, "%s", cg) : 0;
}

/* cgroup v2 allows controllers in a child's subtree only while the parent holds no processes:
 * inside a container enclaver-run sits in the container's root cgroup, so it moves itself into
 * a leaf first. */
static void cgroup2_enable_controllers(struct err *err)
{
	char v[32];

	if (write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory +cpu +pids", err) == 0 ||
	    err->code != EBUSY)
		return;
	if (mkdir("/sys/fs/cgroup/enclaver-run", 0755) < 0 && errno != EEXIST)
		return;
	snprintf(v, sizeof(v), "%d", (int)getpid());
	if (write_file("/sys/fs/cgroup/enclaver-run/cgroup.procs", v, err) == 0)
		write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory +cpu +pids", err);
}

static int setup_cgroups(struct local *lc, struct err *err)
{
	const char *id = strrchr(lc->state, '-') + 1;
	char v[64], path[300];
	long long mem = (long long)lc->spec->memory_mb << 20;
	long quota = (long)lc->spec->cpu_count * 100000;
	long pids = local_pids_max(lc->spec->memory_mb);

	if (cgroup_v2()) {
		snprintf(lc->cgroups[0], sizeof(lc->cgroups[0]), "/sys/fs/cgroup/enclaver-%s", id);
		/* enabling controllers below the root may fail where they already are: not fatal */
		if (cgroup_writable("/sys/fs/cgroup", err) < 0)
			return -1;
		cgroup2_enable_controllers(err);
		if (cgroup_mkdir(lc->cgroups[0], err) < 0)
			return -1;
		lc->n_cgroups = 1;
		snprintf(path, sizeof(path), "%s/memory.max", lc->cgroups[0]);
		snprintf(v, sizeof(v), "%lld", mem);
		if (write_file(path, v, err) < 0)
			return -1;
		snprintf(path, sizeof(path), "%s/memory.swap.max", lc->cgroups[0]);
		write_file(path, "0", err);
		snprintf(path, sizeof(path), "%s/cpu.max", lc->cgroups[0]);
		snprintf(v, sizeof(v), "%ld 100000", quota);
		if (write_file(path, v, err) < 0)
			return -1;
		snprintf(path, sizeof(path), "%s/pids.max", lc->cgroups[0]);
		snprintf(v, sizeof(v), "%ld", pids);
		if (write_file(path, v, err) < 0)
			return err_wrap(err, "the enclave's process limit");
		snprintf(path, sizeof(path), "%s/cgroup.procs", lc->cgroups[0]);
		snprintf(v, sizeof(v), "%d", (int)lc->pid);
		return write_file(path, v, err);
	}
	{
		static const char *const ctrls[] = { "memory", "cpu", "pids" };

		for (size_t i = 0; i < 3; i++) {
			char *cg = lc->cgroups[lc->n_cgroups];

			snprintf(cg, sizeof(lc->cgroups[0]), "/sys/fs/cgroup/%s/enclaver-%s", ctrls[i], id);
			if (cgroup_mkdir(cg, err) < 0) {
				if (i == 0) /* the memory limit is not optional */
					return -1;
				continue;
			}
			lc->n_cgroups++;
			if (i == 0) {
				snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", cg);
				snprintf(v, sizeof(v), "%lld", mem);
				if (write_file(path, v, err) < 0)
					return -1;
				snprintf(path, sizeof(path), "%s/memory.memsw.limit_in_bytes", cg);
				if (access(path, F_OK) == 0)
					write_file(path, v, err);
			} else if (i == 1) {
				snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", cg);
				snprintf(v, sizeof(v), "%ld", quota);
				if (write_file(path, v, err) < 0)
					return -1;
			} else {
				snprintf(path, sizeof(path), "%s/pids.max", cg);
				snprintf(v, sizeof(v), "%ld", pids);
				if (write_file(path, v, err) < 0)
					return err_wrap(err, "the enclave's process limit");
			}
			snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
			snprintf(v, sizeof(v), "%d", (int)lc->pid);
			if (write_file(path, v, err) < 0)
				return -1;
		}
	}
	return 0;
}

static bool oom_killed(struct local *lc)
{
	char path[300];
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	bool oom = false;
	const char *p;

	if (!lc->n_cgroups)
		return false;
	snprintf(path, sizeof(path), "%s/%s", lc->cgroups[0], cgroup_v2() ? "memory.events" : "memory.oom_control");
	if (fs_read_file(path, 65536, &b, &err) == 0 && (p = strstr(buf_cstr(&b), "oom_kill ")) != NULL)
		oom = atoi(p + 9) > 0;
	buf_free(&b);
	return oom;
}

/* An enclaver-run killed with SIGKILL cannot clean up; its enclave died with it (parent-death
 * signal). The next local launch removes what such runs left: state folders whose owner is gone,
 * and their cgroups. */
void launcher_sweep_stale(void)
{
	DIR *d = opendir("/tmp");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char path[300], cg[400];
		struct buf b = BUF_INIT;
		struct err err = { 0 };
		long pid;

		if (strncmp(e->d_name, "enclaver-", 9) != 0 || strlen(e->d_name) != 15)
			continue;
		snprintf(path, sizeof(path), "/tmp/%s/owner", e->d_name);
		if (fs_read_file(path, 64, &b, &err) < 0) {
			buf_free(&b);
			continue;
		}
		pid = atol(buf_cstr(&b));
		buf_free(&b);
		if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		for (const char *const *c = (const char *const[]){ "", "memory/", "cpu/", "pids/", NULL }; *c; c++) {
			snprintf(cg, sizeof(cg), "/sys/fs/cgroup/%s%s", *c, e->d_name);
			rmdir(cg);
		}
		snprintf(path, sizeof(path), "/tmp/%s", e->d_name);
		if (fs_remove_tree(path, &err) == 0)
			log_info("removed %s, left by an enclaver-run that was killed", path);
	}
	if (d)
		closedir(d);
}

int launcher_state_dir(const char *what, char *out, size_t size, struct err *err)
{
	char owner[128], pid[16];

	launcher_sweep_stale();
	snprintf(out, size, "/tmp/enclaver-XXXXXX");
	if (!mkdtemp(out))
		return err_sys(err, "%s: state folder", what);
	snprintf(owner, sizeof(owner), "%s/owner", out);
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	return fs_write_file_atomic(owner, pid, strlen(pid), 0644, err);
}

static int local_prepare(struct launcher *l, struct err *err)
{
	struct local *lc = calloc(1, sizeof(*lc));

	if (!lc)
		abort();
	l->priv = lc;
	lc->pid = -1;
	lc->pidfd = -1;
	lc->spec = &l->spec;
	if (launcher_state_dir("local enclave", lc->state, sizeof(lc->state), err) < 0)
		return -1;
	snprintf(lc->vdir, sizeof(lc->vdir), "%s/v", lc->state);
	snprintf(lc->root, sizeof(lc->root), "%s/r", lc->state);
	lc->base = 0x20000000u + (((uid_t)getpid() & 0xfffu) << 16);
	lc->high_base = 0x30000000u + (((uid_t)getpid() & 0xfffu) << 16);
	/* The vsock folder is the host's (it holds the host's listeners, which the enclave may
	 * connect to): the enclave's root reads it through its group and can create, rename or
	 * replace nothing in it; others cannot enter. The enclave's root (an unprivileged uid
	 * here) owns the folder its tmpfs is mounted on, nothing else. */
	if (chmod(lc->state, 0711) < 0 || mkdir(lc->vdir, 0750) < 0 || mkdir(lc->root, 0700) < 0 ||
	    chown(lc->vdir, 0, lc->base) < 0 || chmod(lc->vdir, 0750) < 0 ||
	    chown(lc->root, lc->base, lc->base) < 0)
		return err_sys(err, "local enclave: %s", lc->state);
	return vsock_use_emulated(lc->vdir, VSOCK_CID_PARENT, err);
}

/* The kernel lets a user namespace mount a fresh proc or sysfs only where the existing one is
 * fully visible. Docker masks parts of /proc (kcore, keys, timer_list, acpi, a read-only sys,
 * ...) and /sys/firmware with over-mounts, so in a container enclaver-run takes a mount namespace of its own and
 * removes those over-mounts there: the container's view is untouched, and the enclave still
 * gets a proc of its own PID namespace, owned by its unprivileged user namespace. */
static int unmask_proc(struct err *err)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], *masks[256];
	size_t n = 0;
	int rc = 0;

	if (!f)
		return 0;
	while (n < 256 && fgets(line, sizeof(line), f)) {
		char mp[4096], *out;

		const char *sep = strstr(line, " - ");

		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 || !sep)
			continue;
		/* /proc's over-mounts, and the tmpfs masks over parts of /sys (not the cgroups) */
		if (!(!strncmp(mp, "/proc/", 6) && strcmp(mp, "/proc/sys/fs/binfmt_misc")) &&
		    !(!strncmp(mp, "/sys/", 5) && !strncmp(sep, " - tmpfs ", 9) && strcmp(mp, "/sys/fs/cgroup")))
			continue;
		out = mp;
		for (char *in = mp; *in; in++) /* mountinfo escapes space, tab, newline, backslash */
			if (in[0] == '\\' && strspn(in + 1, "01234567") >= 3) {
				*out++ = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 + (in[3] - '0'));
				in += 3;
			} else {
				*out++ = *in;
			}
		*out = 0;
		masks[n++] = strdup(mp);
	}
	fclose(f);
	if (!n)
		return 0;
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
		rc = err_sys(err, "a mount namespace to unmask /proc in");
		goto out;
	}
	for (size_t i = n; i-- > 0;)
		if (umount2(masks[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
			rc = err_sys(err, "unmask %s", masks[i]);
			goto out;
		}
out:
	for (size_t i = 0; i < n; i++)
		free(masks[i]);
	return rc;
}

static int local_start(struct launcher *l, struct err *err)
{
	struct local *lc = l->priv;
	int sync_pipe[2], report[2], nsfd;
	char *stack, path[64], msg[1100];
	static char uid_map[4096], gid_map[4096];
	ssize_t n;

	if (geteuid() != 0)
		return err_set(err, EPERM, "the local launcher needs root (it creates namespaces and cgroups)");
	if (unmask_proc(err) < 0)
		return -1;
	lc->eif_fd = open(l->spec.eif_path, O_RDONLY | O_CLOEXEC);
	if (lc->eif_fd < 0)
		return err_sys(err, "%s", l->spec.eif_path);
	if (id_maps(lc, uid_map, gid_map, sizeof(uid_map), err) < 0) {
		close(lc->eif_fd);
		lc->eif_fd = -1;
		return -1;
	}
	if (pipe2(sync_pipe, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0)
		return err_sys(err, "pipe");
	lc->sync_rd = sync_pipe[0];
	lc->sync_wr = sync_pipe[1];
	lc->report_wr = report[1];
	lc->report_rd = report[0];
	stack = malloc(STACK_SIZE);
	if (!stack)
		abort();
	lc->pid = clone(child_main, stack + STACK_SIZE,
			CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD,
			lc);
	free(stack);
	close(sync_pipe[0]);
	close(report[1]);
	close(lc->eif_fd);
	lc->eif_fd = -1;
	if (lc->pid < 0) {
		close(sync_pipe[1]);
		close(report[0]);
		return err_sys(err, "clone (user namespaces may be disabled here)");
	}
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)lc->pid);
	if (write_file(path, uid_map, err) < 0)
		goto fail;
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)lc->pid);
	if (write_file(path, gid_map, err) < 0 || setup_cgroups(lc, err) < 0)
		goto fail;
	/* The enclave's PID 1 and odyn (which inherits it) are the OOM killer's last choice; odyn
	 * gives the app the first place. Lowering a score needs CAP_SYS_RESOURCE, which a container
	 * may lack: then they keep the default, still behind the app. */
	snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)lc->pid);
	{
		struct err ignored = { 0 };

		write_file(path, "-1000", &ignored);
	}
	lc->pidfd = (int)syscall(SYS_pidfd_open, lc->pid, 0);
	if (lc->pidfd < 0) {
		err_sys(err, "pidfd_open");
		goto fail;
	}
	/* The enclave's listeners are abstract sockets in its network namespace. The child waits
	 * on the sync pipe and is not reaped, so its pid still names it here. */
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)lc->pid);
	nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0 || vsock_set_peer_netns(nsfd, err) < 0) {
		if (nsfd < 0)
			err_sys(err, "%s", path);
		goto fail;
	}
	if (write(sync_pipe[1], "G", 1) != 1) {
		err_sys(err, "start the enclave");
		goto fail;
	}
	n = read(report[0], msg, sizeof(msg) - 1);
	close(report[0]);
	report[0] = -1;
	close(sync_pipe[1]); /* after the child's last look at it (see child_main) */
	sync_pipe[1] = -1;
	if (n != 1 || msg[0] != 'R') {
		msg[n > 0 ? n : 0] = 0;
		err_set(err, EIO, "local enclave failed to boot: %s", n > 0 ? msg : "it exited during setup");
		goto fail;
	}
	l->cid = LOCAL_CID;
	snprintf(l->enclave_id, sizeof(l->enclave_id), "local-%s", strrchr(lc->state, '-') + 1);
	l->watch_fd = lc->pidfd;
	return 0;
fail:
	if (sync_pipe[1] >= 0)
		close(sync_pipe[1]);
	if (report[0] >= 0)
		close(report[0]);
	return -1;
}

static void reap(struct local *lc)
{
	if (lc->pid > 0 && !lc->reaped) {
		while (waitpid(lc->pid, &lc->status, 0) < 0 && errno == EINTR)
			;
		lc->reaped = true;
	}
}

static void local_describe_end(struct launcher *l, char *buf, size_t size)
{
	struct local *lc = l->priv;

	reap(lc);
	if (oom_killed(lc))
		snprintf(buf, size, "out of memory: the enclave used more than its %d MiB", l->spec.memory_mb);
	else if (WIFEXITED(lc->status))
		snprintf(buf, size, "the enclave's init exited with %d", WEXITSTATUS(lc->status));
	else
		snprintf(buf, size, "the enclave's init was killed by signal %d", WTERMSIG(lc->status));
}

static void local_stop(struct launcher *l)
{
	struct local *lc = l->priv;
	struct err err = { 0 };

	if (!lc)
		return;
	/* Killing PID 1 of the enclave's PID namespace ends every process in it. */
	if (lc->pid > 0 && !lc->reaped) {
		kill(lc->pid, SIGKILL);
		reap(lc);
	}
	if (oom_killed(lc))
		log_warn("the enclave ran out of memory: a process was killed for using more than memory_mb = %d MiB",
			 l->spec.memory_mb);
	if (lc->pidfd >= 0)
		close(lc->pidfd);
	/* rmdir needs the cgroup empty: its processes die asynchronously after PID 1 */
	for (size_t i = 0; i < lc->n_cgroups; i++)
		for (int tries = 0; tries < 200 && rmdir(lc->cgroups[i]) < 0 && errno == EBUSY; tries++)
			usleep(5000);
	/* mounts lived in the enclave's mount namespace: only files are left here */
	if (lc->state[0] && fs_remove_tree(lc->state, &err) < 0)
		log_warn("local enclave: %s", err.msg);
	free(lc);
	l->priv = NULL;
}

const struct launcher_ops launcher_local = {
	.name = "local",
	.emulated = true,
	.prepare = local_prepare,
	.start = local_start,
	.describe_end = local_describe_end,
	.stop = local_stop,
};
