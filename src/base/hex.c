/* Hex encoding. */
#include "base/hex.h"

#include <string.h>

void hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = 0;
}

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long hex_decode(const char *in, uint8_t *out, size_t cap)
{
	size_t n = strlen(in);

	if (n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_nibble(in[2 * i]), lo = hex_nibble(in[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (long)(n / 2);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void b64_encode(const uint8_t *in, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < len ? in[i + 2] : 0);
		char q[4] = { B64[v >> 18 & 63], B64[v >> 12 & 63], i + 1 < len ? B64[v >> 6 & 63] : '=',
			      i + 2 < len ? B64[v & 63] : '=' };

		buf_append(out, q, 4);
	}
}

static int b64_value(char c)
{
	const char *p = c ? strchr(B64, c) : NULL;

	return p ? (int)(p - B64) : -1;
}

long b64_decode(const char *in, size_t len, struct buf *out)
{
	size_t start = out->len;

	if (len % 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;

		for (int k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad) /* data after padding */
				goto bad;
			v[k] = b64_value(in[i + k]);
			if (v[k] < 0)
				goto bad;
		}
		{
			uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];

			buf_append_byte(out, (uint8_t)(w >> 16));
			if (pad < 2)
				buf_append_byte(out, (uint8_t)(w >> 8));
			if (pad < 1)
				buf_append_byte(out, (uint8_t)w);
		}
	}
	return (long)(out->len - start);
bad:
	out->len = start;
	return -1;
}
