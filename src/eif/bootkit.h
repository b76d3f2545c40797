/* Boot kits: the bootstrap ramdisk (Ramdisk #0) exactly as nitro-cli's linuxkit writes it. */
#ifndef ENCLAVER_EIF_BOOTKIT_H
#define ENCLAVER_EIF_BOOTKIT_H

#include "base/err.h"
#include "eif/cpio.h"

/* Writes dev/ (0755 dir), init (0755) and, when nsm_path is given, nsm.ko (0755), then the
 * trailer: cpio[dev, init, nsm.ko] 512-padded, mtime 1492533000, uid/gid 0. */
int bootkit_write_bootstrap(struct cpio_writer *w, const char *init_path, const char *nsm_path,
			    struct err *err);
/* The same into a file, atomically. */
int bootkit_bootstrap_file(const char *init_path, const char *nsm_path, const char *out_path,
			   struct err *err);

#endif
