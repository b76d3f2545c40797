/*
 * The VM launcher: boots the EIF as the Nitro hypervisor does (its kernel, its ramdisks in order
 * as one initrd, its cmdline) in Debian's QEMU (microvm, software emulation, shared memfd memory),
 * with the guest's vsock served by our vhost-user back-end (`enclaver-run vhost-vsock`) on the
 * same emulated vsock folder as the local enclave. Runs in enclaver-run. The EIF is not changed:
 * only boot parameters are appended (reboot=, tsc_early_khz=, noreplace-smp, quiet outside debug
 * mode, enclaver.nsm=vsock).
 * QEMU and the back-end die with enclaver-run (parent-death signal); their folder goes with the next run if
 * enclaver-run was killed.
 */
#include "host/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/proc.h"
#include "host/nitro.h"
#include "net/vsock.h"
#include "vm/backend.h"

#define VM_CID 16
#define HEARTBEAT_PORT 9000
#define BOOT_TIMEOUT_MS 60000 /* software emulation boots in seconds; a bound, not a guess */
#define CONSOLE_RING 16384
#define CONSOLE_TAIL_LINES 20

struct vm {
	char state[64], vdir[80];
	pid_t qemu, backend;
	int qemu_pidfd;
	int console_rd;
	bool console_running, debug;
	pthread_t console_thread;
	pthread_mutex_t mu;
	char ring[CONSOLE_RING];
	size_t ring_len, ring_pos; /* bytes held; where the next byte goes */
	int panic_fd;              /* an eventfd, readable once the guest's kernel has panicked */
	char line[256];            /* the console's current line, for that */
	size_t line_len;
	int qemu_status;
	bool reaped;
};

/* --- the guest's console: kept (the last 16 KiB) and, in debug mode, shown --- */

static void *console_main(void *arg)
{
	struct vm *vm = arg;
	char b[4096];
	ssize_t n;

	while ((n = read(vm->console_rd, b, sizeof(b))) > 0 || (n < 0 && errno == EINTR)) {
		if (n <= 0)
			continue;
		if (vm->debug && fs_write_full(STDERR_FILENO, b, (size_t)n) < 0) {
			/* stderr gone: keep the ring all the same */
		}
		pthread_mutex_lock(&vm->mu);
		for (ssize_t i = 0; i < n; i++) {
			vm->ring[vm->ring_pos] = b[i];
			vm->ring_pos = (vm->ring_pos + 1) % CONSOLE_RING;
			/* a panicked kernel never sends its heartbeat: no need to wait for the bound */
			if (b[i] == '\n' || vm->line_len == sizeof(vm->line) - 1) {
				vm->line[vm->line_len] = 0;
				if (strstr(vm->line, "Kernel panic - not syncing")) {
					uint64_t one = 1;

					if (write(vm->panic_fd, &one, sizeof(one)) < 0) {
						/* already signalled */
					}
				}
				vm->line_len = 0;
			} else {
				vm->line[vm->line_len++] = b[i];
			}
		}
		vm->ring_len = vm->ring_len + (size_t)n > CONSOLE_RING ? CONSOLE_RING : vm->ring_len + (size_t)n;
		pthread_mutex_unlock(&vm->mu);
	}
	return NULL;
}

/* The console's last lines, for an error that needs them; with mark, the lines up to just after
 * the first one that holds it (a panic's dump says less than what came before it). */
