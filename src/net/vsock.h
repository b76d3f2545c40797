/*
 * vsock addressing with two transports chosen at run time: AF_VSOCK on Nitro, and an emulated
 * one for the local enclave where (cid, port) is a Unix socket: "<dir>/3.<port>" in a
 * per-enclave folder for the parent's ports, an abstract name for an enclave's. Nothing above
 * this file knows which transport is in use.
 *
 * The AF_VSOCK path is the few lines in vsock_listen/vsock_connect below; it never runs in tests.
 */
#ifndef ENCLAVER_NET_VSOCK_H
#define ENCLAVER_NET_VSOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

#define VSOCK_CID_ANY 0xFFFFFFFFu
#define VSOCK_CID_HYPERVISOR 0
#define VSOCK_CID_LOCAL 1
#define VSOCK_CID_HOST 2
#define VSOCK_CID_PARENT 3

/* The environment variable through which the local launcher hands odyn the emulated folder. */
#define VSOCK_DIR_ENV "ENCLAVER_VSOCK_DIR"

/* Selects the emulated transport: sockets live in dir, and this process is local_cid
 * (VSOCK_CID_PARENT for the host side). dir == NULL selects AF_VSOCK. */
int vsock_use_emulated(const char *dir, uint32_t local_cid, struct err *err);
bool vsock_is_emulated(void);
const char *vsock_emulated_dir(void);

/* Host side of a local enclave: the enclave's listeners are in the network namespace nsfd
 * (taken over; closed by the next call). Call before any thread starts. */
int vsock_set_peer_netns(int nsfd, struct err *err);

/* A non-blocking, close-on-exec listener on (ANY, port). */
int vsock_listen(uint32_t port, int backlog, struct err *err);
/* Emulated transport only: a listener for (cid, port) as another CID would have it, in this
 * network namespace; the VM enclave's back-end stands in for its guest with these. */
int vsock_emulated_listen_as(uint32_t cid, uint32_t port, int backlog, struct err *err);
/* A non-blocking connect to (cid, port): returns the fd; *in_progress is set when the
 * connection completes later (wait for EPOLLOUT, then check SO_ERROR). */
int vsock_connect(uint32_t cid, uint32_t port, bool *in_progress, struct err *err);
/* A blocking connect with a timeout, for simple clients. */
int vsock_connect_blocking(uint32_t cid, uint32_t port, int timeout_ms, struct err *err);

/* Whether an accepted connection comes from the parent (the host): on AF_VSOCK its CID, on the
 * emulated transport a peer outside this process's PID namespace. */
bool vsock_peer_is_parent(int fd);

/* The CID of an AF_VSOCK connection's peer; -1 (EAFNOSUPPORT) on the emulated transport. */
int vsock_peer_cid(int fd, uint32_t *cid);

/* The emulated path of the parent's port (a file in the folder); the buffer must hold 108
 * bytes. Other CIDs' ports have no path. */
int vsock_emulated_path(uint32_t cid, uint32_t port, char *out, size_t size, struct err *err);

#endif
