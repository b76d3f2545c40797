/*
 * enclaver-init: PID 1 of EIFs built without AWS's boot blobs. Does what AWS's init does
 * (spec/nitro.md §3): mounts, optional nsm.ko, the 0xB7 heartbeat to the parent, /env and
 * /cmd, chroot into /rootfs, run the command, reap everything, reboot. Statically linked; no
 * NSS. Any setup failure is fatal: a half-booted enclave must not run the app.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/reboot.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "eif/bootkit.h"
#include "eif/initfiles.h"

#define HEARTBEAT_CID 3
#define HEARTBEAT_PORT 9000
#define HEARTBEAT 0xB7
#define DEFAULT_PATH_ENV "PATH=/sbin:/usr/sbin:/bin:/usr/bin"

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	fprintf(stderr, "enclaver-init: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(e));
	/* PID 1 exiting panics the kernel, which (panic=30, reboot=k) ends the enclave. */
	exit(e ? e : 1);
}

enum op { OP_MOUNT, OP_MKDIR, OP_SYMLINK };

struct step {
	enum op op;
	const char *source;
	const char *target;
	const char *fstype;
	unsigned long flags;
	const char *data; /* NULL for a tmpfs: the mode and owner of the folder it covers */
	bool tolerate_ebusy;
};

/* Inside the new root, in AWS init's order. */
static const struct step rootfs_steps[] = {
	{ OP_MOUNT, "dev", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "", true },
	{ OP_MOUNT, "proc", "/proc", "proc", MS_NODEV | MS_NOSUID | MS_NOEXEC, "", false },
	{ OP_SYMLINK, "/proc/self/fd", "/dev/fd", NULL, 0, NULL, false },
	{ OP_SYMLINK, "/proc/self/fd/0", "/dev/stdin", NULL, 0, NULL, false },
	{ OP_SYMLINK, "/proc/self/fd/1", "/dev/stdout", NULL, 0, NULL, false },
	{ OP_SYMLINK, "/proc/self/fd/2", "/dev/stderr", NULL, 0, NULL, false },
	{ OP_MOUNT, "run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", false },
	{ OP_MOUNT, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, NULL, false },
	{ OP_MKDIR, NULL, "/dev/shm", NULL, 0, NULL, false },
	{ OP_MOUNT, "shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "", false },
	{ OP_MKDIR, NULL, "/dev/pts", NULL, 0, NULL, false },
	{ OP_MOUNT, "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "", false },
	{ OP_MOUNT, "sysfs", "/sys", "sysfs", MS_NODEV | MS_NOSUID | MS_NOEXEC, "", false },
	{ OP_MOUNT, "cgroup_root", "/sys/fs/cgroup", "tmpfs", MS_NODEV | MS_NOSUID | MS_NOEXEC, "mode=0755", false },
};

static void run_steps(const struct step *steps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct step *s = &steps[i];

		switch (s->op) {
		case OP_MOUNT: {
			char like[64];

			/* /tmp as the image has it (AWS's init leaves the tmpfs default, 1777), so that an
			 * app finds the folder docker run would give it */
			if (!s->data)
				fs_tmpfs_like(s->target, like, sizeof(like));
			if (mount(s->source, s->target, s->fstype, s->flags, s->data ? s->data : like) < 0 &&
			    !(s->tolerate_ebusy && errno == EBUSY))
				die("mount %s on %s", s->fstype, s->target);
			break;
		}
		case OP_MKDIR:
			if (mkdir(s->target, 0755) < 0 && errno != EEXIST)
				die("mkdir %s", s->target);
			break;
		case OP_SYMLINK:
			if (symlink(s->source, s->target) < 0 && errno != EEXIST)
				die("symlink %s", s->target);
			break;
		}
	}
}

/* One cgroup v1 hierarchy per enabled controller, as AWS init mounts them. */
static void mount_cgroups(void)
{
	FILE *f = fopen("/proc/cgroups", "re");
	char line[256];

	if (!f)
		die("open /proc/cgroups");
	while (fgets(line, sizeof(line), f)) {
		char name[64], path[128];
		int hier, num, enabled;

		if (line[0] == '#' || sscanf(line, "%63s %d %d %d", name, &hier, &num, &enabled) != 4 || !enabled)
			continue;
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s", name);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			die("mkdir %s", path);
		/* Kernels without a v1 controller (Debian's 6.12 has no v1 cpuset or memory) still list
		 * it: one hierarchy fewer, not a dead enclave. */
		if (mount(name, path, "cgroup", MS_NODEV | MS_NOSUID | MS_NOEXEC, name) < 0) {
			if (errno != EINVAL && errno != ENODEV && errno != EBUSY)
				die("mount cgroup %s", name);
			fprintf(stderr, "enclaver-init: no cgroup v1 %s in this kernel (%s): skipped\n", name, strerror(errno));
			rmdir(path);
		}
	}
	fclose(f);
}

static void load_nsm_driver(void)
{
	int fd = open("nsm.ko", O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return; /* driver built into the kernel */
		die("open nsm.ko");
	}
	if (syscall(SYS_finit_module, fd, "", 0) < 0)
		die("insert nsm.ko");
	close(fd);
	if (unlink("nsm.ko") < 0)
		die("unlink nsm.ko");
}

/* A kernel whose virtio and vsock drivers are modules (a Debian kernel) boots with them in the
 * bootstrap ramdisk: loaded in name order before the heartbeat, which needs them, then removed,
 * as nsm.ko is. */
static void load_boot_modules(void)
{
	struct dirent **list = NULL;
	int n = scandir("/" BOOTKIT_MODULES_DIR, &list, initfiles_module_filter, alphasort);

	if (n < 0) {
		if (errno == ENOENT)
			return;
		die("open /" BOOTKIT_MODULES_DIR);
	}
	for (int i = 0; i < n; i++) {
		char path[512];
		int fd;

		snprintf(path, sizeof(path), "/" BOOTKIT_MODULES_DIR "/%s", list[i]->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("open %s", path);
		/* built into this kernel already: nothing to load */
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			die("insert %s (a module of another kernel? use the boot kit's own kernel)", path);
		close(fd);
		unlink(path);
		free(list[i]);
	}
	free(list);
	rmdir("/" BOOTKIT_MODULES_DIR);
}

/* The kit's modules for transparent egress stay unloaded (an enclave without egress does not
 * boot slower for them): held open here, across the move into /rootfs... */
static int hold_net_modules(void)
{
	int fd = open("/" BOOTKIT_MODULES_DIR "/" BOOTKIT_NET_SUBDIR, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 && errno != ENOENT)
		die("open /" BOOTKIT_MODULES_DIR "/" BOOTKIT_NET_SUBDIR);
	return fd;
}

/* ...then shown to odyn, which loads them when it sets transparent egress up: read-only, and
 * root's only, as the rest of the kit is measured and nothing in it is secret. */
static void show_net_modules(int fd)
{
	char src[64];

	if (fd < 0)
		return;
	snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
	if ((mkdir("/run/enclaver", 0755) < 0 && errno != EEXIST) ||
	    (mkdir(BOOTKIT_NET_MODULES_RUN, 0700) < 0 && errno != EEXIST))
		die("mkdir " BOOTKIT_NET_MODULES_RUN);
	if (mount(src, BOOTKIT_NET_MODULES_RUN, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, BOOTKIT_NET_MODULES_RUN, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL) < 0)
		die("bind the kit's network modules at " BOOTKIT_NET_MODULES_RUN);
	close(fd);
}

/* Tells the parent the kernel is up; the parent ends the enclave if this never arrives. */
static void heartbeat(void)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = HEARTBEAT_CID, .svm_port = HEARTBEAT_PORT };
	unsigned char b = HEARTBEAT;
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("vsock socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect to the parent (vsock 3:9000)");
	if (write(fd, &b, 1) != 1)
		die("heartbeat write");
	if (read(fd, &b, 1) != 1 || b != HEARTBEAT)
		die("heartbeat reply");
	close(fd);
}

