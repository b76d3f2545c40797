/*
 * Non-blocking name resolution with c-ares inside the event loop. Used by enclaver-run, which
 * is static and must not call NSS (getaddrinfo): c-ares reads /etc/hosts and /etc/resolv.conf.
 */
#ifndef ENCLAVER_NET_DNS_H
#define ENCLAVER_NET_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/err.h"
#include "net/loop.h"

#define DNS_MAX_ADDRS 16

struct dns;

struct dns_result {
	int status; /* 0, or an errno-style code */
	const char *error;
	struct sockaddr_storage addrs[DNS_MAX_ADDRS];
	socklen_t lens[DNS_MAX_ADDRS];
	size_t n;
};

typedef void (*dns_fn)(void *data, const struct dns_result *res);

int dns_new(struct loop *l, struct dns **out, struct err *err);
void dns_free(struct dns *d);
/* Resolves host (a name or an IP literal) for TCP port; fn runs once, maybe before this returns. */
void dns_resolve(struct dns *d, const char *host, uint16_t port, dns_fn fn, void *data);

#endif
