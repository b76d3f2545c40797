/*
 * CRC-32 by folding with carry-less multiplication (Gopal et al., "Fast CRC Computation for
 * Generic Polynomials Using PCLMULQDQ", Intel 2009), bit-reflected constants for the zlib
 * polynomial 0xEDB88320; zlib finishes the bytes that do not fill a 16-byte block. Checked
 * against zlib in tests/unit/test_crc32.c.
 */
#include "base/crc32.h"

#include <zlib.h>

#if defined(__x86_64__)
#include <immintrin.h>

/* x^(4*128+64) mod P, x^(4*128) mod P: fold 512 bits at a time */
static const uint64_t k_fold512[2] __attribute__((aligned(16))) = { 0x154442bd4ull, 0x1c6e41596ull };
/* x^(128+64) mod P, x^128 mod P: fold 128 bits at a time */
static const uint64_t k_fold128[2] __attribute__((aligned(16))) = { 0x1751997d0ull, 0x0ccaa009eull };
/* x^64 mod P: 128 -> 64 bits */
static const uint64_t k_fold64[2] __attribute__((aligned(16))) = { 0x163cd6124ull, 0 };
/* P(x) and the Barrett constant floor(x^64 / P(x)), both reflected */
static const uint64_t k_barrett[2] __attribute__((aligned(16))) = { 0x1db710641ull, 0x1f7011641ull };

static inline __attribute__((target("pclmul,sse4.1"))) __m128i fold(__m128i acc, __m128i k, __m128i next)
{
	return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(acc, k, 0x00), _mm_clmulepi64_si128(acc, k, 0x11)),
			     next);
}

/* len is a multiple of 16 and at least 64; crc is the raw (pre-inverted) register. */
static __attribute__((target("pclmul,sse4.1"))) uint32_t crc_clmul(uint32_t crc, const uint8_t *p, size_t len)
{
	__m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)crc));
	__m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i c = _mm_loadu_si128((const __m128i *)(p + 32));
	__m128i d = _mm_loadu_si128((const __m128i *)(p + 48));
	__m128i k = _mm_load_si128((const __m128i *)k_fold512), lo32, t;

	for (p += 64, len -= 64; len >= 64; p += 64, len -= 64) {
		a = fold(a, k, _mm_loadu_si128((const __m128i *)p));
		b = fold(b, k, _mm_loadu_si128((const __m128i *)(p + 16)));
		c = fold(c, k, _mm_loadu_si128((const __m128i *)(p + 32)));
		d = fold(d, k, _mm_loadu_si128((const __m128i *)(p + 48)));
	}
	k = _mm_load_si128((const __m128i *)k_fold128);
	a = fold(a, k, b);
	a = fold(a, k, c);
	a = fold(a, k, d);
	for (; len >= 16; p += 16, len -= 16)
		a = fold(a, k, _mm_loadu_si128((const __m128i *)p));
	/* 128 -> 96 -> 64 bits */
	lo32 = _mm_setr_epi32(~0, 0, ~0, 0);
	t = _mm_clmulepi64_si128(a, k, 0x10);
	a = _mm_xor_si128(_mm_srli_si128(a, 8), t);
	k = _mm_loadl_epi64((const __m128i *)k_fold64);
	t = _mm_srli_si128(a, 4);
	a = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(a, lo32), k, 0x00), t);
	/* Barrett reduction to 32 bits */
	k = _mm_load_si128((const __m128i *)k_barrett);
	t = _mm_clmulepi64_si128(_mm_and_si128(a, lo32), k, 0x10);
	t = _mm_clmulepi64_si128(_mm_and_si128(t, lo32), k, 0x00);
	return (uint32_t)_mm_extract_epi32(_mm_xor_si128(a, t), 1);
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
	static int have = -1;
	const uint8_t *p = data;

	if (have < 0)
		have = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
	if (have && len >= 64) {
		size_t n = len & ~(size_t)15;

		crc = ~crc_clmul(~crc, p, n);
		p += n;
		len -= n;
	}
	return (uint32_t)crc32_z(crc, p, len);
}
#else
uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
	return (uint32_t)crc32_z(crc, data, len);
}
#endif
