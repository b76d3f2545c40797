/* enclaver eif build|describe|pcr|extract|sign|bootstrap: enclave image files from raw parts. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/mem.h"
#include "cmd/cmd.h"
#include "eif/bootkit.h"
#include "eif/eif.h"
#include "eif/sign.h"

#define MAX_RAMDISKS (EIF_MAX_SECTIONS - 4)
#define MAX_CUSTOM_METADATA 4096

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));

	printf("%s\n", s);
	free(s);
	json_decref(j);
}

/* The kernel release from a bzImage's setup header ("6.1.0-27-amd64 (...)" -> "6.1.0"),
 * in the spirit of nitro-cli's reading of its kernel config; "unknown" otherwise. */
static char *kernel_version_of(const char *path)
{
	autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t hdr[0x210];
	char ver[128] = "";
	unsigned off;
	size_t n = 0;

	if (fd < 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) || memcmp(hdr + 0x202, "HdrS", 4))
		return strdup("unknown");
	off = (unsigned)(hdr[0x20e] | hdr[0x20f] << 8) + 0x200;
	if (pread(fd, ver, sizeof(ver) - 1, off) <= 0)
		return strdup("unknown");
	while (n < sizeof(ver) - 1 && ver[n] && ver[n] != ' ' && ver[n] != '-')
		n++;
	ver[n] = 0;
	return strdup(n ? ver : "unknown");
}

static char *basename_stem(const char *path)
{
	const char *b = strrchr(path, '/');
	char *s = strdup(b ? b + 1 : path);
	size_t n = strlen(s);

	if (n > 4 && !strcmp(s + n - 4, ".eif"))
		s[n - 4] = 0;
	return s;
}

static void trim(struct buf *b)
{
	size_t start = 0;

	while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r' ||
			  b->data[b->len - 1] == ' ' || b->data[b->len - 1] == '\t'))
		b->len--;
	while (start < b->len && (b->data[start] == ' ' || b->data[start] == '\t' || b->data[start] == '\n'))
		start++;
	memmove(b->data, b->data + start, b->len - start);
	b->len -= start;
	buf_reserve(b, 0);
	b->data[b->len] = 0;
}

