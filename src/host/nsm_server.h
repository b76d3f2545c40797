/*
 * The local enclave's NSM, served by enclaver-run on a Unix socket in the enclave's vsock
 * folder (nitro/nsm.c's emulated transport: a big-endian u32 length, then CBOR, each way).
 * Requests come from inside the enclave and are not trusted; a bad frame closes only its
 * connection.
 */
#ifndef ENCLAVER_HOST_NSM_SERVER_H
#define ENCLAVER_HOST_NSM_SERVER_H

#include "base/err.h"
#include "net/loop.h"
#include "nitro/nsm_emu.h"

struct nsm_server;

/* Listens at path (mode 0666: the enclave's root is an unprivileged id here). emu is the
 * caller's and must outlive the server. */
int nsm_server_start(struct loop *l, const char *path, struct nsm_emu *emu, struct nsm_server **out,
		     struct err *err);
void nsm_server_stop(struct nsm_server *s);

#endif
