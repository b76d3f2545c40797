/* Open-addressing string set (FNV-1a, linear probing). */
#include "image/pathset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

void pathset_init(struct pathset *s)
{
	s->cap = 1024;
	s->n = 0;
	s->slots = calloc(s->cap, sizeof(*s->slots));
	if (!s->slots)
		abort();
}

void pathset_clear(struct pathset *s)
{
	for (size_t i = 0; i < s->cap; i++) {
		free(s->slots[i]);
		s->slots[i] = NULL;
	}
	s->n = 0;
}

void pathset_free(struct pathset *s)
{
	if (!s->slots)
		return;
	pathset_clear(s);
	free(s->slots);
	s->slots = NULL;
}

static size_t find(const struct pathset *s, const char *path)
{
	size_t i = (size_t)(hash(path) & (s->cap - 1));

	while (s->slots[i] && strcmp(s->slots[i], path) != 0)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static void grow(struct pathset *s)
{
	struct pathset bigger = { calloc(s->cap * 2, sizeof(char *)), s->cap * 2, 0 };

	if (!bigger.slots)
		abort();
	for (size_t i = 0; i < s->cap; i++)
		if (s->slots[i]) {
			bigger.slots[find(&bigger, s->slots[i])] = s->slots[i];
			bigger.n++;
		}
	free(s->slots);
	*s = bigger;
}

bool pathset_add(struct pathset *s, const char *path)
{
	size_t i;

	if (2 * (s->n + 1) > s->cap)
		grow(s);
	i = find(s, path);
	if (s->slots[i])
		return false;
	s->slots[i] = strdup(path);
	if (!s->slots[i])
		abort();
	s->n++;
	return true;
}

bool pathset_has(const struct pathset *s, const char *path)
{
	return s->slots[find(s, path)] != NULL;
}

void pathset_merge(struct pathset *dst, const struct pathset *src)
{
	for (size_t i = 0; i < src->cap; i++)
		if (src->slots[i])
			pathset_add(dst, src->slots[i]);
}
