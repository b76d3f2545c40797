/*
 * EIF reader. Runs in the CLI and in enclaver-run on images that may come from anyone: the
 * header is checked field by field, sections are walked sequentially as AWS's reader does, and
 * only bounded sections (cmdline, metadata, signature) are kept in memory.
 */
#include "eif/eif.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/buf.h"
#include "base/crc32.h"
#include "base/fs.h"
#include "base/mem.h"
#include "crypto/sha.h"
#include "eif/sign.h"

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

struct walk {
	struct eif_info *info;
	const uint8_t *hdr;
	uint8_t sh[EIF_SEC_HDR_LEN];
	size_t sh_got;
	uint64_t pos;      /* file offset */
	uint64_t left;     /* data bytes left in the current section; valid when in_section */
	bool in_section;
	bool broken;       /* stop interpreting sections after the first layout error */
	unsigned n_ramdisks;
	struct sha_ctx h0, h1, h2;
	struct buf keep;   /* cmdline / metadata / signature being collected */
};

__attribute__((format(printf, 2, 3))) static void broken(struct walk *w, const char *fmt, ...)
{
	va_list ap;

	if (w->broken)
		return;
	w->broken = true;
	va_start(ap, fmt);
	vsnprintf(w->info->structure_error, sizeof(w->info->structure_error), fmt, ap);
	va_end(ap);
}

static uint64_t keep_limit(unsigned type)
{
	switch (type) {
	case EIF_SEC_CMDLINE:
		return EIF_MAX_CMDLINE_LEN;
	case EIF_SEC_METADATA:
		return EIF_MAX_METADATA_LEN;
	case EIF_SEC_SIGNATURE:
		return EIF_MAX_SIGNATURE_LEN;
	default:
		return 0;
	}
}

static void section_start(struct walk *w)
{
	struct eif_info *in = w->info;
	size_t i = in->n_sections;
	uint16_t type = be16(w->sh), flags = be16(w->sh + 2);
	uint64_t size = be64(w->sh + 4), off = w->pos - EIF_SEC_HDR_LEN;

	if (i >= in->num_sections)
		return broken(w, "data after the last of the %u sections at offset %llu", in->num_sections,
			      (unsigned long long)off);
	if (type == EIF_SEC_INVALID || type > EIF_SEC_METADATA)
		return broken(w, "section %zu has invalid type %u", i, type);
	if (flags != 0)
		return broken(w, "section %zu has non-zero flags 0x%x", i, flags);
	if (be64(w->hdr + 28 + 8 * i) != off)
		return broken(w, "section %zu starts at %llu but the header says %llu", i,
			      (unsigned long long)off, (unsigned long long)be64(w->hdr + 28 + 8 * i));
	if (be64(w->hdr + 28 + 8 * EIF_MAX_SECTIONS + 8 * i) != size)
		return broken(w, "section %zu is %llu bytes but the header says %llu", i,
			      (unsigned long long)size,
			      (unsigned long long)be64(w->hdr + 28 + 8 * EIF_MAX_SECTIONS + 8 * i));
	if (size > in->file_size - w->pos)
		return broken(w, "section %zu (%s, %llu bytes) runs past the end of the file", i,
			      eif_section_name(type), (unsigned long long)size);
	if (keep_limit(type) && size > keep_limit(type))
		return broken(w, "%s section of %llu bytes exceeds the %llu-byte limit", eif_section_name(type),
			      (unsigned long long)size, (unsigned long long)keep_limit(type));
	in->sections[i] = (struct eif_section_info){ type, flags, off, size };
	in->n_sections++;
	w->in_section = true;
	w->left = size;
	buf_reset(&w->keep);
}

static void section_end(struct walk *w)
{
	struct eif_info *in = w->info;
	struct eif_section_info *s = &in->sections[in->n_sections - 1];
	char **dst = NULL;

	w->in_section = false;
	if (s->type == EIF_SEC_RAMDISK)
		w->n_ramdisks++;
	if (s->type == EIF_SEC_CMDLINE)
		dst = &in->cmdline;
	else if (s->type == EIF_SEC_METADATA)
		dst = &in->metadata;
	if (dst && !*dst) {
		*dst = strndup(buf_cstr(&w->keep), w->keep.len);
		if (!*dst)
			abort();
	}
	if (s->type == EIF_SEC_SIGNATURE && !in->signature) {
		in->signature = malloc(w->keep.len ? w->keep.len : 1);
		if (!in->signature)
			abort();
		memcpy(in->signature, w->keep.data, w->keep.len);
		in->signature_len = w->keep.len;
		in->has_signature = true;
	}
}

