/*
 * Accepting connections in the event loop, with the two limits every server here needs. Runs in
 * odyn, enclaver-run and kms-local; the peers are not trusted to be few or to go away.
 *
 * - A cap on live connections: past it a new connection is accepted and closed at once (its
 *   peer learns at once, the backlog does not fill), and the log says so once per episode.
 * - Back-off when descriptors or memory run out (EMFILE, ENFILE, ENOBUFS, ENOMEM): a listener
 *   is level-triggered, so a failing accept() would wake the loop again at once and spin a
 *   core. The listener leaves the loop until a counted connection ends or ACCEPT_BACKOFF_MS
 *   pass, and the log says so once per episode.
 */
#ifndef ENCLAVER_NET_ACCEPT_H
#define ENCLAVER_NET_ACCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"

#define ACCEPT_BACKOFF_MS 100

struct acceptor;

/* Takes a new connection (non-blocking, close-on-exec); it counts as live until the owner
 * calls acceptor_release, which it must do however the connection ends, also when fn itself
 * gives up on it. */
typedef void (*acceptor_fn)(struct acceptor *a, int fd);

struct acceptor {
	struct loop *loop;
	struct loop_io io;
	struct loop_timer retry;
	const char *name;
	acceptor_fn fn;
	void *data;
	size_t live, max;
	bool paused, said_full, said_starved;
	bool tcp; /* the listener is TCP: accepted sockets get TCP_NODELAY */
	unsigned long refused;
};

/* Watches the listener lfd, taken over even on failure (closed by acceptor_stop, or at once
 * when this fails); lfd < 0 is a failure its maker has reported in err. max 0: no cap, nothing is
 * counted, and acceptor_release only resumes a paused listener early. name: for the log
 * ("ingress port 8080"), kept by reference. */
int acceptor_start(struct loop *l, struct acceptor *a, int lfd, const char *name, size_t max, acceptor_fn fn,
		   void *data, struct err *err);
void acceptor_stop(struct acceptor *a);
/* A non-blocking socket of type (SOCK_STREAM: listening, backlog deep) bound to the loopback
 * address of af (127.0.0.1, or ::1 with IPv6 only), what naming it in errors. err->code is
 * EAFNOSUPPORT or EADDRNOTAVAIL when the kernel has no such loopback. */
int loopback_socket(int af, int type, uint16_t port, int backlog, const char *what, struct err *err);
/* A connection fn took has ended. */
void acceptor_release(struct acceptor *a);

#endif
