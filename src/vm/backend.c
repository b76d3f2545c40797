/*
 * `enclaver-run vhost-vsock`: the VM enclave's vsock back-end process (see backend.h). Accepts
 * the one front-end (QEMU) on the listener it was given, serves it, and exits when it leaves.
 */
#include "vm/backend.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/loop.h"
#include "net/vsock.h"
#include "vm/vhost_user.h"

#define MAX_PORTS 64

struct backend {
	struct loop *loop;
	struct loop_io listen_io;
	struct vsock_dev *dev;
	struct vhost_user *vu;
	uint64_t cid;
};

static void on_end(void *data)
{
	struct backend *b = data;

	loop_stop(b->loop);
}

static void on_front_end(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct backend *b = io->data;
	struct err err = { 0 };
	int lfd = io->fd, fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	/* one front-end: the listener closes once it is here */
	loop_io_del(l, io);
	close(lfd);
	if (vhost_user_new(l, fd, b->cid, b->dev, on_end, b, &b->vu, &err) < 0) {
		log_error("vhost-user: %s", err.msg);
		loop_stop(l);
	}
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int vm_backend_main(int argc, char **argv)
{
	static const struct option opts[] = { { "listen-fd", required_argument, NULL, 'l' },
					      { "vsock-dir", required_argument, NULL, 'd' },
					      { "cid", required_argument, NULL, 'c' },
					      { "port", required_argument, NULL, 'p' },
					      { "verbose", no_argument, NULL, 'v' },
					      { NULL, 0, NULL, 0 } };
	struct backend b = { 0 };
	struct err err = { 0 };
	uint32_t ports[MAX_PORTS], lfd = UINT32_MAX, cid = 0;
	const char *dir = NULL;
	size_t n_ports = 0;
	int c, rc = 1;

	/* the launcher's death is this process's: nothing of a VM enclave outlives enclaver-run */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		uint32_t v;

		if (c == 'v') {
			log_set_level(LOG_DEBUG);
			continue;
		}
		if (!optarg || (c != 'd' && parse_u32(optarg, &v) < 0)) {
			log_error("vhost-vsock: --%s %s: not a number", c == 'l' ? "listen-fd" : c == 'c' ? "cid" : "port",
				  optarg ? optarg : "");
			return 2;
		}
		switch (c) {
		case 'l': lfd = v; break;
		case 'd': dir = optarg; break;
		case 'c': cid = v; break;
		case 'p':
			if (n_ports == MAX_PORTS) {
				log_error("vhost-vsock: more than %d ports", MAX_PORTS);
				return 2;
			}
			ports[n_ports++] = v;
			break;
		default: return 2;
		}
	}
	if (lfd > 1024 || !dir || cid <= VSOCK_CID_PARENT) {
		log_error("usage: enclaver-run " VM_BACKEND_CMD " --listen-fd N --vsock-dir DIR --cid CID (> 3) [--port P]...");
		return 2;
	}
	b.cid = cid;
	if (vsock_use_emulated(dir, VSOCK_CID_PARENT, &err) < 0 || loop_new(&b.loop, &err) < 0 ||
	    vsock_dev_new(b.loop, cid, ports, n_ports, &b.dev, &err) < 0 ||
	    loop_io_add(b.loop, &b.listen_io, (int)lfd, EPOLLIN, on_front_end, &b, &err) < 0 || loop_run(b.loop, &err) < 0)
		log_error("vhost-vsock: %s", err.msg);
	else
		rc = 0;
	vhost_user_free(b.vu);
	vsock_dev_free(b.dev);
	if (b.loop)
		loop_free(b.loop);
	return rc;
}
