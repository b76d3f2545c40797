/* Lower-case hex and base64 encoding, strict decoding. */
#ifndef ENCLAVER_BASE_HEX_H
#define ENCLAVER_BASE_HEX_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* Writes 2*len hex digits and a NUL into out (size >= 2*len+1). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly strlen(in)/2 bytes; returns bytes written or -1 on bad input or overflow. */
long hex_decode(const char *in, uint8_t *out, size_t cap);

/* Standard base64 with padding. */
void b64_encode(const uint8_t *in, size_t len, struct buf *out);
/* Strict: length a multiple of 4, padding only at the end, no other characters. Appends to out;
 * returns the bytes decoded or -1 (out unchanged). */
long b64_decode(const char *in, size_t len, struct buf *out);

#endif
