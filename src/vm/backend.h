/*
 * The VM enclave's vsock back-end as a process: `enclaver-run vhost-vsock`, started by the VM
 * launcher with the vhost-user listener already bound, serving one QEMU until it goes. It parses
 * what the guest writes into its memory, so it runs apart from enclaver-run (no credentials, no
 * state but the vsock folder) and dies with its parent.
 */
#ifndef ENCLAVER_VM_BACKEND_H
#define ENCLAVER_VM_BACKEND_H

#define VM_BACKEND_CMD "vhost-vsock"

/* argv: vhost-vsock --listen-fd N --vsock-dir DIR --cid CID [--port P]... */
int vm_backend_main(int argc, char **argv);

#endif