static int eif_build_cmd(int argc, char **argv)
{
	enum { O_NAME = 256, O_VERSION, O_BUILD_TIME, O_BUILD_TOOL, O_BUILD_TOOL_VERSION, O_OS,
	       O_KVER, O_CUSTOM, O_CERT, O_KEY, O_CMDLINE_FILE, O_ARCH };
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "cmdline-file", required_argument, NULL, O_CMDLINE_FILE },
		{ "ramdisk", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, 'o' },
		{ "signing-certificate", required_argument, NULL, O_CERT },
		{ "private-key", required_argument, NULL, O_KEY },
		{ "name", required_argument, NULL, O_NAME },
		{ "version", required_argument, NULL, O_VERSION },
		{ "build-time", required_argument, NULL, O_BUILD_TIME },
		{ "build-tool", required_argument, NULL, O_BUILD_TOOL },
		{ "build-tool-version", required_argument, NULL, O_BUILD_TOOL_VERSION },
		{ "os", required_argument, NULL, O_OS },
		{ "kernel-version", required_argument, NULL, O_KVER },
		{ "custom-metadata", required_argument, NULL, O_CUSTOM },
		{ "arch", required_argument, NULL, O_ARCH },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *kernel = NULL, *cmdline = NULL, *cmdline_file = NULL, *out = NULL, *cert = NULL,
		   *key = NULL, *custom_file = NULL, *ramdisks[MAX_RAMDISKS];
	struct eif_metadata md = { .image_version = "1.0", .build_tool = "enclaver",
				   .build_tool_version = ENCLAVER_VERSION, .os = "Linux" };
	autofree char *def_name = NULL, *def_time = NULL, *def_kver = NULL, *md_json = NULL;
	struct buf cmd = BUF_INIT, custom = BUF_INIT;
	struct eif_writer *w = NULL;
	struct eif_measurements m;
	struct err err = { 0 };
	size_t n_ramdisks = 0;
	uint16_t flags = 0;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "k:c:r:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': kernel = optarg; break;
		case 'c': cmdline = optarg; break;
		case O_CMDLINE_FILE: cmdline_file = optarg; break;
		case 'r':
			if (n_ramdisks == MAX_RAMDISKS) {
				log_error("at most %d ramdisks fit in an EIF", MAX_RAMDISKS);
				return EXIT_USAGE;
			}
			ramdisks[n_ramdisks++] = optarg;
			break;
		case 'o': out = optarg; break;
		case O_CERT: cert = optarg; break;
		case O_KEY: key = optarg; break;
		case O_NAME: md.image_name = optarg; break;
		case O_VERSION: md.image_version = optarg; break;
		case O_BUILD_TIME: md.build_time = optarg; break;
		case O_BUILD_TOOL: md.build_tool = optarg; break;
		case O_BUILD_TOOL_VERSION: md.build_tool_version = optarg; break;
		case O_OS: md.os = optarg; break;
		case O_KVER: md.kernel_version = optarg; break;
		case O_CUSTOM: custom_file = optarg; break;
		case O_ARCH:
			if (!strcmp(optarg, "x86_64")) {
				flags = 0;
			} else if (!strcmp(optarg, "aarch64")) {
				flags = EIF_FLAG_ARM64;
			} else {
				log_error("--arch: \"%s\" is not x86_64 or aarch64", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			return cmd_help("eif build");
		default:
			return cmd_bad_option("eif build", argv, "k:c:r:o:h", opts);
		}
	}
	if (optind != argc) {
		log_error("unexpected argument \"%s\"", argv[optind]);
		return EXIT_USAGE;
	}
	if (!kernel || !out || !n_ramdisks || !!cmdline == !!cmdline_file) {
		log_error("eif build needs --kernel, exactly one of --cmdline/--cmdline-file, at least one --ramdisk and -o OUT");
		return EXIT_USAGE;
	}
	if (!!cert != !!key) {
		log_error("signing needs both --signing-certificate and --private-key");
		return EXIT_USAGE;
	}
	if (md.build_time && !eif_rfc3339_valid(md.build_time)) {
		log_error("--build-time: \"%s\" is not an RFC 3339 date-time (e.g. 2024-01-01T00:00:00+00:00)",
			  md.build_time);
		return EXIT_USAGE;
	}
	if (cmdline_file) {
		if (fs_read_file(cmdline_file, EIF_MAX_CMDLINE_LEN, &cmd, &err) < 0) {
			log_error("--cmdline-file: %s", err.msg);
			goto out;
		}
		trim(&cmd); /* nitro-cli trims the blob file: no trailing newline in the section */
	} else {
		buf_append_str(&cmd, cmdline);
	}
	if (custom_file) {
		if (fs_read_file(custom_file, MAX_CUSTOM_METADATA, &custom, &err) < 0) {
			log_error("--custom-metadata: %s", err.msg);
			goto out;
		}
		md.custom_json = buf_cstr(&custom);
	}
	if (!md.image_name)
		md.image_name = def_name = basename_stem(out);
	if (!md.build_time)
		md.build_time = def_time = eif_default_build_time();
	if (!md.kernel_version)
		md.kernel_version = def_kver = kernel_version_of(kernel);
	if (eif_metadata_json(&md, &md_json, &err) < 0) {
		log_error("%s%s", custom_file ? "--custom-metadata: " : "", err.msg);
		goto out;
	}
	if (eif_writer_open(&w, out, flags, &err) < 0 ||
	    eif_writer_add_file(w, EIF_SEC_KERNEL, kernel, &err) < 0 ||
	    eif_writer_add_bytes(w, EIF_SEC_CMDLINE, cmd.data, cmd.len, &err) < 0 ||
	    eif_writer_add_bytes(w, EIF_SEC_METADATA, md_json, strlen(md_json), &err) < 0)
		goto fail;
	for (size_t i = 0; i < n_ramdisks; i++)
		if (eif_writer_add_file(w, EIF_SEC_RAMDISK, ramdisks[i], &err) < 0)
			goto fail;
	rc = eif_writer_finish(w, cert, key, &m, &err);
	w = NULL;
	if (rc < 0) {
		rc = 1;
		goto fail;
	}
	{
		char *json = eif_measurements_json(&m, true);

		printf("%s\n", json);
		free(json);
	}
	rc = 0;
	goto out;
