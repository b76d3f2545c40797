/*
 * cpio "newc" archives as nitro-cli's linuxkit (surma/gocpio) writes them (spec/nitro.md §2.2),
 * and a reader that extracts them without letting any entry escape the extraction root.
 */
#ifndef ENCLAVER_EIF_CPIO_H
#define ENCLAVER_EIF_CPIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"

#define CPIO_FIRST_INO 721
#define CPIO_LINUXKIT_MTIME 1492533000u /* 2017-04-18T16:30:00Z, linuxkit's defaultModTime */
#define CPIO_NAME_MAX 4096

struct cpio_entry {
	const char *name; /* no leading "/" or "./" */
	uint32_t mode;    /* st_mode: file type bits | permission bits */
	uint32_t uid;
	uint32_t gid;
	uint32_t mtime;
	uint64_t size; /* data bytes: file contents, or the symlink target's length */
	uint32_t rdevmajor;
	uint32_t rdevminor;
	/* Hard links (regular files): entries with nlink >= 2 and the same ino are one file. The
	 * first creates it; later ones become links to it, and their data (if any) is written into
	 * it, as the kernel's initramfs unpacker does. Writing: 0 for the defaults (a new ino; nlink
	 * 2 for folders, 1 otherwise). */
	uint32_t nlink;
	uint32_t ino;
};

/* Receives the archive bytes in order. */
typedef int (*cpio_sink_fn)(void *ctx, const void *data, size_t len, struct err *err);
/* Gives back len bytes the sink received, from archive offset off (for hard links). */
typedef int (*cpio_read_back_fn)(void *ctx, uint64_t off, void *data, size_t len, struct err *err);

struct cpio_writer {
	cpio_sink_fn sink;
	cpio_read_back_fn read_back; /* NULL: hard links are written as symlinks */
	void *ctx;
	uint64_t offset;
	uint32_t ino;
	uint64_t pending; /* data bytes still owed by the current entry */
};

void cpio_writer_init(struct cpio_writer *w, cpio_sink_fn sink, void *ctx);
/* The ino the next entry written with e->ino == 0 gets. */
uint32_t cpio_next_ino(const struct cpio_writer *w);
/* Starts an entry; its e->size data bytes follow through cpio_write_data. */
int cpio_write_header(struct cpio_writer *w, const struct cpio_entry *e, struct err *err);
int cpio_write_data(struct cpio_writer *w, const void *data, size_t len, struct err *err);
/* Header plus in-memory data of e->size bytes. */
int cpio_add(struct cpio_writer *w, const struct cpio_entry *e, const void *data, struct err *err);
/* Writes TRAILER!!! and pads the archive to a multiple of 512 bytes. */
int cpio_finish(struct cpio_writer *w, struct err *err);

/* Supplies archive bytes; returns bytes read (0 at end) or -1. */
typedef ssize_t (*cpio_source_fn)(void *ctx, void *data, size_t len);

/* Passes over len bytes without reading them; returns 0, or -1 when the source is shorter. */
typedef int (*cpio_skip_fn)(void *ctx, uint64_t len);

struct cpio_reader {
	cpio_source_fn source;
	cpio_skip_fn skip; /* optional: data not wanted is read and dropped without it */
	void *ctx;
	uint64_t offset;
	uint64_t remaining; /* data bytes of the current entry not yet consumed */
	uint32_t pad;       /* alignment bytes after the current entry's data */
	char name[CPIO_NAME_MAX + 1];
};

void cpio_reader_init(struct cpio_reader *r, cpio_source_fn source, void *ctx);
/* Reads the next header into e (e->name points into r). Returns 1, 0 at the trailer, -1 on error.
 * Unread data of the previous entry is skipped. */
int cpio_next(struct cpio_reader *r, struct cpio_entry *e, struct err *err);
/* Reads up to len bytes of the current entry's data; returns bytes read, 0 at its end, -1. */
ssize_t cpio_read_data(struct cpio_reader *r, void *data, size_t len, struct err *err);

/* True when name is relative and has no ".." component. */
bool cpio_name_safe(const char *name);

#define CPIO_EXTRACT_OWNER 1 /* give entries their recorded uid/gid */

/* Extracts the archive under root (an existing directory). Refuses absolute names, "..", and
 * paths through symlinks; device nodes are skipped when not permitted. */
int cpio_extract(cpio_source_fn source, void *ctx, const char *root, unsigned flags, struct err *err);
int cpio_extract_fd(int fd, const char *root, struct err *err);

#endif
