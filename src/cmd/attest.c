/*
 * enclaver attest: verify and inspect NSM attestation documents (AWS's, or the local enclave's
 * development CA's), and check one against an EIF's measurements. Documents are untrusted
 * input; every failure is one line naming the check that failed.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/hex.h"
#include "base/log.h"
#include "cmd/cmd.h"
#include "crypto/sha.h"
#include "eif/eif.h"
#include "nitro/attestation.h"
#include "nitro/devca.h"

#define MAX_DOC (1u << 20)

struct expect {
	struct buf pcr[ATT_MAX_PCRS];
	bool has_pcr[ATT_MAX_PCRS];
	struct buf nonce, user_data, public_key_spki, public_key_bits;
	bool has_nonce, has_user_data, has_public_key, allow_debug;
};

/* Reads DOC (a file or "-"): CBOR, or the same in base64 as KMS and APIs carry it, in one line
 * or wrapped as base64(1) writes it (whitespace anywhere, padding optional). */
static int read_doc(const char *path, struct buf *out, struct err *err)
{
	struct buf raw = BUF_INIT, text = BUF_INIT;
	const char *name = strcmp(path, "-") ? path : "stdin";
	bool base64 = true;
	int rc = -1;

	if (!strcmp(path, "-")) {
		char chunk[65536];
		size_t n;

		while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
			if (raw.len + n > MAX_DOC) {
				buf_free(&raw);
				return err_set(err, EFBIG, "stdin: larger than %u bytes", MAX_DOC);
			}
			buf_append(&raw, chunk, n);
		}
	} else if (fs_read_file(path, MAX_DOC, &raw, err) < 0) {
		return -1;
	}
	/* A COSE_Sign1 document starts with 0x84 (array of 4) or 0xd2 (tag 18), neither of which is
	 * text; anything made only of base64's alphabet and whitespace is taken as base64. */
	for (size_t i = 0; i < raw.len && base64; i++) {
		uint8_t ch = raw.data[i];

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
			continue;
		if (isalnum(ch) || ch == '+' || ch == '/' || ch == '=')
			buf_append_byte(&text, ch);
		else
			base64 = false;
	}
	if (!base64 || !text.len) {
		buf_append(out, raw.data, raw.len);
		rc = 0;
		goto out;
	}
	while (text.len % 4 && text.len % 4 != 1)
		buf_append_byte(&text, '=');
	if (b64_decode((const char *)text.data, text.len, out) <= 0) {
		err_set(err, EINVAL, "%s: not an attestation document: neither CBOR nor base64 (%zu base64 characters)",
			name, text.len);
		goto out;
	}
	rc = 0;
out:
	buf_free(&raw);
	buf_free(&text);
	return rc;
}

/* Whether the document's own bundle starts at enclaver's development root: such documents come
 * from local enclaves, and only --dev-root (or --root with that root) verifies them. */
static bool from_dev_ca(const struct att_doc *d)
{
	const unsigned char *p = d->n_cabundle ? d->cabundle[0].data : NULL;
	X509 *root = p ? d2i_X509(NULL, &p, (long)d->cabundle[0].len) : NULL;
	char cn[256] = "";

	if (root)
		X509_NAME_get_text_by_NID(X509_get_subject_name(root), NID_commonName, cn, sizeof(cn));
	X509_free(root);
	return strstr(cn, "enclaver local development") != NULL;
}

/* Adds what to do to a chain that did not verify; always true (the verification failed). */
static bool chain_hint(const struct att_doc *d, const char *root_path, bool at_document, struct err *err)
{
	char msg[sizeof(err->msg)];

	snprintf(msg, sizeof(msg), "%s", err->msg);
	if (!root_path && from_dev_ca(d))
		err_set(err, err->code, "%s: the document is signed by enclaver's local development CA (a local "
			"enclave's): verify it with --dev-root",
			msg);
	else if (!at_document && (strstr(msg, "expired") || strstr(msg, "not yet valid")))
		err_set(err, err->code, "%s: an attestation document's certificate lives 3 hours; to check a kept "
			"document as of when it was made, add --at document",
			msg);
	return true;
}

