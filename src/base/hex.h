/* Lower-case hex encoding and strict decoding. */
#ifndef ENCLAVER_BASE_HEX_H
#define ENCLAVER_BASE_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*len hex digits and a NUL into out (size >= 2*len+1). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly strlen(in)/2 bytes; returns bytes written or -1 on bad input or overflow. */
long hex_decode(const char *in, uint8_t *out, size_t cap);

#endif
