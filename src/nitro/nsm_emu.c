/* NSM emulator: decode, act, encode. Limits as the real module's (nitro.md §4). */
#include "nitro/nsm_emu.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/fs.h"
#include "base/hex.h"
#include "codec/cbor.h"
#include "crypto/sha.h"
#include "eif/pcr.h"
#include "nitro/attestation.h"
#include "nitro/nsm.h"

#define MAX_ATT_FIELD 1024
#define RANDOM_BYTES 256

enum nsm_error { /* 0 is success; the names are the C ABI's order */
	E_INVALID_ARGUMENT = 1,
	E_INVALID_INDEX,
	E_INVALID_RESPONSE,
	E_READ_ONLY_INDEX,
	E_INVALID_OPERATION,
	E_BUFFER_TOO_SMALL,
	E_INPUT_TOO_LARGE,
	E_INTERNAL,
};

static const char *const error_names[] = {
	"InvalidArgument", "InvalidIndex", "InvalidResponse", "ReadOnlyIndex",
	"InvalidOperation", "BufferTooSmall", "InputTooLarge", "InternalError",
};

/* A made-up instance id, stable on this machine: "i-" and 17 hex digits. */
static void local_instance_id(char out[20])
{
	struct buf id = BUF_INIT;
	struct err err = { 0 };
	uint8_t d[32];
	char h[65];

	if (fs_read_file("/etc/machine-id", 4096, &id, &err) < 0)
		buf_append_str(&id, "enclaver-local");
	sha256(id.data, id.len, d);
	hex_encode(d, 32, h);
	snprintf(out, 20, "i-%.17s", h);
	buf_free(&id);
}

void nsm_emu_init(struct nsm_emu *e, const struct nsm_emu_config *c)
{
	char iid[20];
	uint8_t slot[8];
	char slot_hex[17];
	const char *instance = c->instance_id;

	memset(e, 0, sizeof(*e));
	e->ca = c->ca;
	if (!instance || !*instance) {
		local_instance_id(iid);
		instance = iid;
	}
	if (!c->debug_mode) {
		memcpy(e->pcr[0], c->pcr0, 48);
		memcpy(e->pcr[1], c->pcr1, 48);
		memcpy(e->pcr[2], c->pcr2, 48);
	}
	if (c->pcr8)
		memcpy(e->pcr[8], c->pcr8, 48);
	/* the hypervisor's PCRs: one extend of the UTF-8 string from zero (nitro.md §2.1) */
	if (c->role_arn && *c->role_arn)
		pcr_extend(e->pcr[3], c->role_arn, strlen(c->role_arn));
	pcr_extend(e->pcr[4], instance, strlen(instance));
	for (int i = 0; i < 16; i++)
		e->locked[i] = true;
	/* nitro-cli's enclave id: the instance id, "-enc", the slot's 16 hex digits */
	RAND_bytes(slot, sizeof(slot));
	hex_encode(slot, sizeof(slot), slot_hex);
	snprintf(e->module_id, sizeof(e->module_id), "%s-enc%s", instance, slot_hex);
}

static void put_error(struct buf *out, enum nsm_error code)
{
	cbor_put_map(out, 1);
	cbor_put_text(out, "Error");
	cbor_put_text(out, error_names[code - 1]);
}

/* {"Name": {fields}}: the fields map, or NULL (with *code set) when the shape is wrong. */
static const struct cbor_item *fields(const struct cbor_item *req, const char **name)
{
	if (req->type != CBOR_MAP || req->count != 1 || req->items[0].type != CBOR_TEXT ||
	    req->items[1].type != CBOR_MAP)
		return NULL;
	*name = (const char *)req->items[0].data;
	return &req->items[1];
}

static int get_index(const struct cbor_item *f, const char *key, uint64_t *out)
{
	const struct cbor_item *it = cbor_map_get(f, key);

	if (!it || it->type != CBOR_UINT || it->u > 0xffff)
		return -1;
	*out = it->u;
	return 0;
}

static bool named(const struct cbor_item *req, const char *name)
{
	size_t n = strlen(name);

	return req->type == CBOR_MAP && req->count == 1 && req->items[0].type == CBOR_TEXT && req->items[0].len == n &&
	       !memcmp(req->items[0].data, name, n);
}

static void describe_nsm(struct nsm_emu *e, struct buf *out)
{
	unsigned n = 0;

	for (int i = 0; i < NSM_EMU_PCRS; i++)
		n += e->locked[i];
	cbor_put_map(out, 1);
	cbor_put_text(out, "DescribeNSM");
	cbor_put_map(out, 7);
	cbor_put_text(out, "version_major");
	cbor_put_uint(out, 1);
	cbor_put_text(out, "version_minor");
	cbor_put_uint(out, 0);
	cbor_put_text(out, "version_patch");
	cbor_put_uint(out, 0);
	cbor_put_text(out, "module_id");
	cbor_put_text(out, e->module_id);
	cbor_put_text(out, "max_pcrs");
	cbor_put_uint(out, NSM_EMU_PCRS);
	cbor_put_text(out, "locked_pcrs");
	cbor_put_array(out, n);
	for (int i = 0; i < NSM_EMU_PCRS; i++)
		if (e->locked[i])
			cbor_put_uint(out, (uint64_t)i);
	cbor_put_text(out, "digest");
	cbor_put_text(out, "SHA384");
}

