/*
 * The egress tunnel's frames (spec/enclaver-compat.md §5.5): a u16 little-endian length, then
 * JSON. odyn sends {"host": H, "port": P}; the host answers "Ok" (the raw stream follows) or
 * {"Err": {"os_code": N, "message": S}}. Parsed by the host from the enclave, which it does not
 * trust, and by odyn from the host.
 */
#ifndef ENCLAVER_NET_TUNNEL_H
#define ENCLAVER_NET_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

#define TUNNEL_MAX_FRAME 65535
#define TUNNEL_MAX_HOST 255
/* The longest request frame's payload: {"host": H, "port": P} with a 255-byte host, every byte
 * of it escaped as \uXXXX, fits; the host holds no more than this per pending request. */
#define TUNNEL_MAX_REQUEST 2048
/* The longest reply frame odyn reads: "Ok", or an Err with an OS error's message. */
#define TUNNEL_MAX_REPLY 4096

/* Appends a whole frame (length prefix included). */
int tunnel_put_request(struct buf *out, const char *host, uint16_t port, struct err *err);
void tunnel_put_ok(struct buf *out);
void tunnel_put_err(struct buf *out, int os_code, const char *message);

/* Parse a frame's JSON payload (without the length prefix). host: caller frees. */
int tunnel_parse_request(const uint8_t *json, size_t len, char **host, uint16_t *port, struct err *err);
/* Returns 0 for "Ok"; 1 for an Err reply, with *os_code and *message (caller frees) set. */
int tunnel_parse_reply(const uint8_t *json, size_t len, int *os_code, char **message, struct err *err);

/* Reads what is missing of one frame from a non-blocking fd into frame (2 + max bytes), *got
 * counting the bytes so far; never reads past the frame, whatever follows it being the
 * tunnelled stream. Returns 1 when the frame is whole (payload at frame + 2, *got - 2 bytes),
 * 0 when the fd would block, -1 on EOF, error, or a frame longer than max. */
int tunnel_frame_recv(int fd, uint8_t *frame, size_t max, size_t *got);

/* Reads one frame from a blocking fd, reading no byte past it. payload: caller frees. */
int tunnel_read_frame(int fd, uint8_t **payload, size_t *len, int timeout_ms, struct err *err);

#endif
