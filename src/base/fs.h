/* File helpers: bounded reads, full writes, and atomic replacement (temp file + rename). */
#ifndef ENCLAVER_BASE_FS_H
#define ENCLAVER_BASE_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/buf.h"
#include "base/err.h"

/* Reads a whole file ("-" is stdin) into out, failing if it is larger than max bytes. */
int fs_read_file(const char *path, size_t max, struct buf *out, struct err *err);
/* The same for a regular file only: a symbolic link (in the last component), a FIFO or a device
 * is an error. */
int fs_read_regular(const char *path, size_t max, struct buf *out, struct err *err);
/* read() until len bytes or EOF; returns bytes read or -1. Retries EINTR. */
ssize_t fs_read_full(int fd, void *data, size_t len);
int fs_write_full(int fd, const void *data, size_t len);
int fs_pwrite_full(int fd, const void *data, size_t len, off_t off);
/* Copies len bytes of in from offset off to out's current position. */
int fs_copy_range(int in, uint64_t off, uint64_t len, int out, struct err *err);

/* An output file that appears at its final path only when committed. */
struct atomic_file {
	int fd;
	char *path;
	char *tmp;
	int partial; /* fs_partial_add's handle, 0 when none */
};

int atomic_file_open(struct atomic_file *af, const char *path, mode_t mode, struct err *err);
/* fsyncs, renames over path. Closes fd either way. */
int atomic_file_commit(struct atomic_file *af, struct err *err);
/* Removes the temporary file; safe after commit or on a never-opened struct zeroed with fd = -1. */
void atomic_file_abort(struct atomic_file *af);
/* Writes data to path atomically. */
int fs_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, struct err *err);

/* Partial outputs (temporary files and folders) that an interrupted command must not leave:
 * after fs_cleanup_on_signals, SIGINT, SIGTERM or SIGHUP remove every one still registered
 * (folders with what is in them), then end the process as the signal would. Returns a handle
 * (> 0), or 0 when all slots are taken (the path is then not cleaned up). */
int fs_partial_add(const char *path);
void fs_partial_remove(int handle);
void fs_cleanup_on_signals(void);

/* Removes path and everything below it, never following symlinks. */
int fs_remove_tree(const char *path, struct err *err);

/* The path of name in the folder of the running program (/proc/self/exe); "" when unknown. */
void fs_beside_self(const char *name, char *out, size_t size);

/* Makes path and its missing parents (parents 0755, path itself mode). */
int fs_mkdir_p(const char *path, mode_t mode, struct err *err);
/* Where large temporary files go: $TMPDIR, else /var/tmp (on disk, unlike a tmpfs /tmp). */
const char *fs_tmp_dir(void);
/* Mount options giving a tmpfs mounted on folder path the folder's own mode and owner, as a
 * container runtime leaves it ("mode=1777" when path is no folder): out holds 64 bytes. */
void fs_tmpfs_like(const char *path, char *out, size_t size);

/* The directory part of path ("." when there is none); caller frees. */
char *fs_dirname(const char *path);
/* Joins dir and rel unless rel is absolute; caller frees. */
char *fs_join(const char *dir, const char *rel);

#endif