static char **read_items(const char *path)
{
	struct err err = { 0 };
	char **items;

	if (initfiles_take(path, &items, &err) < 0) {
		errno = err.code ? err.code : EINVAL;
		die("%s", err.msg);
	}
	return items;
}

static void enter_rootfs(void)
{
	if (mount("/rootfs", "/rootfs", NULL, MS_BIND, NULL) < 0)
		die("bind /rootfs");
	if (chdir("/rootfs") < 0)
		die("chdir /rootfs");
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		die("move /rootfs to /");
	if (chroot(".") < 0)
		die("chroot");
	if (chdir("/") < 0)
		die("chdir /");
}

static pid_t launch(char **argv, char **envp, const sigset_t *orig)
{
	static char *default_argv[] = { "sh", NULL };
	static char *default_envp[] = { DEFAULT_PATH_ENV, NULL };
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid > 0)
		return pid;
	sigprocmask(SIG_SETMASK, orig, NULL);
	if (setsid() < 0)
		die("setsid");
	/* The lookup PATH is init's, not the image's: AWS init does the same. */
	putenv(DEFAULT_PATH_ENV);
	if (!argv || !argv[0])
		argv = default_argv;
	execvpe(argv[0], argv, envp ? envp : default_envp);
	die("exec %s", argv[0]);
}

static int reap_until(pid_t child)
{
	for (;;) {
		int status;
		pid_t p = wait(&status);

		if (p < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECHILD)
				return 1;
			die("wait");
		}
		if (p != child)
			continue;
		if (WIFEXITED(status)) {
			if (WEXITSTATUS(status))
				fprintf(stderr, "enclaver-init: child exited with error %d\n", WEXITSTATUS(status));
			return WEXITSTATUS(status);
		}
		fprintf(stderr, "enclaver-init: child exited by signal %d\n", WTERMSIG(status));
		return 128 + WTERMSIG(status);
	}
}

int main(int argc, char **argv)
{
	sigset_t all, orig;
	char **cmd, **env;
	pid_t child;
	int net_modules;

	if (argc > 1 && !strcmp(argv[1], "--version")) {
		printf("enclaver-init %s\n", ENCLAVER_VERSION);
		return 0;
	}
	if (getpid() != 1) {
		fprintf(stderr, "enclaver-init: runs only as PID 1 inside an enclave\n");
		return 2;
	}
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &orig);
	if (mount("dev", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, NULL) < 0 && errno != EBUSY)
		die("mount /dev");
	if (!freopen("/dev/console", "r", stdin) || !freopen("/dev/console", "w", stdout) ||
	    !freopen("/dev/console", "w", stderr))
		die("open /dev/console");
	load_nsm_driver();
	load_boot_modules();
	heartbeat();
	env = read_items("/env");
	cmd = read_items("/cmd");
	net_modules = hold_net_modules();
	enter_rootfs();
	run_steps(rootfs_steps, sizeof(rootfs_steps) / sizeof(rootfs_steps[0]));
	show_net_modules(net_modules);
	mount_cgroups();
	child = launch(cmd, env, &orig);
	reap_until(child);
	sync();
	reboot(RB_AUTOBOOT);
	die("reboot");
}
