/*
 * Launchers: how enclaver-run starts and stops an enclave. Everything above this interface
 * (egress tunnel, ingress, log and status clients, exit codes) is shared by all of them.
 */
#ifndef ENCLAVER_HOST_LAUNCHER_H
#define ENCLAVER_HOST_LAUNCHER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "eif/eif.h"

struct launch_spec {
	const char *eif_path;
	const struct eif_info *eif;
	int cpu_count;
	int memory_mb;
	bool debug_mode;
	const uint32_t *guest_ports; /* the enclave's ports the host connects to (ingress) */
	size_t n_guest_ports;
};

struct launcher {
	const struct launcher_ops *ops;
	struct launch_spec spec;
	uint32_t cid;        /* the enclave's CID once started */
	char enclave_id[128];
	int watch_fd;        /* readable (or hung up) when the enclave has stopped; -1 if none */
	bool boot_failed;    /* start failed because the enclave did not boot */
	void *priv;
};

struct launcher_ops {
	const char *name;
	/* The host side of a development enclave: NSM emulator, IMDS and kms-local routes. */
	bool emulated;
	/* Before the host services start: e.g. choose the vsock transport. */
	int (*prepare)(struct launcher *l, struct err *err);
	/* Boots the enclave; sets cid, enclave_id and watch_fd. */
	int (*start)(struct launcher *l, struct err *err);
	/* Called when watch_fd fires: a description of how the enclave ended. */
	void (*describe_end)(struct launcher *l, char *buf, size_t size);
	/* Terminates the enclave if running and releases everything; safe after a failed start. */
	void (*stop)(struct launcher *l);
};

extern const struct launcher_ops launcher_local;
extern const struct launcher_ops launcher_nitro_cli;
extern const struct launcher_ops launcher_nitro;
extern const struct launcher_ops launcher_vm;

/* Removes the state folders (and cgroups) of development enclaves whose enclaver-run was killed. */
void launcher_sweep_stale(void);
/* After that sweep, a new state folder /tmp/enclaver-XXXXXX (out holds 64 bytes) whose owner
 * file names this process. what names the enclave kind in errors. */
int launcher_state_dir(const char *what, char *out, size_t size, struct err *err);

#endif