static int parse_hex_arg(const char *what, const char *hex, struct buf *out, struct err *err)
{
	size_t n = strlen(hex);

	buf_reserve(out, n / 2 + 1);
	if (n % 2 || hex_decode(hex, out->data, n / 2 + 1) != (long)(n / 2)) {
		/* hex_decode is lower-case: accept upper case too */
		char *low = strdup(hex);

		for (char *p = low; *p; p++)
			if (*p >= 'A' && *p <= 'F')
				*p = (char)(*p - 'A' + 'a');
		if (n % 2 || hex_decode(low, out->data, n / 2 + 1) != (long)(n / 2)) {
			free(low);
			return err_set(err, EINVAL, "%s: \"%s\" is not hex", what, hex);
		}
		free(low);
	}
	out->len = n / 2;
	return 0;
}

static int parse_time(const char *s, time_t *out, struct err *err)
{
	struct tm tm = { 0 };
	const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);

	if (rest && *rest == '.')
		while (*++rest >= '0' && *rest <= '9')
			;
	if (!rest || (strcmp(rest, "Z") && strcmp(rest, "+00:00")))
		return err_set(err, EINVAL, "--at %s: use an RFC 3339 time in UTC, such as 2024-07-31T20:18:27Z", s);
	*out = timegm(&tm);
	return 0;
}

static int load_public_key(const char *path, struct expect *ex, struct err *err)
{
	FILE *f = fopen(path, "re");
	EVP_PKEY *k;
	unsigned char *der = NULL;
	int len;

	if (!f)
		return err_sys(err, "--public-key %s", path);
	k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (!k)
		return err_set(err, EINVAL, "--public-key %s: not a PEM public key", path);
	len = i2d_PUBKEY(k, &der);
	if (len > 0) {
		const unsigned char *p = der;
		X509_PUBKEY *xp = d2i_X509_PUBKEY(NULL, &p, len);
		const unsigned char *bits;
		int blen;

		buf_append(&ex->public_key_spki, der, (size_t)len);
		if (xp && X509_PUBKEY_get0_param(NULL, &bits, &blen, NULL, xp))
			buf_append(&ex->public_key_bits, bits, (size_t)blen);
		X509_PUBKEY_free(xp);
	}
	OPENSSL_free(der);
	EVP_PKEY_free(k);
	ex->has_public_key = true;
	return 0;
}

static bool same(const struct att_bytes *a, const struct buf *b)
{
	/* an absent field matches no expectation */
	return a->data && a->len == b->len && (!b->len || !memcmp(a->data, b->data, b->len));
}

/* The checks beyond the signature: debug mode, PCRs, nonce, user data, key. */
static int check_expectations(const struct att_doc *d, const struct expect *ex, struct err *err)
{
	if (att_is_debug(d) && !ex->allow_debug)
		return err_set(err, EACCES, "the document comes from a debug-mode enclave (PCR0, PCR1 and PCR2 are zero); pass --allow-debug to accept it");
	for (int i = 0; i < ATT_MAX_PCRS; i++) {
		char got[2 * 64 + 1] = "absent";

		if (!ex->has_pcr[i])
			continue;
		if (same(&d->pcrs[i], &ex->pcr[i]))
			continue;
		char want[2 * 64 + 1] = "";

		if (d->pcrs[i].data)
			hex_encode(d->pcrs[i].data, d->pcrs[i].len, got);
		if (ex->pcr[i].len <= 64)
			hex_encode(ex->pcr[i].data, ex->pcr[i].len, want);
		return err_set(err, EACCES, "PCR%d is %s, expected %s", i, got, want);
	}
	if (ex->has_nonce && !same(&d->nonce, &ex->nonce))
		return err_set(err, EACCES, "the nonce is not the one expected%s", d->nonce.data ? "" : " (the document has none)");
	if (ex->has_user_data && !same(&d->user_data, &ex->user_data))
		return err_set(err, EACCES, "user_data is not the one expected%s", d->user_data.data ? "" : " (the document has none)");
	if (ex->has_public_key && !same(&d->public_key, &ex->public_key_spki) && !same(&d->public_key, &ex->public_key_bits))
		return err_set(err, EACCES, "public_key is not the one expected%s", d->public_key.data ? "" : " (the document has none)");
	return 0;
}

static void iso_time(uint64_t ms, char out[40])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

static json_t *bytes_json(const struct att_bytes *b)
{
	char *h;
	json_t *j;

	if (!b->data)
		return json_null();
	h = malloc(2 * b->len + 1);
	if (!h)
		abort();
	hex_encode(b->data, b->len, h);
	j = json_string(h);
	free(h);
	return j;
}

