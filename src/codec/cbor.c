/*
 * Strict CBOR codec. Runs in every process that reads NSM responses, attestation documents
 * or EIF signature sections; trusts none of its input.
 */
#include "codec/cbor.h"

#include <stdlib.h>
#include <string.h>

struct dec {
	const uint8_t *p;
	const uint8_t *end;
	unsigned max_depth;
	struct err *err;
};

static int dec_head(struct dec *d, unsigned *major, unsigned *ai, uint64_t *val)
{
	uint8_t ib;
	size_t n;
	uint64_t v = 0;

	if (d->p >= d->end)
		return err_set(d->err, 0, "truncated: item head past the end of the input");
	ib = *d->p++;
	*major = ib >> 5;
	*ai = ib & 31;
	if (*ai < 24) {
		*val = *ai;
		return 0;
	}
	if (*ai > 27) {
		if (*ai == 31)
			return err_set(d->err, 0, "indefinite-length items are not accepted");
		return err_set(d->err, 0, "reserved additional information %u", *ai);
	}
	n = (size_t)1 << (*ai - 24);
	if ((size_t)(d->end - d->p) < n)
		return err_set(d->err, 0, "truncated: %zu-byte argument past the end of the input", n);
	for (size_t i = 0; i < n; i++)
		v = v << 8 | d->p[i];
	d->p += n;
	/* Canonical form: the argument must not fit a shorter head (floats are refused anyway). */
	if ((*ai == 24 && v < 24) || (*ai == 25 && v <= 0xff) || (*ai == 26 && v <= 0xffff) ||
	    (*ai == 27 && v <= 0xffffffffu))
		if (*major != 7)
			return err_set(d->err, 0, "non-minimal length or integer encoding");
	*val = v;
	return 0;
}

static bool utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		uint32_t cp;
		size_t n;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

static int raw_cmp(const void *a, const void *b)
{
	const struct cbor_item *x = *(const struct cbor_item *const *)a;
	const struct cbor_item *y = *(const struct cbor_item *const *)b;

	if (x->raw_len != y->raw_len)
		return x->raw_len < y->raw_len ? -1 : 1;
	return memcmp(x->raw, y->raw, x->raw_len);
}

static int check_dup_keys(struct cbor_item *map, struct err *err)
{
	const struct cbor_item **keys;
	int rc = 0;

	if (map->count < 2)
		return 0;
	keys = calloc(map->count, sizeof(*keys));
	if (!keys)
		abort();
	for (size_t i = 0; i < map->count; i++)
		keys[i] = &map->items[2 * i];
	qsort(keys, map->count, sizeof(*keys), raw_cmp);
	for (size_t i = 1; i < map->count; i++)
		if (raw_cmp(&keys[i - 1], &keys[i]) == 0) {
			rc = err_set(err, 0, "duplicate map key");
			break;
		}
	free(keys);
	return rc;
}

static void item_clear(struct cbor_item *it);

