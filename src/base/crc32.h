/* CRC-32/ISO-HDLC (zlib's crc32), carry-less-multiply accelerated where the CPU has PCLMULQDQ. */
#ifndef ENCLAVER_BASE_CRC32_H
#define ENCLAVER_BASE_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Same contract as zlib's crc32_z: crc32_update(0, NULL, 0) is the initial value. */
uint32_t crc32_update(uint32_t crc, const void *data, size_t len);

#endif
