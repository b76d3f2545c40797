/* Development CA: P-384 throughout, SHA-384 signatures, like AWS's chain. */
#include "nitro/devca.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"

#define ROOT_DAYS 3650
#define INTER_DAYS 365
#define ORG "enclaver local development (not AWS)"

void devca_state_dir(char *out, size_t size)
{
	const char *s = getenv("ENCLAVER_STATE_DIR"), *x = getenv("XDG_DATA_HOME"), *h = getenv("HOME");

	if (s && *s)
		snprintf(out, size, "%s", s);
	else if (x && *x)
		snprintf(out, size, "%s/enclaver", x);
	else
		snprintf(out, size, "%s/.local/share/enclaver", h && *h && strcmp(h, "/") ? h : "/root");
}

void devca_root_path(const char *state_dir, char *out, size_t size)
{
	snprintf(out, size, "%s/dev-ca/root.pem", state_dir);
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!e)
		abort();
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

/* issuer NULL: self-signed. pathlen < 0: an end-entity (leaf) certificate. */
static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *issuer_key, X509 *issuer, const char *cn, int pathlen, time_t from,
		       long secs)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	uint8_t serial[16];
	BIGNUM *bn;
	char bc[64];

	if (!x || !name)
		abort();
	X509_set_version(x, 2);
	RAND_bytes(serial, sizeof(serial));
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC, (const unsigned char *)"ZZ", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)ORG, -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &from);
	X509_time_adj_ex(X509_getm_notAfter(x), 0, secs, &from);
	X509_set_pubkey(x, key);
	if (pathlen >= 0) {
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
		add_ext(x, issuer ? issuer : x, NID_basic_constraints, bc);
		add_ext(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
	} else {
		add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
	}
	add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
	if (!X509_sign(x, issuer_key, EVP_sha384()))
		abort();
	X509_NAME_free(name);
	return x;
}

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key, struct err *err)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int rc;

	if (cert)
		PEM_write_bio_X509(b, cert);
	else
		PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
	len = BIO_get_mem_data(b, &data);
	rc = fs_write_file_atomic(path, data, (size_t)len, cert ? 0644 : 0600, err);
	if (!cert)
		OPENSSL_cleanse(data, (size_t)len);
	BIO_free(b);
	return rc;
}

static void *read_pem(const char *path, bool is_key)
{
	FILE *f = fopen(path, "re");
	void *v;

	if (!f)
		return NULL;
	v = is_key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL) : (void *)PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return v;
}

static void to_der(X509 *x, struct buf *out)
{
	unsigned char *der = NULL;
	int len = i2d_X509(x, &der);

	buf_reset(out);
	if (len <= 0)
		abort();
	buf_append(out, der, (size_t)len);
	OPENSSL_free(der);
}

/* Valid for at least another day at now? */
static bool fresh(X509 *x, time_t now)
{
	time_t later = now + 86400;

	return X509_cmp_time(X509_get0_notBefore(x), &now) < 0 && X509_cmp_time(X509_get0_notAfter(x), &later) > 0;
}