static void feed(struct walk *w, const uint8_t *p, size_t n)
{
	while (n && !w->broken) {
		if (!w->in_section) {
			size_t take = EIF_SEC_HDR_LEN - w->sh_got < n ? EIF_SEC_HDR_LEN - w->sh_got : n;

			memcpy(w->sh + w->sh_got, p, take);
			w->sh_got += take;
			w->pos += take;
			p += take;
			n -= take;
			if (w->sh_got == EIF_SEC_HDR_LEN) {
				w->sh_got = 0;
				section_start(w);
				if (!w->broken && w->left == 0)
					section_end(w);
			}
		} else {
			const struct eif_section_info *s = &w->info->sections[w->info->n_sections - 1];
			size_t take = w->left < n ? (size_t)w->left : n;

			if (s->type == EIF_SEC_KERNEL || s->type == EIF_SEC_CMDLINE || s->type == EIF_SEC_RAMDISK)
				sha_update(&w->h0, p, take);
			if (s->type == EIF_SEC_KERNEL || s->type == EIF_SEC_CMDLINE ||
			    (s->type == EIF_SEC_RAMDISK && w->n_ramdisks == 0))
				sha_update(&w->h1, p, take);
			else if (s->type == EIF_SEC_RAMDISK)
				sha_update(&w->h2, p, take);
			if (keep_limit(s->type))
				buf_append(&w->keep, p, take);
			w->left -= take;
			w->pos += take;
			p += take;
			n -= take;
			if (w->left == 0)
				section_end(w);
		}
	}
}

static void check_layout(struct walk *w)
{
	struct eif_info *in = w->info;
	unsigned kernels = 0, cmdlines = 0, metas = 0, sigs = 0;
	bool ramdisk_before_kernel = false;

	if (w->broken)
		return;
	if (w->in_section || w->sh_got)
		return broken(w, "the file ends inside section %zu", in->n_sections);
	if (in->n_sections != in->num_sections)
		return broken(w, "the header lists %u sections but the file holds %zu", in->num_sections,
			      in->n_sections);
	for (size_t i = 0; i < in->n_sections; i++) {
		switch (in->sections[i].type) {
		case EIF_SEC_KERNEL:
			kernels++;
			break;
		case EIF_SEC_CMDLINE:
			cmdlines++;
			break;
		case EIF_SEC_METADATA:
			metas++;
			break;
		case EIF_SEC_SIGNATURE:
			sigs++;
			break;
		case EIF_SEC_RAMDISK:
			ramdisk_before_kernel |= kernels == 0;
			break;
		}
	}
	if (kernels != 1 || cmdlines != 1)
		return broken(w, "an EIF needs exactly one kernel and one cmdline section (found %u and %u)",
			      kernels, cmdlines);
	if (w->n_ramdisks == 0)
		return broken(w, "the EIF has no ramdisk section");
	if (ramdisk_before_kernel)
		return broken(w, "a ramdisk comes before the kernel");
	if (metas > 1 || sigs > 1)
		return broken(w, "more than one metadata or signature section");
	if (in->version >= 4 && metas == 0)
		return broken(w, "version 4 EIFs must have a metadata section");
	if (in->version < 3 && sigs)
		return broken(w, "version %u EIFs cannot carry a signature section", in->version);
}

static void check_header(struct walk *w)
{
	struct eif_info *in = w->info;

	if (in->version < 2 || in->version > EIF_VERSION)
		return broken(w, "unsupported EIF version %u (this enclaver reads 2 to 4)", in->version);
	if (in->flags & ~EIF_FLAG_ARM64)
		return broken(w, "reserved header flags set (0x%x)", in->flags);
	if (in->num_sections < 2 || in->num_sections > EIF_MAX_SECTIONS)
		return broken(w, "section count %u out of range (2-32)", in->num_sections);
	for (size_t i = in->num_sections; i < EIF_MAX_SECTIONS; i++)
		if (be64(w->hdr + 28 + 8 * i) || be64(w->hdr + 28 + 8 * EIF_MAX_SECTIONS + 8 * i))
			return broken(w, "unused section slot %zu is not zero", i);
}

