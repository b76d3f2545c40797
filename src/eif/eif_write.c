/*
 * EIF writer. Runs in the CLI at build time. Streams sections into a temporary file, hashing
 * as it writes; a second thread carries the second SHA-384 and the CRC so that a large
 * ramdisk costs about one hash pass, and memory stays at one chunk whatever the input size.
 */
#include "eif/eif.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "base/crc32.h"

#include "base/fs.h"
#include "base/mem.h"
#include "crypto/sha.h"
#include "eif/sign.h"

#define CHUNK (1u << 20)

struct helper {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int state; /* 0 idle, 1 job posted, 2 quit */
	const uint8_t *data;
	size_t len;
	struct sha_ctx *sha; /* PCR1 or PCR2 hasher for the current section */
	uLong crc;           /* CRC of the current section's data */
	int fd;              /* the second half of each chunk is written here... */
	off_t write_at;      /* ...at this offset */
	size_t write_len;
	int write_errno;
};

struct eif_writer {
	struct atomic_file af;
	uint16_t flags;
	uint64_t pos; /* file offset of the next byte */
	struct eif_section_info sections[EIF_MAX_SECTIONS];
	size_t n_sections;
	unsigned n_ramdisks;
	int cur_type; /* -1 when between sections */
	uLong crc_rest; /* CRC over everything after the header so far */
	uint64_t rest_len;
	struct sha_ctx h0, h1, h2;
	uint8_t *buf;
	size_t buf_len;
	struct helper helper;
	bool helper_started;
};

const char *eif_section_name(unsigned type)
{
	static const char *const names[] = { "Invalid", "Kernel", "Cmdline", "Ramdisk", "Signature",
					     "Metadata" };

	return type < 6 ? names[type] : "Unknown";
}