fail:
	eif_writer_abort(w);
	log_error("cannot build %s: %s", out, err.msg);
	rc = 1;
out:
	buf_free(&cmd);
	buf_free(&custom);
	return rc;
}

static const char *arch_name(uint16_t flags)
{
	return flags & EIF_FLAG_ARM64 ? "aarch64" : "x86_64";
}

static int eif_describe_cmd(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	struct eif_info *in;
	struct err err = { 0 };
	bool as_json = false;
	json_t *o, *secs, *md = NULL;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			as_json = true;
			break;
		case 'h':
			return cmd_help("eif describe");
		default:
			return cmd_bad_option("eif describe", argv, "jh", opts);
		}
	}
	if (optind + 1 != argc) {
		log_error("usage: enclaver eif describe FILE [--json]");
		return EXIT_USAGE;
	}
	if (eif_read(argv[optind], &in, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	/* Measurements of a truncated or corrupt file are not the image's: print none of them, as
	 * they would be easy to copy into a key policy. */
	if (in->structure_error[0] || !in->crc_ok) {
		eif_info_check(in, argv[optind], &err);
		log_error("%s", err.msg);
		eif_info_free(in);
		return 1;
	}
	if (in->metadata) {
		json_error_t je;

		md = json_loads(in->metadata, JSON_DECODE_ANY, &je);
	}
	if (as_json) {
		o = json_object();
		json_object_set_new(o, "EifVersion", json_integer(in->version));
		json_object_set_new(o, "Arch", json_string(arch_name(in->flags)));
		json_object_set_new(o, "Measurements", eif_measurements_object(&in->m, true));
		json_object_set_new(o, "IsSigned", json_boolean(in->has_signature));
		json_object_set_new(o, "CheckCRC", json_boolean(in->crc_ok));
		if (in->has_signature)
			json_object_set_new(o, "SignatureCheck", json_boolean(in->signature_ok));
		json_object_set_new(o, "MetadataInfo", md ? json_incref(md) : json_null());
		secs = json_array();
		for (size_t i = 0; i < in->n_sections; i++)
			json_array_append_new(secs, json_pack("{s:s, s:I, s:I}", "Type",
							      eif_section_name(in->sections[i].type), "Offset",
							      (json_int_t)in->sections[i].offset, "Size",
							      (json_int_t)in->sections[i].size));
		json_object_set_new(o, "Sections", secs);
		if (in->structure_error[0])
			json_object_set_new(o, "Error", json_string(in->structure_error));
		print_json(o);
	} else {
		char hex[PCR_HEX_LEN + 1];
		const char *name = md ? json_string_value(json_object_get(md, "ImageName")) : NULL;
		const char *ver = md ? json_string_value(json_object_get(md, "ImageVersion")) : NULL;
		json_t *bm = md ? json_object_get(md, "BuildMetadata") : NULL;

		printf("EIF version:   %u (%s)\n", in->version, arch_name(in->flags));
		printf("CRC:           %s (stored %08x, computed %08x)\n", in->crc_ok ? "ok" : "MISMATCH",
		       in->crc_stored, in->crc_computed);
		if (in->has_signature)
			printf("Signature:     %s%s%s\n", in->signature_ok ? "valid" : "INVALID",
			       in->signature_error[0] ? ": " : "", in->signature_error);
		else
			printf("Signature:     none\n");
		if (name)
			printf("Image:         %s %s\n", name, ver ? ver : "");
		if (bm)
			printf("Built:         %s by %s %s (%s %s)\n",
			       json_string_value(json_object_get(bm, "BuildTime")) ?: "?",
			       json_string_value(json_object_get(bm, "BuildTool")) ?: "?",
			       json_string_value(json_object_get(bm, "BuildToolVersion")) ?: "?",
			       json_string_value(json_object_get(bm, "OperatingSystem")) ?: "?",
			       json_string_value(json_object_get(bm, "KernelVersion")) ?: "?");
		pcr_hex(in->m.pcr0, hex);
		printf("PCR0:          %s\n", hex);
		pcr_hex(in->m.pcr1, hex);
		printf("PCR1:          %s\n", hex);
		pcr_hex(in->m.pcr2, hex);
		printf("PCR2:          %s\n", hex);
		if (in->m.has_pcr8) {
			pcr_hex(in->m.pcr8, hex);
			printf("PCR8:          %s\n", hex);
		}
		printf("Sections:\n  #  type       offset          size\n");
		for (size_t i = 0; i < in->n_sections; i++)
			printf("  %-2zu %-10s %-15llu %llu\n", i, eif_section_name(in->sections[i].type),
			       (unsigned long long)in->sections[i].offset, (unsigned long long)in->sections[i].size);
	}
	rc = eif_info_check(in, argv[optind], &err) < 0 ? 1 : 0; /* what is left: the signature */
	if (rc)
		log_error("%s", err.msg);
	json_decref(md);
	eif_info_free(in);
	return rc;
}

static int eif_pcr_cmd(int argc, char **argv)
{
	enum { O_CERT = 256 };
	static const struct option opts[] = { { "input", required_argument, NULL, 'i' },
					      { "signing-certificate", required_argument, NULL, O_CERT },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	const char *input = NULL, *cert = NULL;
	uint8_t pcr[PCR_LEN];
	char hex[PCR_HEX_LEN + 1];
	struct err err = { 0 };
	json_t *o;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "i:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i': input = optarg; break;
		case O_CERT: cert = optarg; break;
		case 'h':
			return cmd_help("eif pcr");
		default:
			return cmd_bad_option("eif pcr", argv, "i:h", opts);
		}
	}
	if (!!input == !!cert || optind != argc) {
		log_error("usage: enclaver eif pcr (--input FILE | --signing-certificate PEM)");
		return EXIT_USAGE;
	}
	if ((input ? pcr_of_file(input, pcr, &err) : eif_pcr_of_cert(cert, pcr, &err)) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	pcr_hex(pcr, hex);
	o = json_object();
	json_object_set_new(o, input ? "PCR" : "PCR8", json_string(hex));
	print_json(o);
	return 0;
}

static int copy_range(int in, uint64_t off, uint64_t len, const char *out, struct err *err)
{
	struct atomic_file af;

	if (atomic_file_open(&af, out, 0644, err) < 0)
		return -1;
	if (fs_copy_range(in, off, len, af.fd, err) < 0) {
		err_wrap(err, "%s", out);
		atomic_file_abort(&af);
		return -1;
	}
	return atomic_file_commit(&af, err);
}

static int eif_extract_cmd(int argc, char **argv)
{
	enum { O_METADATA = 256, O_SIGNATURE };
	static const struct option opts[] = { { "kernel", no_argument, NULL, 'k' },
					      { "cmdline", no_argument, NULL, 'c' },
					      { "ramdisk", required_argument, NULL, 'r' },
					      { "metadata", no_argument, NULL, O_METADATA },
					      { "signature", no_argument, NULL, O_SIGNATURE },
					      { "output", required_argument, NULL, 'o' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	const char *out = NULL, *file;
	int type = -1, picks = 0, c, idx;
	unsigned n = 0;
	struct eif_info *in;
	struct err err = { 0 };
	autoclose int fd = -1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "kcr:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': type = EIF_SEC_KERNEL; picks++; break;
		case 'c': type = EIF_SEC_CMDLINE; picks++; break;
		case O_METADATA: type = EIF_SEC_METADATA; picks++; break;
		case O_SIGNATURE: type = EIF_SEC_SIGNATURE; picks++; break;
		case 'r': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*end || !*optarg || v >= EIF_MAX_SECTIONS) {
				log_error("--ramdisk: \"%s\" is not a ramdisk index (0 is the bootstrap)", optarg);
				return EXIT_USAGE;
			}
			type = EIF_SEC_RAMDISK;
			n = (unsigned)v;
			picks++;
			break;
		}
		case 'o': out = optarg; break;
		case 'h':
			return cmd_help("eif extract");
		default:
			return cmd_bad_option("eif extract", argv, "kcr:o:h", opts);
		}
	}
	if (picks != 1 || !out || optind + 1 != argc) {
		log_error("usage: enclaver eif extract FILE (--kernel | --cmdline | --ramdisk N | --metadata | --signature) -o OUT");
		return EXIT_USAGE;
	}
	file = argv[optind];
	if (eif_read(file, &in, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	if (eif_info_check(in, file, &err) < 0) {
		log_error("%s", err.msg);
		eif_info_free(in);
		return 1;
	}
	idx = eif_info_find(in, (enum eif_section_type)type, n);
	if (idx < 0) {
		log_error("%s has no %s section%s", file, eif_section_name((unsigned)type),
			  type == EIF_SEC_RAMDISK ? " with that index" : "");
		eif_info_free(in);
		return 1;
	}
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || copy_range(fd, in->sections[idx].offset + EIF_SEC_HDR_LEN, in->sections[idx].size, out,
				 &err) < 0) {
		if (fd < 0)
			err_sys(&err, "%s", file);
		log_error("%s", err.msg);
		eif_info_free(in);
		return 1;
	}
	eif_info_free(in);
	return 0;
}

