/* Cleanup helpers and ownership transfer. Header only; used by every process. */
#ifndef ENCLAVER_BASE_MEM_H
#define ENCLAVER_BASE_MEM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void mem_freep(void *p)
{
	free(*(void **)p);
}

static inline void mem_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static inline void mem_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define autofree __attribute__((cleanup(mem_freep)))
#define autoclose __attribute__((cleanup(mem_closep)))
#define autofclose __attribute__((cleanup(mem_fclosep)))

/* Hands ownership to the caller: `*out = steal_pointer(&x);` leaves x NULL. */
static inline void *steal_pointer_impl(void *pp)
{
	void **p = (void **)pp;
	void *v = *p;

	*p = NULL;
	return v;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))steal_pointer_impl(pp))

static inline int steal_fd(int *fd)
{
	int v = *fd;

	*fd = -1;
	return v;
}

/* Wipes then frees: for buffers that held keys, plaintext or credentials. */
static inline void mem_free_secret(void *p, size_t len)
{
	if (p) {
		explicit_bzero(p, len);
		free(p);
	}
}

#endif
