/*
 * Transparent egress's packet rules (spec/transparent-egress.md §2): the legacy iptables nat and
 * filter tables, written from C through the xtables socket options, as iptables-legacy-restore
 * writes them. Runs in odyn, root of the enclave, before the app starts.
 */
#ifndef ENCLAVER_ENCLAVE_NETRULES_H
#define ENCLAVER_ENCLAVE_NETRULES_H

#include <stdint.h>

#include "base/err.h"

/*
 * Replaces the nat and filter tables of family (AF_INET or AF_INET6) with:
 *   nat OUTPUT:    -d loopback ACCEPT; udp/tcp dport 53 REDIRECT dns_port; tcp REDIRECT tcp_port
 *   filter OUTPUT: -o lo -d loopback ACCEPT; tcp REJECT tcp-reset; REJECT
 * so every TCP connection to a far address lands on tcp_port, DNS on dns_port, and anything
 * else fails at once. On failure the message names the kernel module that is missing when it
 * can tell; err->code is EAFNOSUPPORT when the kernel has no such family at all.
 */
int netrules_install(int family, uint16_t dns_port, uint16_t tcp_port, struct err *err);

/* Loads the boot kit's netfilter modules, in name order, when the enclave's init left them at
 * BOOTKIT_NET_MODULES_RUN (a distribution kernel that has them as modules); 0 when there are
 * none there, or they are loaded already. */
int netrules_load_kit_modules(struct err *err);

#endif
