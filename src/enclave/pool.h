/*
 * The synthetic address pool of transparent egress (spec/transparent-egress.md §2.3): each
 * allowed name the resolver answers gets an IPv4 address of its own from a private range, fixed
 * for the enclave's life, so that a connection to that address can be mapped back to the name
 * and judged by name. Runs in odyn; names come from the app and are bounded in number and size.
 */
#ifndef ENCLAVER_ENCLAVE_POOL_H
#define ENCLAVER_ENCLAVE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Names held at most, whatever the range's size: a hostile app asking for a million names
 * under an allowed wildcard costs odyn no more than this many (about 20 MiB at worst). */
#define POOL_MAX_NAMES 65536

struct pool;

/* cidr: as manifest_pool_parse takes it. */
int pool_new(const char *cidr, struct pool **out, struct err *err);
void pool_free(struct pool *p);

/* The address of name (lower case, no final dot), given one on first use. addr: network order.
 * -1 when the pool is full. */
int pool_addr_for(struct pool *p, const char *name, uint32_t *addr);
/* The name an address was given, or NULL; addr in network order. */
const char *pool_name_of(const struct pool *p, uint32_t addr);
bool pool_contains(const struct pool *p, uint32_t addr);
size_t pool_size(const struct pool *p);

#endif