static json_t *pcrs_json(const struct att_doc *d)
{
	json_t *o = json_object();

	for (int i = 0; i < ATT_MAX_PCRS; i++)
		if (d->pcrs[i].data) {
			char k[8];

			snprintf(k, sizeof(k), "%d", i);
			json_object_set_new(o, k, bytes_json(&d->pcrs[i]));
		}
	return o;
}

static json_t *cert_json(const struct att_bytes *b)
{
	const unsigned char *p = b->data;
	X509 *x = d2i_X509(NULL, &p, (long)b->len);
	json_t *o = json_object();
	uint8_t fp[32];
	char name[512], hex[65];
	BIO *bio;
	char *data;
	long n;

	sha256(b->data, b->len, fp);
	hex_encode(fp, 32, hex);
	json_object_set_new(o, "sha256", json_string(hex));
	if (!x) {
		json_object_set_new(o, "error", json_string("not DER X.509"));
		return o;
	}
	X509_NAME_oneline(X509_get_subject_name(x), name, sizeof(name));
	json_object_set_new(o, "subject", json_string(name));
	X509_NAME_oneline(X509_get_issuer_name(x), name, sizeof(name));
	json_object_set_new(o, "issuer", json_string(name));
	bio = BIO_new(BIO_s_mem());
	ASN1_TIME_print(bio, X509_get0_notBefore(x));
	n = BIO_get_mem_data(bio, &data);
	json_object_set_new(o, "not_before", json_stringn(data, (size_t)n));
	(void)BIO_reset(bio);
	ASN1_TIME_print(bio, X509_get0_notAfter(x));
	n = BIO_get_mem_data(bio, &data);
	json_object_set_new(o, "not_after", json_stringn(data, (size_t)n));
	BIO_free(bio);
	json_object_set_new(o, "ca", json_boolean(X509_check_ca(x) != 0));
	X509_free(x);
	return o;
}

static json_t *doc_json(const struct att_doc *d)
{
	char when[40];
	json_t *o = json_object(), *bundle = json_array();

	iso_time(d->timestamp, when);
	json_object_set_new(o, "module_id", json_string(d->module_id));
	json_object_set_new(o, "digest", json_string("SHA384"));
	json_object_set_new(o, "timestamp", json_integer((json_int_t)d->timestamp));
	json_object_set_new(o, "time", json_string(when));
	json_object_set_new(o, "debug_mode", json_boolean(att_is_debug(d)));
	json_object_set_new(o, "pcrs", pcrs_json(d));
	json_object_set_new(o, "certificate", cert_json(&d->certificate));
	for (unsigned i = 0; i < d->n_cabundle; i++)
		json_array_append_new(bundle, cert_json(&d->cabundle[i]));
	json_object_set_new(o, "cabundle", bundle);
	json_object_set_new(o, "public_key", bytes_json(&d->public_key));
	json_object_set_new(o, "user_data", bytes_json(&d->user_data));
	json_object_set_new(o, "nonce", bytes_json(&d->nonce));
	return o;
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	printf("%s\n", s);
	free(s);
}

static int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	bool as_json = false;
	struct buf raw = BUF_INIT;
	struct att_doc d;
	struct err err = { 0 };
	json_t *j;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'j')
			as_json = true;
		else if (c == 'h') {
			return cmd_help("attest inspect");
		} else
			return cmd_bad_option("attest inspect", argv, "h", opts);
	}
	if (optind + 1 != argc) {
		log_error("usage: enclaver attest inspect DOC [--json]");
		return EXIT_USAGE;
	}
	if (read_doc(argv[optind], &raw, &err) < 0 || att_parse(raw.data, raw.len, &d, &err) < 0) {
		log_error("%s: %s", argv[optind], err.msg);
		buf_free(&raw);
		return 1;
	}
	j = doc_json(&d);
	if (as_json) {
		print_json(j);
	} else {
		json_t *pcrs = json_object_get(j, "pcrs"), *v;
		const char *k;

		printf("module_id:   %s\n", d.module_id);
		printf("timestamp:   %s (%llu)\n", json_string_value(json_object_get(j, "time")),
		       (unsigned long long)d.timestamp);
		printf("debug mode:  %s\n", att_is_debug(&d) ? "yes (PCR0, PCR1 and PCR2 are zero)" : "no");
		json_object_foreach(pcrs, k, v)
			printf("PCR%-2s        %s\n", k, json_string_value(v));
		printf("certificate: %s\n", json_string_value(json_object_get(json_object_get(j, "certificate"), "subject")));
		printf("             valid %s to %s\n",
		       json_string_value(json_object_get(json_object_get(j, "certificate"), "not_before")),
		       json_string_value(json_object_get(json_object_get(j, "certificate"), "not_after")));
		for (size_t i = 0; i < json_array_size(json_object_get(j, "cabundle")); i++)
			printf("cabundle[%zu]: %s\n", i,
			       json_string_value(json_object_get(json_array_get(json_object_get(j, "cabundle"), i), "subject")));
		printf("public_key:  %s\n", d.public_key.data ? json_string_value(json_object_get(j, "public_key")) : "null");
		printf("user_data:   %s\n", d.user_data.data ? json_string_value(json_object_get(j, "user_data")) : "null");
		printf("nonce:       %s\n", d.nonce.data ? json_string_value(json_object_get(j, "nonce")) : "null");
	}
	json_decref(j);
	buf_free(&raw);
	return 0;
}

