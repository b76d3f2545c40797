/*
 * A bidirectional byte relay between two stream sockets (TCP, Unix, vsock), used for ingress
 * and egress. Moves data with splice() through a pipe where the kernel allows it and through a
 * buffer where it does not; honours half-close; reads a side only while the other side keeps up
 * (backpressure); closes idle connections. Pipes and buffers are held only while data is in
 * flight, so that thousands of idle connections cost two descriptors each.
 */
#ifndef ENCLAVER_NET_RELAY_H
#define ENCLAVER_NET_RELAY_H

#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"

struct relay;

struct relay_stats {
	uint64_t a_to_b;
	uint64_t b_to_a;
	int error; /* errno of the failure that ended it, 0 for a clean finish or idle timeout */
	bool idle_timeout;
};

/* Called once when the relay has ended (both directions finished, an error, an idle timeout,
 * or relay_close). Both descriptors are closed by then. */
typedef void (*relay_done_fn)(void *data, const struct relay_stats *stats);

struct relay_opts {
	uint64_t idle_timeout_ms; /* 0: none */
	/* Bytes to send to b (resp. a) before anything read from a (resp. b), e.g. a rewritten
	 * request head; copied. */
	const void *prefill_b;
	size_t prefill_b_len;
	const void *prefill_a;
	size_t prefill_a_len;
};

/* Takes ownership of fd_a and fd_b (non-blocking sockets), even on failure. */
int relay_start(struct loop *l, int fd_a, int fd_b, const struct relay_opts *opts, relay_done_fn done,
		void *data, struct relay **out, struct err *err);
/* Ends the relay now; done is called. */
void relay_close(struct relay *r);

/* Pipes kept for reuse, and pipes in use, across all relays of this process. */
void relay_pool_stats(unsigned *cached, unsigned *in_use);

#endif