static int eif_sign_cmd(int argc, char **argv)
{
	enum { O_CERT = 256, O_KEY };
	static const struct option opts[] = { { "signing-certificate", required_argument, NULL, O_CERT },
					      { "private-key", required_argument, NULL, O_KEY },
					      { "output", required_argument, NULL, 'o' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	const char *cert = NULL, *key = NULL, *out = NULL;
	struct eif_measurements m;
	struct err err = { 0 };
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case O_CERT: cert = optarg; break;
		case O_KEY: key = optarg; break;
		case 'o': out = optarg; break;
		case 'h':
			return cmd_help("eif sign");
		default:
			return cmd_bad_option("eif sign", argv, "o:h", opts);
		}
	}
	if (!cert || !key || optind + 1 != argc) {
		log_error("usage: enclaver eif sign FILE --signing-certificate PEM --private-key PEM [-o OUT]");
		return EXIT_USAGE;
	}
	if (eif_sign_file(argv[optind], out ? out : argv[optind], cert, key, &m, &err) < 0) {
		log_error("cannot sign %s: %s", argv[optind], err.msg);
		return 1;
	}
	{
		char *json = eif_measurements_json(&m, true);

		printf("%s\n", json);
		free(json);
	}
	return 0;
}

static int eif_bootstrap_cmd(int argc, char **argv)
{
	static const struct option opts[] = { { "init", required_argument, NULL, 'i' },
					      { "nsm", required_argument, NULL, 'n' },
					      { "modules", required_argument, NULL, 'm' },
					      { "output", required_argument, NULL, 'o' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	const char *init = NULL, *nsm = NULL, *out = NULL, *modules = NULL;
	struct err err = { 0 };
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "i:n:m:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i': init = optarg; break;
		case 'n': nsm = optarg; break;
		case 'm': modules = optarg; break;
		case 'o': out = optarg; break;
		case 'h':
			return cmd_help("eif bootstrap");
		default:
			return cmd_bad_option("eif bootstrap", argv, "i:n:m:o:h", opts);
		}
	}
	if (!init || !out || optind != argc) {
		log_error("usage: enclaver eif bootstrap --init F [--nsm nsm.ko] [--modules DIR] -o OUT");
		return EXIT_USAGE;
	}
	if (bootkit_bootstrap_file(init, nsm, modules, out, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	return 0;
}

int cmd_eif(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} subs[] = { { "build", eif_build_cmd },     { "describe", eif_describe_cmd },
		     { "pcr", eif_pcr_cmd },         { "extract", eif_extract_cmd },
		     { "sign", eif_sign_cmd },       { "bootstrap", eif_bootstrap_cmd } };

	if (argc >= 2)
		for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
			if (!strcmp(argv[1], subs[i].name))
				return subs[i].fn(argc - 1, argv + 1);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return cmd_help("eif");
	log_error("enclaver eif: name a command (build, describe, pcr, extract, sign, bootstrap); see 'enclaver eif --help'");
	return EXIT_USAGE;
}
