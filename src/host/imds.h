/*
 * The local enclave's IMDSv2 stand-in, served by enclaver-run on a Unix socket only root may
 * connect to (the role's credentials are the enclave's, not every local user's), and reached
 * by the enclave at 169.254.169.254:80 through the egress route table: session tokens,
 * the region, the instance id, and role credentials derived from the local KMS credentials in
 * the state folder, expiring (ENCLAVER_IMDS_CREDENTIAL_SECONDS, default 3600) so that clients
 * refresh them. Requests come from inside the enclave. Not active on Nitro.
 */
#ifndef ENCLAVER_HOST_IMDS_H
#define ENCLAVER_HOST_IMDS_H

#include <stdint.h>

#include "base/err.h"
#include "host/local_creds.h"
#include "net/loop.h"

struct imds;

/* Serves on the Unix socket path (mode 0600). */
int imds_start(struct loop *l, const struct local_master *m, const char *instance_id, const char *path,
	       struct imds **out, struct err *err);
const char *imds_region(const struct imds *i);
void imds_stop(struct imds *i);

#endif