static enum nsm_error attestation(struct nsm_emu *e, const struct cbor_item *f, struct buf *out)
{
	struct att_bytes in[3] = { { NULL, 0 } };
	static const char *const keys[] = { "user_data", "nonce", "public_key" };
	struct att_bytes bundle[2];
	struct att_fields af;
	struct buf doc = BUF_INIT;
	struct err err = { 0 };
	struct timespec ts;

	for (int i = 0; i < 3; i++) {
		const struct cbor_item *it = cbor_map_get(f, keys[i]);

		if (!it || cbor_is_null(it))
			continue;
		if (it->type != CBOR_BYTES)
			return E_INVALID_ARGUMENT;
		if (it->len > MAX_ATT_FIELD)
			return E_INPUT_TOO_LARGE;
		in[i] = (struct att_bytes){ it->data, it->len };
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	if (devca_leaf(e->ca, e->module_id, ts.tv_sec, &err) < 0)
		return E_INTERNAL;
	bundle[0] = (struct att_bytes){ e->ca->root_der.data, e->ca->root_der.len };
	bundle[1] = (struct att_bytes){ e->ca->inter_der.data, e->ca->inter_der.len };
	af = (struct att_fields){ e->module_id, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
				  (const uint8_t(*)[48])e->pcr, e->locked, NSM_EMU_PCRS, e->ca->leaf_der.data,
				  e->ca->leaf_der.len, bundle, 2, in[2], in[0], in[1] };
	if (att_build(&af, e->ca->leaf_key, &doc, &err) < 0) {
		buf_free(&doc);
		return E_INTERNAL;
	}
	cbor_put_map(out, 1);
	cbor_put_text(out, "Attestation");
	cbor_put_map(out, 1);
	cbor_put_text(out, "document");
	cbor_put_bytes(out, doc.data, doc.len);
	buf_free(&doc);
	return 0;
}

static int handle(struct nsm_emu *e, const struct cbor_item *req, struct buf *out)
{
	const struct cbor_item *f;
	const char *name;
	uint64_t idx;

	if (cbor_is_text(req, "DescribeNSM")) {
		describe_nsm(e, out);
		return 0;
	}
	if (cbor_is_text(req, "GetRandom")) {
		uint8_t r[RANDOM_BYTES];

		if (RAND_bytes(r, sizeof(r)) != 1)
			return E_INTERNAL;
		cbor_put_map(out, 1);
		cbor_put_text(out, "GetRandom");
		cbor_put_map(out, 1);
		cbor_put_text(out, "random");
		cbor_put_bytes(out, r, sizeof(r));
		return 0;
	}
	f = fields(req, &name);
	if (!f)
		return E_INVALID_OPERATION;
	if (named(req, "DescribePCR")) {
		if (get_index(f, "index", &idx) < 0)
			return E_INVALID_ARGUMENT;
		if (idx >= NSM_EMU_PCRS)
			return E_INVALID_INDEX;
		cbor_put_map(out, 1);
		cbor_put_text(out, "DescribePCR");
		cbor_put_map(out, 2);
		cbor_put_text(out, "lock");
		cbor_put_bool(out, e->locked[idx]);
		cbor_put_text(out, "data");
		cbor_put_bytes(out, e->pcr[idx], 48);
		return 0;
	}
	if (named(req, "ExtendPCR")) {
		const struct cbor_item *d = cbor_map_get(f, "data");

		if (get_index(f, "index", &idx) < 0 || !d || d->type != CBOR_BYTES)
			return E_INVALID_ARGUMENT;
		if (idx >= NSM_EMU_PCRS)
			return E_INVALID_INDEX;
		if (e->locked[idx])
			return E_READ_ONLY_INDEX;
		pcr_extend(e->pcr[idx], d->data, d->len);
		cbor_put_map(out, 1);
		cbor_put_text(out, "ExtendPCR");
		cbor_put_map(out, 1);
		cbor_put_text(out, "data");
		cbor_put_bytes(out, e->pcr[idx], 48);
		return 0;
	}
	if (named(req, "LockPCR")) {
		if (get_index(f, "index", &idx) < 0)
			return E_INVALID_ARGUMENT;
		if (idx >= NSM_EMU_PCRS)
			return E_INVALID_INDEX;
		if (e->locked[idx])
			return E_READ_ONLY_INDEX;
		e->locked[idx] = true;
		cbor_put_text(out, "LockPCR");
		return 0;
	}
	if (named(req, "LockPCRs")) {
		if (get_index(f, "range", &idx) < 0)
			return E_INVALID_ARGUMENT;
		if (idx > NSM_EMU_PCRS)
			return E_INVALID_INDEX;
		for (uint64_t i = 0; i < idx; i++)
			e->locked[i] = true;
		cbor_put_text(out, "LockPCRs");
		return 0;
	}
	if (named(req, "Attestation"))
		return (int)attestation(e, f, out);
	/* a request map naming no known request */
	(void)name;
	return E_INVALID_OPERATION;
}

void nsm_emu_handle(struct nsm_emu *e, const uint8_t *req, size_t len, struct buf *out)
{
	struct cbor_item *it = NULL;
	struct err err = { 0 };
	size_t start = out->len;
	int code;

	if (len > NSM_MAX_REQUEST) {
		put_error(out, E_INPUT_TOO_LARGE);
		return;
	}
	if (cbor_decode(req, len, 8, &it, &err) < 0) {
		put_error(out, E_INVALID_ARGUMENT);
		return;
	}
	code = handle(e, it, out);
	cbor_free(it);
	if (code) {
		out->len = start;
		put_error(out, (enum nsm_error)code);
	}
}