static int dec_item(struct dec *d, struct cbor_item *it, unsigned depth)
{
	unsigned major = 0, ai = 0;
	uint64_t v = 0;
	size_t left, n;

	memset(it, 0, sizeof(*it));
	it->raw = d->p;
	if (depth > d->max_depth)
		return err_set(d->err, 0, "nesting deeper than %u levels", d->max_depth);
	if (dec_head(d, &major, &ai, &v) < 0)
		return -1;
	left = (size_t)(d->end - d->p);
	switch (major) {
	case 0:
	case 1:
		it->type = major == 0 ? CBOR_UINT : CBOR_NINT;
		it->u = v;
		break;
	case 2:
	case 3:
		if (v > left)
			return err_set(d->err, 0, "string of %llu bytes runs past the end of the input",
				       (unsigned long long)v);
		it->type = major == 2 ? CBOR_BYTES : CBOR_TEXT;
		it->data = d->p;
		it->len = (size_t)v;
		d->p += v;
		if (major == 3 && !utf8_valid(it->data, it->len))
			return err_set(d->err, 0, "text string is not valid UTF-8");
		break;
	case 4:
	case 5:
		/* Every element takes at least one byte: bound the count before allocating. */
		if (v > left || (major == 5 && v > left / 2))
			return err_set(d->err, 0, "%s of %llu elements cannot fit in the input",
				       major == 4 ? "array" : "map", (unsigned long long)v);
		it->type = major == 4 ? CBOR_ARRAY : CBOR_MAP;
		it->count = (size_t)v;
		n = major == 4 ? it->count : 2 * it->count;
		if (n) {
			it->items = calloc(n, sizeof(*it->items));
			if (!it->items)
				abort();
		}
		/* On failure the untouched (zeroed) slots are safe for item_clear. */
		for (size_t i = 0; i < n; i++)
			if (dec_item(d, &it->items[i], depth + 1) < 0)
				return -1;
		if (major == 5 && check_dup_keys(it, d->err) < 0)
			return -1;
		break;
	case 6:
		it->type = CBOR_TAG;
		it->u = v;
		it->items = calloc(1, sizeof(*it->items));
		if (!it->items)
			abort();
		it->count = 1;
		if (dec_item(d, &it->items[0], depth + 1) < 0)
			return -1;
		break;
	default: /* 7 */
		if (ai >= 25 && ai <= 27)
			return err_set(d->err, 0, "floating-point values are not accepted");
		if (ai == 24 && v < 32)
			return err_set(d->err, 0, "invalid two-byte simple value %llu", (unsigned long long)v);
		it->type = CBOR_SIMPLE;
		it->u = v;
		break;
	}
	it->raw_len = (size_t)(d->p - it->raw);
	return 0;
}

static void item_clear(struct cbor_item *it)
{
	size_t n;

	if (it->type == CBOR_ARRAY || it->type == CBOR_TAG)
		n = it->count;
	else if (it->type == CBOR_MAP)
		n = 2 * it->count;
	else
		n = 0;
	if (it->items) {
		for (size_t i = 0; i < n; i++)
			item_clear(&it->items[i]);
		free(it->items);
	}
	it->items = NULL;
}

void cbor_free(struct cbor_item *item)
{
	if (!item)
		return;
	item_clear(item);
	free(item);
}

int cbor_decode(const uint8_t *data, size_t len, unsigned max_depth, struct cbor_item **out,
		struct err *err)
{
	struct dec d = { data, data + len, max_depth, err };
	struct cbor_item *it = calloc(1, sizeof(*it));

	if (!it)
		abort();
	if (dec_item(&d, it, 0) < 0) {
		cbor_free(it);
		return err_wrap(err, "CBOR at byte %zu", (size_t)(d.p - data));
	}
	if (d.p != d.end) {
		cbor_free(it);
		return err_set(err, 0, "CBOR: %zu trailing bytes after the item", (size_t)(d.end - d.p));
	}
	*out = it;
	return 0;
}

const struct cbor_item *cbor_map_get(const struct cbor_item *map, const char *key)
{
	if (!map || map->type != CBOR_MAP)
		return NULL;
	for (size_t i = 0; i < map->count; i++)
		if (cbor_is_text(&map->items[2 * i], key))
			return &map->items[2 * i + 1];
	return NULL;
}

const struct cbor_item *cbor_map_get_uint(const struct cbor_item *map, uint64_t key)
{
	if (!map || map->type != CBOR_MAP)
		return NULL;
	for (size_t i = 0; i < map->count; i++)
		if (map->items[2 * i].type == CBOR_UINT && map->items[2 * i].u == key)
			return &map->items[2 * i + 1];
	return NULL;
}

bool cbor_is_text(const struct cbor_item *it, const char *s)
{
	size_t n = strlen(s);

	return it && it->type == CBOR_TEXT && it->len == n && memcmp(it->data, s, n) == 0;
}

bool cbor_is_null(const struct cbor_item *it)
{
	return it && it->type == CBOR_SIMPLE && it->u == CBOR_NULL;
}

