/* Boot kits: the bootstrap ramdisk (Ramdisk #0) exactly as nitro-cli's linuxkit writes it. */
#ifndef ENCLAVER_EIF_BOOTKIT_H
#define ENCLAVER_EIF_BOOTKIT_H

#include "base/err.h"
#include "eif/cpio.h"

/* Where enclaver-init finds the kernel modules it loads before anything else. */
#define BOOTKIT_MODULES_DIR "enclaver-modules"
/* A kit's modules for transparent egress (netfilter), in a subfolder of its modules: loaded only
 * by an enclave that uses them, so that the others do not boot slower. enclaver-init leaves them
 * (read-only, root's) at BOOTKIT_NET_MODULES_RUN in the enclave, where odyn loads them. */
#define BOOTKIT_NET_SUBDIR "net"
#define BOOTKIT_NET_MODULES_RUN "/run/enclaver/modules"

/* Writes dev/ (0755 dir), init (0755) and, when nsm_path is given, nsm.ko (0755), then the
 * trailer: cpio[dev, init, nsm.ko] 512-padded, mtime 1492533000, uid/gid 0. With modules_dir
 * (a kernel's boot kit whose virtio and vsock drivers are modules) its *.ko files follow in
 * enclaver-modules/, in name order, which enclaver-init loads in that order; the *.ko files of
 * its net/ subfolder, when there is one, in enclaver-modules/net/. */
int bootkit_write_bootstrap(struct cpio_writer *w, const char *init_path, const char *nsm_path,
			    const char *modules_dir, struct err *err);
/* The same into a file, atomically. */
int bootkit_bootstrap_file(const char *init_path, const char *nsm_path, const char *modules_dir,
			   const char *out_path, struct err *err);

#endif