int eif_read(const char *path, struct eif_info **out, struct err *err)
{
	autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	autofree uint8_t *chunk = NULL;
	uint8_t hdr[EIF_HDR_LEN], d[PCR_LEN];
	struct eif_info *in;
	struct walk w = { 0 };
	struct stat st;
	uLong crc;
	ssize_t n;

	if (fd < 0)
		return err_sys(err, "%s", path);
	if (fstat(fd, &st) < 0)
		return err_sys(err, "%s", path);
	if (!S_ISREG(st.st_mode))
		return err_set(err, EINVAL, "%s: not a regular file", path);
	n = fs_read_full(fd, hdr, sizeof(hdr));
	if (n < 0)
		return err_sys(err, "%s: read", path);
	if (n < EIF_HDR_LEN || memcmp(hdr, ".eif", 4) != 0)
		return err_set(err, EINVAL, "%s: not an EIF file (no \".eif\" header)", path);
	in = calloc(1, sizeof(*in));
	chunk = malloc(1 << 20);
	if (!in || !chunk)
		abort();
	in->version = be16(hdr + 4);
	in->flags = be16(hdr + 6);
	in->default_mem = be64(hdr + 8);
	in->default_cpus = be64(hdr + 16);
	in->num_sections = be16(hdr + 26);
	in->crc_stored = be32(hdr + EIF_HDR_LEN - 4);
	in->file_size = (uint64_t)st.st_size;
	w.info = in;
	w.hdr = hdr;
	w.pos = EIF_HDR_LEN;
	sha_init(&w.h0, "SHA384");
	sha_init(&w.h1, "SHA384");
	sha_init(&w.h2, "SHA384");
	check_header(&w);
	/* The CRC covers the header (less its CRC field) and every byte after it: for a valid
	 * layout that is exactly every section header and its data, in file order. */
	crc = crc32_update(0, hdr, EIF_HDR_LEN - 4);
	while ((n = fs_read_full(fd, chunk, 1 << 20)) > 0) {
		crc = (uLong)crc32_update((uint32_t)crc, chunk, (size_t)n);
		feed(&w, chunk, (size_t)n);
	}
	if (n < 0) {
		err_sys(err, "%s: read", path);
		sha_free(&w.h0);
		sha_free(&w.h1);
		sha_free(&w.h2);
		buf_free(&w.keep);
		eif_info_free(in);
		return -1;
	}
	in->crc_computed = (uint32_t)crc;
	in->crc_ok = in->crc_computed == in->crc_stored;
	check_layout(&w);
	sha_final(&w.h0, d);
	pcr_from_digest(d, in->m.pcr0);
	sha_final(&w.h1, d);
	pcr_from_digest(d, in->m.pcr1);
	sha_final(&w.h2, d);
	pcr_from_digest(d, in->m.pcr2);
	buf_free(&w.keep);
	if (in->has_signature) {
		struct eif_signature_result res;
		struct err serr = { 0 };

		if (eif_signature_check(in->signature, in->signature_len, in->m.pcr0, &res, &serr) < 0) {
			snprintf(in->signature_error, sizeof(in->signature_error), "%s", serr.msg);
		} else {
			memcpy(in->m.pcr8, res.pcr8, PCR_LEN);
			in->m.has_pcr8 = true;
			in->signing_cert_pem = res.cert_pem;
			in->signature_ok = res.verified;
			if (!res.verified)
				snprintf(in->signature_error, sizeof(in->signature_error), "%s", serr.msg);
			else if (!res.cert_time_valid)
				snprintf(in->signature_error, sizeof(in->signature_error),
					 "the signing certificate is not valid at this time");
		}
	}
	*out = in;
	return 0;
}

void eif_info_free(struct eif_info *info)
{
	if (!info)
		return;
	free(info->cmdline);
	free(info->metadata);
	free(info->signature);
	free(info->signing_cert_pem);
	free(info);
}

int eif_info_check(const struct eif_info *info, const char *path, struct err *err)
{
	if (info->structure_error[0])
		return err_set(err, EINVAL, "%s: invalid EIF: %s", path, info->structure_error);
	if (!info->crc_ok)
		return err_set(err, EINVAL,
			       "%s: CRC mismatch (stored %08x, computed %08x): the image is corrupt; rebuild or re-download it",
			       path, info->crc_stored, info->crc_computed);
	if (info->has_signature && (!info->signature_ok || info->signature_error[0]))
		return err_set(err, EINVAL, "%s: signature check failed: %s", path, info->signature_error);
	return 0;
}

int eif_info_find(const struct eif_info *info, enum eif_section_type type, unsigned n)
{
	for (size_t i = 0; i < info->n_sections; i++)
		if (info->sections[i].type == type && n-- == 0)
			return (int)i;
	return -1;
}