static int cmd_verify(int argc, char **argv, bool with_eif)
{
	enum { O_ROOT = 256, O_AWS, O_AT, O_PCR, O_NONCE, O_UD, O_PK, O_DEBUG, O_JSON, O_DEV };
	static const struct option opts[] = {
		{ "root", required_argument, NULL, O_ROOT },     { "aws-root", no_argument, NULL, O_AWS },
		{ "dev-root", no_argument, NULL, O_DEV },        { "at", required_argument, NULL, O_AT },
		{ "pcr", required_argument, NULL, O_PCR },       { "nonce", required_argument, NULL, O_NONCE },
		{ "user-data", required_argument, NULL, O_UD },  { "public-key", required_argument, NULL, O_PK },
		{ "allow-debug", no_argument, NULL, O_DEBUG },   { "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, 'h' },              { NULL, 0, NULL, 0 },
	};
	struct expect ex = { 0 };
	const char *root_path = NULL, *doc_path, *eif_path = NULL;
	char dev_root[4200];
	bool as_json = false, at_document = false;
	time_t at = time(NULL);
	struct buf raw = BUF_INIT;
	struct att_doc d;
	struct err err = { 0 };
	X509 *root = NULL;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_ROOT: root_path = optarg; break;
		case O_AWS: root_path = NULL; break;
		case O_DEV: {
			char state[4096];

			devca_state_dir(state, sizeof(state));
			devca_root_path(state, dev_root, sizeof(dev_root));
			root_path = dev_root;
			break;
		}
		case O_AT:
			if (!strcmp(optarg, "document"))
				at_document = true;
			else if (parse_time(optarg, &at, &err) < 0)
				goto usage_err;
			break;
		case O_PCR: {
			char *eq = strchr(optarg, '='), *end;
			long i = eq ? strtol(optarg, &end, 10) : -1;

			if (!eq || end != eq || i < 0 || i >= ATT_MAX_PCRS) {
				err_set(&err, EINVAL, "--pcr %s: use N=HEX with N from 0 to 31", optarg);
				goto usage_err;
			}
			if (parse_hex_arg("--pcr", eq + 1, &ex.pcr[i], &err) < 0)
				goto usage_err;
			ex.has_pcr[i] = true;
			break;
		}
		case O_NONCE:
			if (parse_hex_arg("--nonce", optarg, &ex.nonce, &err) < 0)
				goto usage_err;
			ex.has_nonce = true;
			break;
		case O_UD:
			if (parse_hex_arg("--user-data", optarg, &ex.user_data, &err) < 0)
				goto usage_err;
			ex.has_user_data = true;
			break;
		case O_PK:
			if (load_public_key(optarg, &ex, &err) < 0)
				goto usage_err;
			break;
		case O_DEBUG: ex.allow_debug = true; break;
		case O_JSON: as_json = true; break;
		case 'h':
			return cmd_help(with_eif ? "attest verify-eif" : "attest verify");
		default:
			return cmd_bad_option(with_eif ? "attest verify-eif" : "attest verify", argv, "h", opts);
		}
	}
	if (optind + (with_eif ? 2 : 1) != argc) {
		log_error("usage: enclaver attest %s [options] (see --help)", with_eif ? "verify-eif EIF DOC" : "verify DOC");
		return EXIT_USAGE;
	}
	if (with_eif)
		eif_path = argv[optind++];
	doc_path = argv[optind];
	if (eif_path) {
		struct eif_info *eif = NULL;
		const uint8_t *m[] = { NULL, NULL, NULL };

		if (eif_read(eif_path, &eif, &err) < 0 || eif_info_check(eif, eif_path, &err) < 0) {
			eif_info_free(eif);
			log_error("%s", err.msg);
			goto out;
		}
		m[0] = eif->m.pcr0;
		m[1] = eif->m.pcr1;
		m[2] = eif->m.pcr2;
		for (int i = 0; i < 3; i++) {
			buf_reset(&ex.pcr[i]);
			buf_append(&ex.pcr[i], m[i], 48);
			ex.has_pcr[i] = true;
		}
		if (eif->m.has_pcr8) {
			buf_reset(&ex.pcr[8]);
			buf_append(&ex.pcr[8], eif->m.pcr8, 48);
			ex.has_pcr[8] = true;
		}
		eif_info_free(eif);
	}
	root = root_path ? att_load_root(root_path, &err) : att_aws_root();
	if (!root) {
		log_error("--root %s", err.msg);
		goto out;
	}
	if (read_doc(doc_path, &raw, &err) < 0 || att_parse(raw.data, raw.len, &d, &err) < 0 ||
	    (att_verify(&d, root, at_document ? (time_t)(d.timestamp / 1000) : at, &err) < 0 &&
	     chain_hint(&d, root_path, at_document, &err)) ||
	    check_expectations(&d, &ex, &err) < 0) {
		if (as_json) {
			json_t *j = json_pack("{s:b, s:s}", "valid", 0, "reason", err.msg);

			print_json(j);
			json_decref(j);
		}
		log_error("attestation document %s: %s", doc_path, err.msg);
		goto out;
	}
	if (as_json) {
		json_t *j = json_pack("{s:b}", "valid", 1), *dj = doc_json(&d);

		json_object_update(j, dj);
		print_json(j);
		json_decref(dj);
		json_decref(j);
	} else {
		char when[40];

		iso_time(d.timestamp, when);
		printf("verified: %s, made %s, chain to %s\n", d.module_id, when,
		       root_path ? root_path : "AWS Nitro Enclaves Root-G1");
	}
	rc = 0;
	goto out;