void cbor_put_head(struct buf *b, unsigned major, uint64_t v)
{
	uint8_t h[9];
	size_t n;

	major <<= 5;
	if (v < 24) {
		h[0] = (uint8_t)(major | v);
		n = 1;
	} else if (v <= 0xff) {
		h[0] = (uint8_t)(major | 24);
		n = 2;
	} else if (v <= 0xffff) {
		h[0] = (uint8_t)(major | 25);
		n = 3;
	} else if (v <= 0xffffffffu) {
		h[0] = (uint8_t)(major | 26);
		n = 5;
	} else {
		h[0] = (uint8_t)(major | 27);
		n = 9;
	}
	for (size_t i = 1; i < n; i++)
		h[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	buf_append(b, h, n);
}

void cbor_put_uint(struct buf *b, uint64_t v)
{
	cbor_put_head(b, 0, v);
}

void cbor_put_int(struct buf *b, int64_t v)
{
	if (v >= 0)
		cbor_put_head(b, 0, (uint64_t)v);
	else
		cbor_put_head(b, 1, (uint64_t)(-1 - v));
}

void cbor_put_bytes(struct buf *b, const void *data, size_t len)
{
	cbor_put_head(b, 2, len);
	buf_append(b, data, len);
}

void cbor_put_textn(struct buf *b, const char *s, size_t len)
{
	cbor_put_head(b, 3, len);
	buf_append(b, s, len);
}

void cbor_put_text(struct buf *b, const char *s)
{
	cbor_put_textn(b, s, strlen(s));
}

void cbor_put_array(struct buf *b, size_t count)
{
	cbor_put_head(b, 4, count);
}

void cbor_put_map(struct buf *b, size_t count)
{
	cbor_put_head(b, 5, count);
}

void cbor_put_tag(struct buf *b, uint64_t tag)
{
	cbor_put_head(b, 6, tag);
}

void cbor_put_simple(struct buf *b, unsigned v)
{
	cbor_put_head(b, 7, v);
}

void cbor_put_bool(struct buf *b, bool v)
{
	cbor_put_simple(b, v ? CBOR_TRUE : CBOR_FALSE);
}

void cbor_put_null(struct buf *b)
{
	cbor_put_simple(b, CBOR_NULL);
}

struct enc_pair {
	struct buf key;
	const struct cbor_item *value;
};

static int pair_cmp(const void *a, const void *b)
{
	const struct enc_pair *x = a, *y = b;

	if (x->key.len != y->key.len)
		return x->key.len < y->key.len ? -1 : 1;
	return memcmp(x->key.data, y->key.data, x->key.len);
}

int cbor_encode_item(struct buf *b, const struct cbor_item *it, bool canonical, struct err *err)
{
	struct enc_pair *pairs;
	int rc = 0;

	switch (it->type) {
	case CBOR_UINT:
		cbor_put_head(b, 0, it->u);
		return 0;
	case CBOR_NINT:
		cbor_put_head(b, 1, it->u);
		return 0;
	case CBOR_BYTES:
		cbor_put_head(b, 2, it->len);
		buf_append(b, it->data, it->len);
		return 0;
	case CBOR_TEXT:
		cbor_put_textn(b, (const char *)it->data, it->len);
		return 0;
	case CBOR_SIMPLE:
		cbor_put_simple(b, (unsigned)it->u);
		return 0;
	case CBOR_TAG:
		cbor_put_tag(b, it->u);
		return cbor_encode_item(b, &it->items[0], canonical, err);
	case CBOR_ARRAY:
		cbor_put_array(b, it->count);
		for (size_t i = 0; i < it->count; i++)
			if (cbor_encode_item(b, &it->items[i], canonical, err) < 0)
				return -1;
		return 0;
	case CBOR_MAP:
		break;
	}
	cbor_put_map(b, it->count);
	if (it->count == 0)
		return 0;
	pairs = calloc(it->count, sizeof(*pairs));
	if (!pairs)
		abort();
	for (size_t i = 0; i < it->count && rc == 0; i++) {
		pairs[i].value = &it->items[2 * i + 1];
		rc = cbor_encode_item(&pairs[i].key, &it->items[2 * i], canonical, err);
	}
	if (rc == 0 && canonical) {
		qsort(pairs, it->count, sizeof(*pairs), pair_cmp);
		for (size_t i = 1; i < it->count; i++)
			if (pair_cmp(&pairs[i - 1], &pairs[i]) == 0)
				rc = err_set(err, 0, "CBOR: duplicate map key");
	}
	for (size_t i = 0; i < it->count && rc == 0; i++) {
		buf_append(b, pairs[i].key.data, pairs[i].key.len);
		rc = cbor_encode_item(b, pairs[i].value, canonical, err);
	}
	for (size_t i = 0; i < it->count; i++)
		buf_free(&pairs[i].key);
	free(pairs);
	return rc;
}