static void *helper_main(void *arg)
{
	struct helper *h = arg;

	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->state == 0)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->state == 2)
			break;
		pthread_mutex_unlock(&h->mu);
		if (h->sha)
			sha_update(h->sha, h->data, h->len);
		h->crc = crc32_update((uint32_t)h->crc, h->data, h->len);
		if (h->write_len &&
		    fs_pwrite_full(h->fd, h->data + (h->len - h->write_len), h->write_len, h->write_at) < 0)
			h->write_errno = errno;
		pthread_mutex_lock(&h->mu);
		h->state = 0;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void helper_post(struct helper *h, const uint8_t *data, size_t len)
{
	pthread_mutex_lock(&h->mu);
	h->data = data;
	h->len = len;
	h->state = 1;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

static void helper_wait(struct helper *h)
{
	pthread_mutex_lock(&h->mu);
	while (h->state == 1)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

static void helper_stop(struct eif_writer *w)
{
	if (!w->helper_started)
		return;
	pthread_mutex_lock(&w->helper.mu);
	w->helper.state = 2;
	pthread_cond_broadcast(&w->helper.cv);
	pthread_mutex_unlock(&w->helper.mu);
	pthread_join(w->helper.thread, NULL);
	pthread_mutex_destroy(&w->helper.mu);
	pthread_cond_destroy(&w->helper.cv);
	w->helper_started = false;
}

void eif_writer_abort(struct eif_writer *w)
{
	if (!w)
		return;
	helper_stop(w);
	atomic_file_abort(&w->af);
	sha_free(&w->h0);
	sha_free(&w->h1);
	sha_free(&w->h2);
	free(w->buf);
	free(w);
}

int eif_writer_open(struct eif_writer **out, const char *path, uint16_t flags, struct err *err)
{
	sigset_t all, old;
	bool started;
	struct eif_writer *w = calloc(1, sizeof(*w));
	uint8_t hdr[EIF_HDR_LEN] = { 0 };

	if (!w)
		abort();
	w->af.fd = -1;
	w->flags = flags;
	w->cur_type = -1;
	w->crc_rest = crc32_z(0, NULL, 0);
	w->buf = malloc(CHUNK);
	if (!w->buf)
		abort();
	sha_init(&w->h0, "SHA384");
	sha_init(&w->h1, "SHA384");
	sha_init(&w->h2, "SHA384");
	if (atomic_file_open(&w->af, path, 0644, err) < 0) {
		eif_writer_abort(w);
		return -1;
	}
	/* The header is written last, once offsets and the CRC are known. */
	if (fs_write_full(w->af.fd, hdr, sizeof(hdr)) < 0) {
		err_sys(err, "%s: write", path);
		eif_writer_abort(w);
		return -1;
	}
	w->pos = EIF_HDR_LEN;
	pthread_mutex_init(&w->helper.mu, NULL);
	pthread_cond_init(&w->helper.cv, NULL);
	/* the helper takes no signals: the main thread's handlers clean up (fs_cleanup_on_signals) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	started = pthread_create(&w->helper.thread, NULL, helper_main, &w->helper) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!started) {
		err_set(err, EAGAIN, "cannot start the hashing thread");
		eif_writer_abort(w);
		return -1;
	}
	w->helper_started = true;
	*out = w;
	return 0;
}

/* Hashes and writes the buffered chunk on two cores at once: here the PCR0 hash and the first
 * half of the write, on the helper the PCR1/PCR2 hash, the CRC and the second half. */
static int flush(struct eif_writer *w, struct err *err)
{
	bool measured = w->cur_type == EIF_SEC_KERNEL || w->cur_type == EIF_SEC_CMDLINE ||
			w->cur_type == EIF_SEC_RAMDISK;
	size_t half = w->buf_len / 2;
	int rc = 0;

	if (!w->buf_len)
		return 0;
	w->helper.fd = w->af.fd;
	w->helper.write_len = w->buf_len - half;
	w->helper.write_at = (off_t)(w->pos + half);
	w->helper.write_errno = 0;
	helper_post(&w->helper, w->buf, w->buf_len);
	if (measured)
		sha_update(&w->h0, w->buf, w->buf_len);
	if (half && fs_pwrite_full(w->af.fd, w->buf, half, (off_t)w->pos) < 0)
		rc = err_sys(err, "%s: write", w->af.path);
	helper_wait(&w->helper);
	if (rc == 0 && w->helper.write_errno) {
		errno = w->helper.write_errno;
		rc = err_sys(err, "%s: write", w->af.path);
	}
	w->pos += w->buf_len;
	w->buf_len = 0;
	return rc;
}

int eif_writer_begin(struct eif_writer *w, enum eif_section_type type, struct err *err)
{
	static const uint8_t placeholder[EIF_SEC_HDR_LEN];
	int prev = w->n_sections ? w->sections[w->n_sections - 1].type : 0;

	if (w->cur_type >= 0)
		return err_set(err, EINVAL, "EIF: section %s still open", eif_section_name((unsigned)w->cur_type));
	if (w->n_sections == EIF_MAX_SECTIONS - 1) /* one slot stays free for the signature */
		return err_set(err, EINVAL, "EIF: too many sections");
	/* nitro-cli's order: kernel, cmdline, metadata, ramdisks (signature is added by finish). */
	if ((type == EIF_SEC_KERNEL && prev != 0) || (type == EIF_SEC_CMDLINE && prev != EIF_SEC_KERNEL) ||
	    (type == EIF_SEC_METADATA && prev != EIF_SEC_CMDLINE) ||
	    (type == EIF_SEC_RAMDISK && prev != EIF_SEC_METADATA && prev != EIF_SEC_RAMDISK) ||
	    type == EIF_SEC_SIGNATURE || type == EIF_SEC_INVALID || type > EIF_SEC_METADATA)
		return err_set(err, EINVAL, "EIF: %s section out of order (kernel, cmdline, metadata, ramdisks)",
			       eif_section_name(type));
	if (fs_pwrite_full(w->af.fd, placeholder, sizeof(placeholder), (off_t)w->pos) < 0)
		return err_sys(err, "%s: write", w->af.path);
	w->sections[w->n_sections] = (struct eif_section_info){ .type = (uint16_t)type, .offset = w->pos };
	w->pos += EIF_SEC_HDR_LEN;
	w->cur_type = type;
	w->helper.crc = crc32_z(0, NULL, 0);
	w->helper.sha = NULL;
	if (type == EIF_SEC_KERNEL || type == EIF_SEC_CMDLINE || (type == EIF_SEC_RAMDISK && w->n_ramdisks == 0))
		w->helper.sha = &w->h1;
	else if (type == EIF_SEC_RAMDISK)
		w->helper.sha = &w->h2;
	return 0;
}

uint64_t eif_writer_size(const struct eif_writer *w)
{
	return w->pos + w->buf_len;
}

int eif_writer_read_back(struct eif_writer *w, uint64_t off, void *data, size_t len, struct err *err)
{
	uint64_t at, end;
	uint8_t *out = data;

	if (w->cur_type < 0)
		return err_set(err, EINVAL, "EIF: read back outside a section");
	at = w->sections[w->n_sections].offset + EIF_SEC_HDR_LEN + off;
	end = w->pos + w->buf_len;
	if (at > end || len > end - at)
		return err_set(err, EINVAL, "EIF: read back past what was written");
	/* what is on disk, then what is still buffered */
	while (len && at < w->pos) {
		size_t n = w->pos - at < len ? (size_t)(w->pos - at) : len;
		ssize_t got = pread(w->af.fd, out, n, (off_t)at);

		if (got <= 0)
			return err_sys(err, "%s: read back", w->af.path);
		out += got;
		at += (uint64_t)got;
		len -= (size_t)got;
	}
	if (len)
		memcpy(out, w->buf + (at - w->pos), len);
	return 0;
}

int eif_writer_write(struct eif_writer *w, const void *data, size_t len, struct err *err)
{
	const uint8_t *p = data;

	if (w->cur_type < 0)
		return err_set(err, EINVAL, "EIF: write outside a section");
	while (len) {
		size_t n = CHUNK - w->buf_len < len ? CHUNK - w->buf_len : len;

		memcpy(w->buf + w->buf_len, p, n);
		w->buf_len += n;
		p += n;
		len -= n;
		if (w->buf_len == CHUNK && flush(w, err) < 0)
			return -1;
	}
	return 0;
}

static void put_be16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

int eif_writer_end(struct eif_writer *w, struct err *err)
{
	struct eif_section_info *s = &w->sections[w->n_sections];
	uint8_t sh[EIF_SEC_HDR_LEN];
	uLong crc;

	if (w->cur_type < 0)
		return err_set(err, EINVAL, "EIF: no open section");
	if (flush(w, err) < 0)
		return -1;
	s->size = w->pos - s->offset - EIF_SEC_HDR_LEN;
	put_be16(sh, s->type);
	put_be16(sh + 2, 0);
	put_be64(sh + 4, s->size);
	if (fs_pwrite_full(w->af.fd, sh, sizeof(sh), (off_t)s->offset) < 0)
		return err_sys(err, "%s: write", w->af.path);
	/* CRC of header+data, from the data CRC computed while streaming. */
	crc = crc32_combine(crc32_update(0, sh, sizeof(sh)), w->helper.crc, (z_off_t)s->size);
	w->crc_rest = crc32_combine(w->crc_rest, crc, (z_off_t)(s->size + EIF_SEC_HDR_LEN));
	w->rest_len += s->size + EIF_SEC_HDR_LEN;
	if (s->type == EIF_SEC_RAMDISK)
		w->n_ramdisks++;
	w->n_sections++;
	w->cur_type = -1;
	return 0;
}

int eif_writer_add_bytes(struct eif_writer *w, enum eif_section_type type, const void *data,
			 size_t len, struct err *err)
{
	if (eif_writer_begin(w, type, err) < 0 || eif_writer_write(w, data, len, err) < 0)
		return -1;
	return eif_writer_end(w, err);
}

/* Reads straight into the chunk buffer: no second copy of large ramdisks. len UINT64_MAX: to EOF. */
static int stream_fd(struct eif_writer *w, int fd, uint64_t off, uint64_t len, const char *what,
		     struct err *err)
{
	while (len) {
		size_t want = CHUNK - w->buf_len;
		ssize_t n;

		if (want > len)
			want = (size_t)len;
		/* To EOF: plain reads, so that pipes work as ramdisk sources. */
		n = len == UINT64_MAX ? read(fd, w->buf + w->buf_len, want)
				      : pread(fd, w->buf + w->buf_len, want, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return err_sys(err, "%s: read", what);
		}
		if (n == 0) {
			if (len == UINT64_MAX)
				return 0;
			return err_set(err, EIO, "%s: shorter than expected", what);
		}
		w->buf_len += (size_t)n;
		off += (uint64_t)n;
		if (len != UINT64_MAX)
			len -= (uint64_t)n;
		if (w->buf_len == CHUNK && flush(w, err) < 0)
			return -1;
	}
	return 0;
}

int eif_writer_add_file(struct eif_writer *w, enum eif_section_type type, const char *path,
			struct err *err)
{
	autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return err_sys(err, "%s", path);
	if (eif_writer_begin(w, type, err) < 0 || stream_fd(w, fd, 0, UINT64_MAX, path, err) < 0)
		return -1;
	return eif_writer_end(w, err);
}

int eif_writer_add_fd_range(struct eif_writer *w, enum eif_section_type type, int fd, uint64_t off,
			    uint64_t len, struct err *err)
{
	if (eif_writer_begin(w, type, err) < 0 || stream_fd(w, fd, off, len, "EIF section", err) < 0)
		return -1;
	return eif_writer_end(w, err);
}

int eif_writer_finish(struct eif_writer *w, const char *cert_pem, const char *key_pem,
		      struct eif_measurements *m, struct err *err)
{
	uint8_t hdr[EIF_HDR_LEN] = { 0 }, d[PCR_LEN];
	struct eif_measurements meas = { 0 };
	bool has_kernel = false, has_cmdline = false, has_md = false;
	uLong crc;
	int rc = -1;

	if (w->cur_type >= 0) {
		err_set(err, EINVAL, "EIF: section %s still open", eif_section_name((unsigned)w->cur_type));
		goto out;
	}
	for (size_t i = 0; i < w->n_sections; i++) {
		has_kernel |= w->sections[i].type == EIF_SEC_KERNEL;
		has_cmdline |= w->sections[i].type == EIF_SEC_CMDLINE;
		has_md |= w->sections[i].type == EIF_SEC_METADATA;
	}
	if (!has_kernel || !has_cmdline || !has_md || w->n_ramdisks == 0) {
		err_set(err, EINVAL, "EIF: needs a kernel, a cmdline, metadata and at least one ramdisk");
		goto out;
	}
	sha_final(&w->h0, d);
	pcr_from_digest(d, meas.pcr0);
	sha_final(&w->h1, d);
	pcr_from_digest(d, meas.pcr1);
	sha_final(&w->h2, d);
	pcr_from_digest(d, meas.pcr2);
	if (cert_pem || key_pem) {
		struct buf sig = BUF_INIT;

		if (!cert_pem || !key_pem) {
			err_set(err, EINVAL, "signing needs both a certificate and a private key");
			goto out;
		}
		if (eif_signature_build(cert_pem, key_pem, meas.pcr0, &sig, meas.pcr8, err) < 0) {
			buf_free(&sig);
			goto out;
		}
		meas.has_pcr8 = true;
		/* Appended after the ramdisks, as nitro-cli does; not measured by PCR0-2. */
		w->sections[w->n_sections] = (struct eif_section_info){ .type = EIF_SEC_SIGNATURE, .offset = w->pos };
		w->cur_type = EIF_SEC_SIGNATURE;
		w->helper.crc = crc32_z(0, NULL, 0);
		w->helper.sha = NULL;
		if (fs_pwrite_full(w->af.fd, hdr, EIF_SEC_HDR_LEN, (off_t)w->pos) < 0) {
			buf_free(&sig);
			err_sys(err, "%s: write", w->af.path);
			goto out;
		}
		w->pos += EIF_SEC_HDR_LEN;
		rc = eif_writer_write(w, sig.data, sig.len, err);
		buf_free(&sig);
		if (rc < 0 || eif_writer_end(w, err) < 0) {
			rc = -1;
			goto out;
		}
		rc = -1;
	}
	memcpy(hdr, ".eif", 4);
	put_be16(hdr + 4, EIF_VERSION);
	put_be16(hdr + 6, w->flags);
	put_be64(hdr + 8, EIF_DEFAULT_MEM);
	put_be64(hdr + 16, EIF_DEFAULT_CPUS);
	put_be16(hdr + 24, 0);
	put_be16(hdr + 26, (uint16_t)w->n_sections);
	for (size_t i = 0; i < w->n_sections; i++) {
		put_be64(hdr + 28 + 8 * i, w->sections[i].offset);
		put_be64(hdr + 28 + 8 * EIF_MAX_SECTIONS + 8 * i, w->sections[i].size);
	}
	crc = crc32_combine(crc32_update(0, hdr, EIF_HDR_LEN - 4), w->crc_rest, (z_off_t)w->rest_len);
	put_be32(hdr + EIF_HDR_LEN - 4, (uint32_t)crc);
	if (fs_pwrite_full(w->af.fd, hdr, sizeof(hdr), 0) < 0) {
		err_sys(err, "%s: write", w->af.path);
		goto out;
	}
	helper_stop(w);
	if (atomic_file_commit(&w->af, err) < 0)
		goto out;
	if (m)
		*m = meas;
	rc = 0;
out:
	eif_writer_abort(w);
	return rc;
}

static int dump_member(struct buf *b, const char *key, json_t *v, size_t flags, bool first)
{
	char *s = json_dumps(v, flags | JSON_COMPACT | JSON_ENCODE_ANY);

	if (!s)
		return -1;
	buf_printf(b, "%s\"%s\":%s", first ? "" : ",", key, s);
	free(s);
	return 0;
}

static int parse_json_or_null(const char *text, const char *what, json_t **out, struct err *err)
{
	json_error_t je;

	if (!text) {
		*out = json_null();
		return 0;
	}
	*out = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	if (!*out)
		return err_set(err, EINVAL, "%s: invalid JSON at line %d column %d: %s", what, je.line,
			       je.column, je.text);
	return 0;
}

int eif_metadata_json(const struct eif_metadata *md, char **out, struct err *err)
{
	struct buf b = BUF_INIT;
	json_t *docker = NULL, *custom = NULL, *s;
	const struct {
		const char *key;
		const char *val;
	} bm[] = { { "BuildTime", md->build_time },     { "BuildTool", md->build_tool },
		   { "BuildToolVersion", md->build_tool_version }, { "OperatingSystem", md->os },
		   { "KernelVersion", md->kernel_version } };
	int rc = -1;

	if (parse_json_or_null(md->docker_info_json, "docker info", &docker, err) < 0 ||
	    parse_json_or_null(md->custom_json, "custom metadata", &custom, err) < 0)
		goto out;
	/* Top-level keys in EifIdentityInfo's declaration order; nested free-form values with
	 * sorted keys, as serde_json (without preserve_order) writes a Value. */
	buf_append_str(&b, "{");
	s = json_string(md->image_name);
	dump_member(&b, "ImageName", s, 0, true);
	json_decref(s);
	s = json_string(md->image_version);
	dump_member(&b, "ImageVersion", s, 0, false);
	json_decref(s);
	buf_append_str(&b, ",\"BuildMetadata\":{");
	for (size_t i = 0; i < 5; i++) {
		s = json_string(bm[i].val);
		dump_member(&b, bm[i].key, s, 0, i == 0);
		json_decref(s);
	}
	buf_append_str(&b, "}");
	if (dump_member(&b, "DockerInfo", docker, JSON_SORT_KEYS, false) < 0 ||
	    dump_member(&b, "CustomMetadata", custom, JSON_SORT_KEYS, false) < 0) {
		err_set(err, EINVAL, "metadata: cannot serialize");
		goto out;
	}
	buf_append_str(&b, "}");
	*out = (char *)steal_pointer(&b.data);
	rc = 0;
out:
	json_decref(docker);
	json_decref(custom);
	buf_free(&b);
	return rc;
}

json_t *eif_measurements_object(const struct eif_measurements *m, bool hash_algorithm)
{
	const uint8_t *pcrs[] = { m->pcr0, m->pcr1, m->pcr2, m->pcr8 };
	static const char *const names[] = { "PCR0", "PCR1", "PCR2", "PCR8" };
	json_t *o = json_object();
	char hex[PCR_HEX_LEN + 1];

	/* nitro-cli prints a BTreeMap: keys sorted, HashAlgorithm first */
	if (hash_algorithm)
		json_object_set_new(o, "HashAlgorithm", json_string("Sha384 { ... }"));
	for (size_t i = 0; i < (m->has_pcr8 ? 4u : 3u); i++) {
		pcr_hex(pcrs[i], hex);
		json_object_set_new(o, names[i], json_string(hex));
	}
	return o;
}

char *eif_measurements_json(const struct eif_measurements *m, bool hash_algorithm)
{
	json_t *outer = json_object();
	char *s;

	json_object_set_new(outer, "Measurements", eif_measurements_object(m, hash_algorithm));
	s = json_dumps(outer, JSON_INDENT(2));
	json_decref(outer);
	if (!s)
		abort();
	return s;
}

char *eif_default_build_time(void)
{
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	time_t t = time(NULL);
	struct tm tm;
	char s[64];

	if (sde && *sde) {
		char *end;
		long long v = strtoll(sde, &end, 10);

		if (!*end && v >= 0)
			t = (time_t)v;
	}
	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
	return strdup(s);
}

bool eif_rfc3339_valid(const char *s)
{
	/* YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) */
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	size_t i;
	int mon, day, hh, mm, ss;

	for (i = 0; shape[i]; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i] &&
		    !(shape[i] == 'T' && (s[i] == 't' || s[i] == ' ')))
			return false;
	}
	mon = (s[5] - '0') * 10 + s[6] - '0';
	day = (s[8] - '0') * 10 + s[9] - '0';
	hh = (s[11] - '0') * 10 + s[12] - '0';
	mm = (s[14] - '0') * 10 + s[15] - '0';
	ss = (s[17] - '0') * 10 + s[18] - '0';
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
		return false;
	if (s[i] == '.') {
		size_t f = ++i;

		while (s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == f)
			return false;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && !s[i + 1])
		return true;
	if ((s[i] == '+' || s[i] == '-') && s[i + 1] >= '0' && s[i + 1] <= '2' && s[i + 2] >= '0' &&
	    s[i + 2] <= '9' && s[i + 3] == ':' && s[i + 4] >= '0' && s[i + 4] <= '5' && s[i + 5] >= '0' &&
	    s[i + 5] <= '9' && !s[i + 6])
		return true;
	return false;
}

int eif_sign_file(const char *in_path, const char *out_path, const char *cert_pem, const char *key_pem,
		  struct eif_measurements *m, struct err *err)
{
	struct eif_info *in = NULL;
	struct eif_writer *w = NULL;
	autoclose int fd = -1;
	int rc = -1;

	if (eif_read(in_path, &in, err) < 0)
		return -1;
	/* The old signature does not matter (it is replaced); everything else must hold. */
	in->has_signature = false;
	if (eif_info_check(in, in_path, err) < 0)
		goto out;
	fd = open(in_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err_sys(err, "%s", in_path);
		goto out;
	}
	if (eif_writer_open(&w, out_path, in->flags, err) < 0)
		goto out;
	for (size_t i = 0; i < in->n_sections; i++) {
		const struct eif_section_info *s = &in->sections[i];

		if (s->type == EIF_SEC_SIGNATURE)
			continue;
		if (eif_writer_add_fd_range(w, (enum eif_section_type)s->type, fd, s->offset + EIF_SEC_HDR_LEN,
					    s->size, err) < 0) {
			err_wrap(err, "%s", in_path);
			goto out;
		}
	}
	rc = eif_writer_finish(w, cert_pem, key_pem, m, err);
	w = NULL;
out:
	eif_writer_abort(w);
	eif_info_free(in);
	return rc;
}
