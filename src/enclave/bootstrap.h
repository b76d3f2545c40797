/* odyn's bootstrap (spec/enclaver-compat.md §5.2 step 4): loopback up, entropy from the NSM. */
#ifndef ENCLAVER_ENCLAVE_BOOTSTRAP_H
#define ENCLAVER_ENCLAVE_BOOTSTRAP_H

#include "base/err.h"

/* Sets the loopback interface (ifindex 1) up over rtnetlink; the kernel adds 127.0.0.1/8. */
int bootstrap_loopback_up(struct err *err);
/* Routes every address of family (AF_INET or AF_INET6) out through lo, where the transparent
 * egress rules take it; IPv4 leaves from 127.0.0.1. */
int bootstrap_default_route(int family, struct err *err);
/* Writes NSM GetRandom bytes into /dev/random when an NSM is present; 1 when skipped. */
int bootstrap_seed_entropy(struct err *err);

#endif
