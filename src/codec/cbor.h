/*
 * Strict CBOR (RFC 8949) codec for NSM requests, attestation documents and EIF signatures.
 * The decoder trusts nothing: it rejects trailing bytes, indefinite lengths, non-minimal
 * heads, lengths past the input, invalid UTF-8, floats, and nesting deeper than a limit.
 */
#ifndef ENCLAVER_CODEC_CBOR_H
#define ENCLAVER_CODEC_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

enum cbor_type {
	CBOR_UINT,   /* value in u */
	CBOR_NINT,   /* value is -1 - u */
	CBOR_BYTES,  /* data, len */
	CBOR_TEXT,   /* data, len (UTF-8, not NUL-terminated) */
	CBOR_ARRAY,  /* items[0..count) */
	CBOR_MAP,    /* items[0..2*count): key, value, key, value ... */
	CBOR_TAG,    /* tag number in u, tagged item in items[0] */
	CBOR_SIMPLE, /* u: 20 false, 21 true, 22 null, 23 undefined, other simple values */
};

enum { CBOR_FALSE = 20, CBOR_TRUE = 21, CBOR_NULL = 22, CBOR_UNDEFINED = 23 };

struct cbor_item {
	enum cbor_type type;
	uint64_t u;
	const uint8_t *data; /* points into the decoded input: the input must outlive the tree */
	size_t len;
	struct cbor_item *items;
	size_t count;
	const uint8_t *raw; /* the item's whole encoding inside the input */
	size_t raw_len;
};

#define CBOR_DEFAULT_MAX_DEPTH 16

/* Decodes exactly one item spanning all of [data, data+len). Free with cbor_free. */
int cbor_decode(const uint8_t *data, size_t len, unsigned max_depth, struct cbor_item **out,
		struct err *err);
void cbor_free(struct cbor_item *item);

/* Lookups; NULL when absent or of another type. */
const struct cbor_item *cbor_map_get(const struct cbor_item *map, const char *key);
const struct cbor_item *cbor_map_get_uint(const struct cbor_item *map, uint64_t key);
bool cbor_is_text(const struct cbor_item *it, const char *s);
bool cbor_is_null(const struct cbor_item *it);

/* Encoder: minimal-length heads (canonical). Map key order is the caller's. */
void cbor_put_head(struct buf *b, unsigned major, uint64_t v);
void cbor_put_uint(struct buf *b, uint64_t v);
void cbor_put_int(struct buf *b, int64_t v);
void cbor_put_bytes(struct buf *b, const void *data, size_t len);
void cbor_put_text(struct buf *b, const char *s);
void cbor_put_textn(struct buf *b, const char *s, size_t len);
void cbor_put_array(struct buf *b, size_t count);
void cbor_put_map(struct buf *b, size_t count);
void cbor_put_tag(struct buf *b, uint64_t tag);
void cbor_put_simple(struct buf *b, unsigned v);
void cbor_put_bool(struct buf *b, bool v);
void cbor_put_null(struct buf *b);
/* Re-encodes a decoded item; with canonical, map keys are sorted as RFC 7049 §3.9
 * (shorter encoded key first, then bytewise) and duplicate keys are an error. */
int cbor_encode_item(struct buf *b, const struct cbor_item *it, bool canonical, struct err *err);

#endif