static void console_tail(struct vm *vm, const char *mark, char *out, size_t size)
{
	char *flat = malloc(CONSOLE_RING + 1);
	size_t start, len, lines = 0;

	if (!flat)
		abort();
	pthread_mutex_lock(&vm->mu);
	len = vm->ring_len;
	start = (vm->ring_pos + CONSOLE_RING - len) % CONSOLE_RING;
	for (size_t i = 0; i < len; i++)
		flat[i] = vm->ring[(start + i) % CONSOLE_RING];
	pthread_mutex_unlock(&vm->mu);
	flat[len] = 0;
	if (mark) {
		/* the first: a panic ends with "---[ end Kernel panic ..." after its dump; memmem,
		 * not strstr: a console may carry NUL bytes */
		char *m = memmem(flat, len, mark, strlen(mark));

		for (int after = 0; m && after < 2; after++) {
			char *nl = memchr(m, '\n', len - (size_t)(m - flat));

			m = nl ? nl + 1 : NULL;
		}
		if (m)
			len = (size_t)(m - flat);
	}
	while (len && (flat[len - 1] == '\n' || flat[len - 1] == '\r'))
		len--;
	flat[len] = 0;
	for (start = len; start > 0; start--)
		if (flat[start - 1] == '\n' && ++lines == CONSOLE_TAIL_LINES)
			break;
	/* shown as text: carriage returns and other control bytes out */
	{
		size_t o = 0;

		for (size_t i = start; i < len && o + 1 < size; i++) {
			unsigned char c = (unsigned char)flat[i];

			if (c == '\r')
				continue;
			out[o++] = c == '\n' || (c >= 0x20 && c != 0x7f) || c >= 0x80 ? (char)c : '?';
		}
		out[o] = 0;
	}
	free(flat);
}

/* --- the boot --- */

/* The EIF's kernel and its ramdisks, in order, as one initrd: what the hypervisor boots. */
static int unpack_eif(struct launcher *l, struct vm *vm, char *cmdline, size_t size, struct err *err)
{
	const struct eif_info *e = l->spec.eif;
	char path[128];
	int in, kernel, initrd, rc = -1;
	size_t n_ram = 0;

	in = open(l->spec.eif_path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return err_sys(err, "%s", l->spec.eif_path);
	snprintf(path, sizeof(path), "%s/kernel", vm->state);
	kernel = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	snprintf(path, sizeof(path), "%s/initrd", vm->state);
	initrd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (kernel < 0 || initrd < 0) {
		err_sys(err, "%s", vm->state);
		goto out;
	}
	for (size_t i = 0; i < e->n_sections; i++) {
		const struct eif_section_info *s = &e->sections[i];

		if ((s->type == EIF_SEC_KERNEL && fs_copy_range(in, s->offset + 12, s->size, kernel, err) < 0) ||
		    (s->type == EIF_SEC_RAMDISK && fs_copy_range(in, s->offset + 12, s->size, initrd, err) < 0)) {
			err_wrap(err, "%s", l->spec.eif_path);
			goto out;
		}
		n_ram += s->type == EIF_SEC_RAMDISK;
	}
	if (eif_info_find(e, EIF_SEC_KERNEL, 0) < 0 || !n_ram) {
		err_set(err, EINVAL, "%s: no kernel or no ramdisk to boot", l->spec.eif_path);
		goto out;
	}
	snprintf(cmdline, size, "%s", e->cmdline ? e->cmdline : "");
	rc = 0;
out:
	close(in);
	if (kernel >= 0)
		close(kernel);
	if (initrd >= 0)
		close(initrd);
	return rc;
}

static unsigned long tsc_khz(void)
{
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	const char *p;
	unsigned long khz = 0;

	/* TSC calibration hangs now and then under emulation: the host's rate, given */
	if (fs_read_file("/proc/cpuinfo", 1 << 20, &b, &err) == 0 && (p = strstr(buf_cstr(&b), "cpu MHz")) &&
	    (p = strchr(p, ':')))
		khz = (unsigned long)(strtod(p + 1, NULL) * 1000);
	buf_free(&b);
	return khz;
}

static const char *qemu_binary(void)
{
	const char *q = getenv("ENCLAVER_QEMU");

	return q && *q ? q : "qemu-system-x86_64";
}

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");

	if (strchr(prog, '/'))
		return access(prog, X_OK) == 0;
	while (path && *path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		char full[4200];

		snprintf(full, sizeof(full), "%.*s/%s", (int)n, path, prog);
		if (access(full, X_OK) == 0)
			return true;
		path = end ? end + 1 : NULL;
	}
	return false;
}