int devca_open(const char *state_dir, struct devca **out, struct err *err)
{
	struct devca *ca = calloc(1, sizeof(*ca));
	char path[4200], lock[4200];
	EVP_PKEY *root_key = NULL;
	time_t now = time(NULL);
	int lfd = -1, rc = -1;

	if (!ca)
		abort();
	snprintf(ca->dir, sizeof(ca->dir), "%s/dev-ca", state_dir);
	if (fs_mkdir_p(ca->dir, 0700, err) < 0)
		goto out;
	/* two enclaves starting together must not make two roots */
	snprintf(lock, sizeof(lock), "%s/.lock", ca->dir);
	lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
		err_sys(err, "%s", lock);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/root.pem", ca->dir);
	ca->root = read_pem(path, false);
	snprintf(path, sizeof(path), "%s/intermediate.pem", ca->dir);
	ca->inter = read_pem(path, false);
	snprintf(path, sizeof(path), "%s/intermediate.key", ca->dir);
	ca->inter_key = read_pem(path, true);
	/* A fresh intermediate issued by a fresh root is all that signing needs: the root's key is
	 * read only to make a new one, so a container can be given the CA without it. */
	if (ca->root && fresh(ca->root, now) && ca->inter && ca->inter_key && fresh(ca->inter, now) &&
	    X509_check_issued(ca->root, ca->inter) == X509_V_OK) {
		rc = 0;
		goto done;
	}
	snprintf(path, sizeof(path), "%s/root.key", ca->dir);
	root_key = read_pem(path, true);
	/* a root that others trust is never replaced because its key is elsewhere */
	if (!root_key && ca->root && fresh(ca->root, now)) {
		err_set(err, ENOENT,
			"its intermediate needs renewing and %s is not here: run enclaver attest dev-root where it is", path);
		goto out;
	}
	if (!ca->root || !root_key || !fresh(ca->root, now)) {
		X509_free(ca->root);
		EVP_PKEY_free(root_key);
		root_key = EVP_EC_gen("P-384");
		ca->root = make_cert(root_key, root_key, NULL, "enclaver local development root (not AWS)", 1, now - 60,
				     (long)ROOT_DAYS * 86400);
		if (write_pem(path, NULL, root_key, err) < 0)
			goto out;
		snprintf(path, sizeof(path), "%s/root.pem", ca->dir);
		if (write_pem(path, ca->root, NULL, err) < 0)
			goto out;
		/* a new root makes the old intermediate useless */
		snprintf(path, sizeof(path), "%s/intermediate.pem", ca->dir);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/intermediate.key", ca->dir);
	if (!ca->inter || !ca->inter_key || !fresh(ca->inter, now) || X509_check_issued(ca->root, ca->inter) != X509_V_OK) {
		X509_free(ca->inter);
		EVP_PKEY_free(ca->inter_key);
		ca->inter_key = EVP_EC_gen("P-384");
		ca->inter = make_cert(ca->inter_key, root_key, ca->root, "enclaver local development intermediate (not AWS)",
				      0, now - 60, (long)INTER_DAYS * 86400);
		if (write_pem(path, NULL, ca->inter_key, err) < 0)
			goto out;
		snprintf(path, sizeof(path), "%s/intermediate.pem", ca->dir);
		if (write_pem(path, ca->inter, NULL, err) < 0)
			goto out;
	}
	rc = 0;
done:
	to_der(ca->root, &ca->root_der);
	to_der(ca->inter, &ca->inter_der);
out:
	EVP_PKEY_free(root_key);
	if (lfd >= 0)
		close(lfd);
	if (rc < 0) {
		devca_free(ca);
		return err_wrap(err, "development CA in %s", state_dir);
	}
	*out = ca;
	return 0;
}

int devca_leaf(struct devca *ca, const char *module_id, time_t now, struct err *err)
{
	char cn[256];

	if (ca->leaf && now >= ca->leaf_made && now - ca->leaf_made < DEVCA_LEAF_ROTATE_SECONDS)
		return 0;
	X509_free(ca->leaf);
	EVP_PKEY_free(ca->leaf_key);
	ca->leaf_key = EVP_EC_gen("P-384");
	if (!ca->leaf_key)
		return err_set(err, ENOMEM, "leaf key");
	snprintf(cn, sizeof(cn), "%s.enclaver-local", module_id);
	/* a few seconds of slack before now, as AWS's leaves have */
	ca->leaf = make_cert(ca->leaf_key, ca->inter_key, ca->inter, cn, -1, now - 3, DEVCA_LEAF_SECONDS);
	ca->leaf_made = now;
	to_der(ca->leaf, &ca->leaf_der);
	return 0;
}

int devca_tls_server(struct devca *ca, const char *const *dns, size_t n_dns, int days, X509 **cert, EVP_PKEY **key,
		     struct err *err)
{
	struct buf san = BUF_INIT;
	time_t now = time(NULL);

	*key = EVP_EC_gen("P-256");
	if (!*key)
		return err_set(err, ENOMEM, "TLS key");
	*cert = make_cert(*key, ca->inter_key, ca->inter, n_dns ? dns[0] : "localhost", -1, now - 60, (long)days * 86400);
	for (size_t i = 0; i < n_dns; i++)
		buf_printf(&san, "DNS:%s,", dns[i]);
	buf_append_str(&san, "IP:127.0.0.1");
	/* make_cert signed already: extensions added now need a new signature */
	add_ext(*cert, ca->inter, NID_subject_alt_name, buf_cstr(&san));
	add_ext(*cert, ca->inter, NID_ext_key_usage, "serverAuth");
	X509_sign(*cert, ca->inter_key, EVP_sha384());
	buf_free(&san);
	return 0;
}

void devca_free(struct devca *ca)
{
	if (!ca)
		return;
	X509_free(ca->root);
	X509_free(ca->inter);
	X509_free(ca->leaf);
	EVP_PKEY_free(ca->inter_key);
	EVP_PKEY_free(ca->leaf_key);
	buf_free(&ca->root_der);
	buf_free(&ca->inter_der);
	buf_free(&ca->leaf_der);
	free(ca);
}
