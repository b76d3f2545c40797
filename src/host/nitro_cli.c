/*
 * The nitro-cli launcher: where AWS's nitro-cli is installed, start the enclave through it as
 * upstream enclaver does (spec/enclaver-compat.md §4.4 steps 3, 4 and 8). The fallback for hosts
 * where the native launcher misbehaves. Runs in enclaver-run; trusts nitro-cli's output only as
 * far as its JSON parses.
 */
#include "host/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/proc.h"
#include "host/claim.h"
#include "host/nitro.h"
#include "net/vsock.h"

struct nitro_cli {
	pid_t console;
	bool started;
	pid_t process; /* nitro-cli's enclave process: it lives as long as the enclave */
};

/* Runs nitro-cli with argv; collects stdout and stderr. Returns its exit status or -1. */
static int run_cli(char *const *argv, struct buf *out, struct buf *errout, struct err *err)
{
	int po[2], pe[2], status;
	pid_t pid;

	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0)
		return err_sys(err, "pipe");
	pid = fork();
	if (pid < 0)
		return err_sys(err, "fork");
	if (pid == 0) {
		proc_reset_signals();
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execvp("nitro-cli", argv);
		fprintf(stderr, "cannot run nitro-cli: %s\n", strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	/* both pipes at once: a chatty stderr must not block a child still writing stdout */
	while (po[0] >= 0 || pe[0] >= 0) {
		struct pollfd p[2] = { { .fd = po[0], .events = POLLIN }, { .fd = pe[0], .events = POLLIN } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			int *fd = i ? &pe[0] : &po[0];
			char chunk[4096];
			ssize_t n;

			if (*fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(*fd, chunk, sizeof(chunk));
			if (n > 0) {
				buf_append(i ? errout : out, chunk, (size_t)n);
			} else if (n == 0 || errno != EINTR) {
				close(*fd);
				*fd = -1;
			}
		}
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_sys(err, "waitpid");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Logs nitro-cli's stderr and the error logs it points to, as upstream does. */
static void report_failure(int status, const struct buf *errout)
{
	static const char marker[] = "please provide the error log found at \"";
	const char *s = errout->len ? (const char *)errout->data : "";
	const char *p;

	log_error("nitro-cli failed (%d): %s", status, s);
	for (p = strstr(s, marker); p; p = strstr(p + 1, marker)) {
		char path[512];
		const char *start = p + sizeof(marker) - 1, *end = strchr(start, '"');
		struct buf b = BUF_INIT;
		struct err err = { 0 };

		if (!end || (size_t)(end - start) >= sizeof(path))
			continue;
		memcpy(path, start, (size_t)(end - start));
		path[end - start] = 0;
		if (fs_read_file(path, 1 << 20, &b, &err) == 0)
			log_error("%s:\n%s", path, buf_cstr(&b));
		buf_free(&b);
	}
}

static int cli_prepare(struct launcher *l, struct err *err)
{
	l->priv = calloc(1, sizeof(struct nitro_cli));
	if (!l->priv)
		abort();
	return 0;
}

static int cli_start(struct launcher *l, struct err *err)
{
	struct nitro_cli *nc = l->priv;
	char cpu[16], mem[16];
	char *argv[] = { "nitro-cli", "run-enclave", "--cpu-count", cpu, "--memory", mem, "--eif-path",
			 (char *)l->spec.eif_path, l->spec.debug_mode ? "--debug-mode" : NULL, NULL };
	struct buf out = BUF_INIT, errout = BUF_INIT;
	struct port_claim *hb = NULL;
	json_error_t je;
	json_t *j = NULL, *pid;
	int status, rc = -1;
	char who[600];

	snprintf(cpu, sizeof(cpu), "%d", l->spec.cpu_count);
	snprintf(mem, sizeof(mem), "%d", l->spec.memory_mb);
	/* nitro-cli listens on the parent's port 9000 while the enclave boots: one boot at a time */
	snprintf(who, sizeof(who), "booting %s through nitro-cli", l->spec.eif_path);
	if (port_claim_take(NE_HEARTBEAT_PORT, "the boot heartbeat", who, 10 * 60 * 1000, &hb, err) < 0)
		goto done;
	status = run_cli(argv, &out, &errout, err);
	port_claim_release(hb);
	if (status < 0)
		goto done;
	if (status != 0) {
		report_failure(status, &errout);
		err_set(err, EIO, "failed to run enclave");
		goto done;
	}
	j = json_loadb(out.data ? (const char *)out.data : "", out.len, 0, &je);
	if (!json_is_string(json_object_get(j, "EnclaveID")) || !json_is_integer(json_object_get(j, "EnclaveCID"))) {
		err_set(err, EIO, "nitro-cli run-enclave printed no EnclaveID/EnclaveCID");
		goto done;
	}
	snprintf(l->enclave_id, sizeof(l->enclave_id), "%s", json_string_value(json_object_get(j, "EnclaveID")));
	l->cid = (uint32_t)json_integer_value(json_object_get(j, "EnclaveCID"));
	nc->started = true;
	/* The enclave's end shows as its enclave process's: a pidfd is readable once it exits. */
	pid = json_object_get(j, "ProcessID");
	if (json_is_integer(pid) && json_integer_value(pid) > 1 && json_integer_value(pid) < INT32_MAX) {
		nc->process = (pid_t)json_integer_value(pid);
		l->watch_fd = (int)syscall(SYS_pidfd_open, nc->process, 0);
		if (l->watch_fd < 0 && errno == ESRCH) {
			err_set(err, ESRCH, "enclave %s stopped as soon as it started (its nitro-cli process %d is gone)",
				l->enclave_id, (int)nc->process);
			goto done;
		}
		if (l->watch_fd < 0)
			log_warn("cannot watch nitro-cli's enclave process %d: %s", (int)nc->process, strerror(errno));
	} else {
		log_warn("nitro-cli run-enclave printed no ProcessID: the enclave's end is seen only through its status port");
	}
	if (l->spec.debug_mode) {
		/* the console streams into our stderr as it comes */
		nc->console = fork();
		if (nc->console == 0) {
			proc_reset_signals();
			dup2(2, 1);
			execlp("nitro-cli", "nitro-cli", "console", "--enclave-id", l->enclave_id, (char *)NULL);
			_exit(127);
		}
	}
	rc = 0;
done:
	json_decref(j);
	buf_free(&out);
	buf_free(&errout);
	return rc;
}

static void cli_describe_end(struct launcher *l, char *buf, size_t size)
{
	struct nitro_cli *nc = l->priv;

	snprintf(buf, size, "enclave %s stopped (nitro-cli's enclave process %d ended)", l->enclave_id,
		 nc ? (int)nc->process : 0);
}

static void cli_stop(struct launcher *l)
{
	struct nitro_cli *nc = l->priv;
	char *argv[] = { "nitro-cli", "terminate-enclave", "--enclave-id", l->enclave_id, NULL };
	struct buf out = BUF_INIT, errout = BUF_INIT;
	struct err err = { 0 };

	if (!nc)
		return;
	/* The enclave first: the console ends by itself once the enclave is gone, as nitro-cli's does.
	 * An enclave whose process has ended is gone already. */
	if (nc->started && !(l->watch_fd >= 0 && poll(&(struct pollfd){ .fd = l->watch_fd, .events = POLLIN }, 1, 0) == 1)) {
		int status = run_cli(argv, &out, &errout, &err);
		json_t *j = status == 0 ? json_loadb((const char *)out.data, out.len, 0, NULL) : NULL;

		if (!json_is_true(json_object_get(j, "Terminated")))
			log_warn("nitro-cli terminate-enclave %s did not confirm termination (%d): %s", l->enclave_id,
				 status, errout.len ? buf_cstr(&errout) : err.msg);
		json_decref(j);
	}
	if (nc->console > 0 && !proc_reap_within(nc->console, 2000))
		proc_stop(nc->console, 1000);
	if (l->watch_fd >= 0)
		close(l->watch_fd);
	l->watch_fd = -1;
	buf_free(&out);
	buf_free(&errout);
	free(nc);
	l->priv = NULL;
}

const struct launcher_ops launcher_nitro_cli = {
	.name = "nitro-cli",
	.prepare = cli_prepare,
	.start = cli_start,
	.describe_end = cli_describe_end,
	.stop = cli_stop,
};