static int listen_unix(const char *path, struct err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		err_sys(err, "%s", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static pid_t spawn(char *const *argv, int out_fd, int keep_fd)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	/* dies with enclaver-run; checked after setting, in case it is already gone */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	proc_reset_signals();
	if (getppid() == 1)
		_exit(127);
	if (out_fd >= 0) {
		dup2(out_fd, STDOUT_FILENO);
		dup2(out_fd, STDERR_FILENO);
	}
	{
		int null = open("/dev/null", O_RDONLY);

		if (null >= 0)
			dup2(null, STDIN_FILENO);
	}
	if (keep_fd >= 0)
		fcntl(keep_fd, F_SETFD, 0);
	execvp(argv[0], argv);
	fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static int start_backend(struct launcher *l, struct vm *vm, const char *sock, struct err *err)
{
	char exe[4200], fdarg[16], cid[16], ports[66][16];
	char *argv[9 + 2 * 66] = { exe, VM_BACKEND_CMD, "--listen-fd", fdarg, "--vsock-dir", vm->vdir, "--cid", cid };
	size_t n = 8, np = 0;
	int lfd = listen_unix(sock, err);
	ssize_t len;

	if (lfd < 0)
		return -1;
	len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len < 0) {
		close(lfd);
		return err_sys(err, "/proc/self/exe");
	}
	exe[len] = 0;
	snprintf(fdarg, sizeof(fdarg), "%d", lfd);
	snprintf(cid, sizeof(cid), "%d", VM_CID);
	/* the guest ports the host reaches: status, logs, each published one */
	snprintf(ports[np++], sizeof(ports[0]), "17000");
	snprintf(ports[np++], sizeof(ports[0]), "17001");
	for (size_t i = 0; i < l->spec.n_guest_ports && np < 66; i++)
		snprintf(ports[np++], sizeof(ports[0]), "%u", l->spec.guest_ports[i]);
	for (size_t i = 0; i < np; i++) {
		argv[n++] = "--port";
		argv[n++] = ports[i];
	}
	if (log_get_level() >= LOG_DEBUG)
		argv[n++] = "--verbose";
	argv[n] = NULL;
	vm->backend = spawn(argv, -1, lfd);
	close(lfd);
	return vm->backend < 0 ? err_sys(err, "fork") : 0;
}

static int start_qemu(struct launcher *l, struct vm *vm, const char *cmdline, const char *sock, struct err *err)
{
	char mem[24], backend[128], smp[16], chardev[200], kernel[128], initrd[128], append[8192];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	/* Without ERMS and FSRM the guest's kernel copies with rep movsq, not rep movsb, which
	 * software emulation runs a byte at a time: three times the vsock throughput, measured */
	char *argv[] = { (char *)qemu_binary(), "-M", "microvm,memory-backend=mem", "-m", mem, "-object", backend,
			 "-cpu", "max,-erms,-fsrm", "-smp", smp, "-nodefaults", "-no-reboot", "-nographic", "-serial", "stdio",
			 "-chardev", chardev, "-device", "vhost-user-vsock-device,chardev=vs0", "-kernel", kernel,
			 "-initrd", initrd, "-append", append, NULL };
	int pipefd[2];

	snprintf(mem, sizeof(mem), "%dM", l->spec.memory_mb);
	snprintf(backend, sizeof(backend), "memory-backend-memfd,id=mem,size=%dM,share=on", l->spec.memory_mb);
	/* no more vCPUs than the host has: each is a thread of software emulation */
	snprintf(smp, sizeof(smp), "%d", l->spec.cpu_count < cpus ? l->spec.cpu_count : (int)(cpus > 0 ? cpus : 1));
	snprintf(chardev, sizeof(chardev), "socket,id=vs0,path=%s", sock);
	snprintf(kernel, sizeof(kernel), "%s/kernel", vm->state);
	snprintf(initrd, sizeof(initrd), "%s/initrd", vm->state);
	/* Later parameters win: reboot=a ends QEMU at the guest's reboot (microvm's ACPI, which Debian
	 * kernels also need to find the virtio devices); enclaver.nsm=vsock points odyn at the
	 * host's NSM emulator, since this machine has no NSM device to give the guest.
	 * noreplace-smp: a kernel booted on one vCPU rewrites every LOCK prefix of its text, one
	 * page-table switch each, which software emulation pays with a full TLB flush (half a
	 * second, measured); the prefixes are correct either way. quiet, unless in debug mode: as on
	 * Nitro, where only debug mode shows the console, the kernel's chatter is not wanted, and each
	 * character of it is two emulated port accesses (a quarter of a second a boot, measured);
	 * errors, panics and what init says still reach the console and a failed boot's tail. */
	snprintf(append, sizeof(append), "%s reboot=a tsc_early_khz=%lu noreplace-smp%s enclaver.nsm=vsock", cmdline,
		 tsc_khz(), vm->debug ? "" : " quiet");
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return err_sys(err, "pipe");
	vm->qemu = spawn(argv, pipefd[1], -1);
	close(pipefd[1]);
	if (vm->qemu < 0) {
		close(pipefd[0]);
		return err_sys(err, "fork");
	}
	vm->console_rd = pipefd[0];
	if (pthread_create(&vm->console_thread, NULL, console_main, vm) == 0)
		vm->console_running = true;
	vm->qemu_pidfd = (int)syscall(SYS_pidfd_open, vm->qemu, 0);
	return vm->qemu_pidfd < 0 ? err_sys(err, "pidfd_open") : 0;
}

static void reap_qemu(struct vm *vm)
{
	if (vm->qemu > 0 && !vm->reaped) {
		while (waitpid(vm->qemu, &vm->qemu_status, 0) < 0 && errno == EINTR)
			;
		vm->reaped = true;
	}
}

/* init's heartbeat: the kernel booted, its modules loaded and vsock works. */
static int await_heartbeat(struct launcher *l, struct vm *vm, int hb, struct err *err)
{
	struct pollfd p[3] = { { .fd = hb, .events = POLLIN },
			       { .fd = vm->qemu_pidfd, .events = POLLIN },
			       { .fd = vm->panic_fd, .events = POLLIN } };
	char tail[8192];
	unsigned char b = 0;
	int n, fd;

	do
		n = poll(p, 3, BOOT_TIMEOUT_MS);
	while (n < 0 && errno == EINTR);
	if (n > 0 && p[0].revents) {
		fd = accept4(hb, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			struct pollfd q = { .fd = fd, .events = POLLIN };

			fcntl(fd, F_SETFL, 0);
			if (poll(&q, 1, 5000) == 1 && read(fd, &b, 1) == 1 && b == 0xB7 && write(fd, &b, 1) == 1) {
				close(fd);
				return 0;
			}
			close(fd);
		}
	}
	/* a moment for the console's last words */
	if (n > 0 && p[1].revents) {
		reap_qemu(vm);
		usleep(100000);
	}
	l->boot_failed = true;
	if (n > 0 && p[2].revents)
		usleep(300000); /* the panic's last lines */
	/* The console is context for the error that follows, not part of it: printed first. */
	console_tail(vm, n > 0 && p[2].revents ? "Kernel panic - not syncing" : NULL, tail, sizeof(tail));
	if (tail[0] && !vm->debug)
		fprintf(stderr, "enclaver-run: the end of the enclave's console:\n%s\n", tail);
	if (n > 0 && p[2].revents)
		err_set(err, ECHILD, "the enclave did not boot: its kernel panicked%s", tail[0] ? " (its console is above)" : "");
	else if (n > 0 && p[1].revents)
		err_set(err, ECHILD, "the enclave did not boot: QEMU %s %d%s",
			WIFEXITED(vm->qemu_status) ? "exited with" : "was killed by signal",
			WIFEXITED(vm->qemu_status) ? WEXITSTATUS(vm->qemu_status) : WTERMSIG(vm->qemu_status),
			tail[0] ? " (its console is above)" : " and its console is empty");
	else
		err_set(err, ETIMEDOUT, "the enclave did not boot within %d s (no heartbeat from its init on vsock port %d)%s",
			BOOT_TIMEOUT_MS / 1000, HEARTBEAT_PORT, tail[0] ? " (its console is above)" : "");
	return -1;
}

static int vm_prepare(struct launcher *l, struct err *err)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		abort();
	l->priv = vm;
	vm->qemu = vm->backend = -1;
	vm->qemu_pidfd = vm->console_rd = -1;
	vm->debug = l->spec.debug_mode;
	vm->panic_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->panic_fd < 0)
		return err_sys(err, "eventfd");
	pthread_mutex_init(&vm->mu, NULL);
	if (launcher_state_dir("VM enclave", vm->state, sizeof(vm->state), err) < 0)
		return -1;
	snprintf(vm->vdir, sizeof(vm->vdir), "%s/v", vm->state);
	/* only enclaver-run and its back-end (root, here) use the folder */
	if (chmod(vm->state, 0700) < 0 || mkdir(vm->vdir, 0700) < 0)
		return err_sys(err, "VM enclave: %s", vm->state);
	return vsock_use_emulated(vm->vdir, VSOCK_CID_PARENT, err);
}

