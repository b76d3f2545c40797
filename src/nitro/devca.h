/*
 * The local development CA that signs the NSM emulator's attestation documents: a root and an
 * intermediate kept in the user's state folder (made on first use, keys mode 0600), and
 * short-lived leaf keys made in memory, as AWS's NSM makes them. Its names say it is not AWS;
 * nothing that trusts AWS's root accepts it. Runs in enclaver-run (local launcher) and the CLI.
 */
#ifndef ENCLAVER_NITRO_DEVCA_H
#define ENCLAVER_NITRO_DEVCA_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

#include "base/buf.h"
#include "base/err.h"

#define DEVCA_LEAF_SECONDS (3 * 3600)  /* as AWS's leaf certificates */
#define DEVCA_LEAF_ROTATE_SECONDS 600  /* a new leaf every ten minutes */

struct devca {
	X509 *root, *inter, *leaf;
	EVP_PKEY *inter_key, *leaf_key;
	struct buf root_der, inter_der, leaf_der;
	time_t leaf_made;
	char dir[4096];
};

/* $ENCLAVER_STATE_DIR, else $XDG_DATA_HOME/enclaver, else $HOME/.local/share/enclaver. */
void devca_state_dir(char *out, size_t size);
/* Loads the CA from <state>/dev-ca, making it first when absent (under a lock, atomically). */
int devca_open(const char *state_dir, struct devca **out, struct err *err);
void devca_free(struct devca *ca);
/* A leaf valid now for at least DEVCA_LEAF_SECONDS - DEVCA_LEAF_ROTATE_SECONDS: reissued
 * when older than the rotation period. */
int devca_leaf(struct devca *ca, const char *module_id, time_t now, struct err *err);
/* A TLS server certificate from the intermediate for the given DNS names (and 127.0.0.1), valid
 * for `days`, with a fresh P-256 key: the local AWS stand-ins' HTTPS, which local enclaves
 * trust through the development root. Both out-parameters are the caller's to free. */
int devca_tls_server(struct devca *ca, const char *const *dns, size_t n_dns, int days, X509 **cert, EVP_PKEY **key,
		     struct err *err);

/* Path of the root certificate (PEM), for `enclaver attest verify --root`. */
void devca_root_path(const char *state_dir, char *out, size_t size);

#endif
