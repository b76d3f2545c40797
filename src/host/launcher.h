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
};

struct launcher {
	const struct launcher_ops *ops;
	struct launch_spec spec;
	uint32_t cid;        /* the enclave's CID once started */
	char enclave_id[128];
	int watch_fd;        /* readable (or hung up) when the enclave has stopped; -1 if none */
	void *priv;
};

struct launcher_ops {
	const char *name;
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

#endif