static int vm_start(struct launcher *l, struct err *err)
{
	struct vm *vm = l->priv;
	char cmdline[4096], sock[128];
	int hb = -1, rc = -1;

	if (!in_path(qemu_binary()))
		return err_set(err, ENOENT, "%s is not installed: apt-get install qemu-system-x86 (scripts/install-deps.sh does)",
			       qemu_binary());
	/* the initrd unpacks into the guest's memory next to the kernel: nitro-cli's rule holds */
	if ((uint64_t)l->spec.memory_mb < ne_min_memory_mb(l->spec.eif->file_size))
		return err_set(err, EINVAL, "At least %llu MB must be allocated (which is 4 times the EIF file size); raise memory_mb",
			       (unsigned long long)ne_min_memory_mb(l->spec.eif->file_size));
	if (unpack_eif(l, vm, cmdline, sizeof(cmdline), err) < 0)
		return -1;
	/* The heartbeat listener exists before the guest can knock. */
	hb = vsock_listen(HEARTBEAT_PORT, 4, err);
	if (hb < 0)
		return -1;
	snprintf(sock, sizeof(sock), "%s/vhost.sock", vm->state);
	if (start_backend(l, vm, sock, err) < 0 || start_qemu(l, vm, cmdline, sock, err) < 0 ||
	    await_heartbeat(l, vm, hb, err) < 0)
		goto out;
	l->cid = VM_CID;
	snprintf(l->enclave_id, sizeof(l->enclave_id), "vm-%s", strrchr(vm->state, '-') + 1);
	l->watch_fd = vm->qemu_pidfd;
	rc = 0;
out:
	close(hb);
	return rc;
}

