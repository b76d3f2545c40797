/*
 * odyn's internal API (spec/enclaver-compat.md §5.8): POST /v1/attestation on the enclave's
 * loopback, for the app. Requests come from the app; NSM failures are answered with an HTTP
 * error (upstream drops the connection).
 */
#ifndef ENCLAVER_ENCLAVE_API_H
#define ENCLAVER_ENCLAVE_API_H

#include <stdint.h>

#include "base/err.h"
#include "net/loop.h"

struct api;

int api_start(struct loop *l, uint16_t port, struct api **out, struct err *err);
void api_stop(struct api *a);

#endif
