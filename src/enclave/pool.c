/*
 * Names are given addresses in the order they are first asked for, from the range's second
 * address on; an open-addressed hash finds a name's address, an array an address's name.
 * Nothing is ever taken back, which is what keeps an address naming one name only.
 */
#include "enclave/pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"

struct pool {
	uint32_t base; /* host order */
	uint32_t prefix;
	size_t cap;	/* names it can hold */
	size_t n;	/* names given; name i has base + 1 + i */
	char **names;	/* by index */
	uint32_t *slots; /* hash slots: index + 1, 0 empty; 2 * cap of them */
	size_t n_slots;
};

int pool_new(const char *cidr, struct pool **out, struct err *err)
{
	struct pool *p = calloc(1, sizeof(*p));
	size_t span;

	if (!p)
		abort();
	if (manifest_pool_parse(cidr, &p->base, &p->prefix, err) < 0) {
		free(p);
		return -1;
	}
	span = (size_t)1 << (32 - p->prefix);
	p->cap = span - 2; /* not the range's first and last address */
	if (p->cap > POOL_MAX_NAMES)
		p->cap = POOL_MAX_NAMES;
	p->n_slots = 2 * p->cap;
	p->names = calloc(p->cap, sizeof(*p->names));
	p->slots = calloc(p->n_slots, sizeof(*p->slots));
	if (!p->names || !p->slots)
		abort();
	*out = p;
	return 0;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->names[i]);
	free(p->names);
	free(p->slots);
	free(p);
}

static size_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return (size_t)h;
}

int pool_addr_for(struct pool *p, const char *name, uint32_t *addr)
{
	size_t i = hash(name) % p->n_slots;

	/* the table is at most half full, so the probe ends */
	for (; p->slots[i]; i = (i + 1) % p->n_slots) {
		size_t idx = p->slots[i] - 1;

		if (!strcmp(p->names[idx], name)) {
			*addr = htonl(p->base + 1 + (uint32_t)idx);
			return 0;
		}
	}
	if (p->n == p->cap)
		return -1;
	p->names[p->n] = strdup(name);
	if (!p->names[p->n])
		abort();
	p->slots[i] = (uint32_t)(p->n + 1);
	*addr = htonl(p->base + 1 + (uint32_t)p->n);
	p->n++;
	return 0;
}

bool pool_contains(const struct pool *p, uint32_t addr)
{
	return (ntohl(addr) >> (32 - p->prefix)) == (p->base >> (32 - p->prefix));
}

const char *pool_name_of(const struct pool *p, uint32_t addr)
{
	uint32_t h = ntohl(addr);

	if (!pool_contains(p, addr) || h <= p->base || h - p->base - 1 >= p->n)
		return NULL;
	return p->names[h - p->base - 1];
}

size_t pool_size(const struct pool *p)
{
	return p->n;
}