static void vm_describe_end(struct launcher *l, char *buf, size_t size)
{
	struct vm *vm = l->priv;
	char tail[8192];

	reap_qemu(vm);
	usleep(100000);
	console_tail(vm, "Kernel panic - not syncing", tail, sizeof(tail));
	if (tail[0] && !vm->debug)
		fprintf(stderr, "enclaver-run: the end of the enclave's console:\n%s\n", tail);
	snprintf(buf, size, "the VM's QEMU %s %d%s", WIFEXITED(vm->qemu_status) ? "exited with" : "was killed by signal",
		 WIFEXITED(vm->qemu_status) ? WEXITSTATUS(vm->qemu_status) : WTERMSIG(vm->qemu_status),
		 tail[0] ? " (its console is above)" : "");
}

static void vm_stop(struct launcher *l)
{
	struct vm *vm = l->priv;
	struct err err = { 0 };

	if (!vm)
		return;
	if (!vm->reaped && vm->qemu > 0) {
		proc_stop(vm->qemu, 2000);
		vm->reaped = true;
	}
	proc_stop(vm->backend, 0);
	if (vm->console_running)
		pthread_join(vm->console_thread, NULL); /* QEMU's end closed the pipe */
	if (vm->console_rd >= 0)
		close(vm->console_rd);
	if (vm->qemu_pidfd >= 0)
		close(vm->qemu_pidfd);
	if (vm->panic_fd >= 0)
		close(vm->panic_fd);
	if (vm->state[0] && fs_remove_tree(vm->state, &err) < 0)
		log_warn("VM enclave: %s", err.msg);
	pthread_mutex_destroy(&vm->mu);
	free(vm);
	l->priv = NULL;
	l->watch_fd = -1;
}

const struct launcher_ops launcher_vm = {
	.name = "vm",
	.emulated = true,
	.prepare = vm_prepare,
	.start = vm_start,
	.describe_end = vm_describe_end,
	.stop = vm_stop,
};