usage_err:
	log_error("%s", err.msg);
	rc = EXIT_USAGE;
out:
	X509_free(root);
	buf_free(&raw);
	for (int i = 0; i < ATT_MAX_PCRS; i++)
		buf_free(&ex.pcr[i]);
	buf_free(&ex.nonce);
	buf_free(&ex.user_data);
	buf_free(&ex.public_key_spki);
	buf_free(&ex.public_key_bits);
	return rc;
}

int cmd_attest(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		return cmd_help("attest");
	if (argc < 2) {
		log_error("enclaver attest: name a command (verify, verify-eif, inspect, dev-root); see 'enclaver attest --help'");
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "verify"))
		return cmd_verify(argc - 1, argv + 1, false);
	if (!strcmp(argv[1], "verify-eif"))
		return cmd_verify(argc - 1, argv + 1, true);
	if (!strcmp(argv[1], "inspect"))
		return cmd_inspect(argc - 1, argv + 1);
	if (!strcmp(argv[1], "dev-root")) {
		char state[4096], path[4200];
		struct devca *ca = NULL;
		struct err err = { 0 };

		/* only --help is taken: anything else must not make a CA by surprise */
		if (argc > 2 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help")))
			return cmd_help("attest dev-root");
		if (argc > 2) {
			log_error("enclaver attest dev-root: unexpected argument \"%s\"; see 'enclaver attest dev-root --help'",
				  argv[2]);
			return EXIT_USAGE;
		}
		devca_state_dir(state, sizeof(state));
		if (devca_open(state, &ca, &err) < 0) {
			log_error("%s", err.msg);
			return 1;
		}
		devca_free(ca);
		devca_root_path(state, path, sizeof(path));
		printf("%s\n", path);
		return 0;
	}
	log_error("enclaver attest: unknown command \"%s\" (verify, verify-eif, inspect, dev-root); see 'enclaver attest --help'",
		  argv[1]);
	return EXIT_USAGE;
}
