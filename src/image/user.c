/* USER resolution (see user.h), following runc's libcontainer/user GetExecUser. */
#include "image/user.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_ID 4294967294u /* (uid_t)-1 means "no change" to the kernel */
#define MAX_FIELD 4096

/* A decimal id, digits only and in range. */
static bool parse_id(const char *s, size_t n, uint32_t *out)
{
	uint64_t v = 0;

	if (!n || n > 10)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > MAX_ID)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* The fields of one line, split at ':' (at most max; the last takes the rest). */
struct fields {
	const char *p[7];
	size_t n[7];
	size_t count;
};

static void split(const char *line, size_t len, size_t max, struct fields *f)
{
	size_t start = 0;

	f->count = 0;
	for (size_t i = 0; i <= len && f->count < max; i++) {
		if (i == len || (line[i] == ':' && f->count + 1 < max)) {
			f->p[f->count] = line + start;
			f->n[f->count] = i - start;
			f->count++;
			start = i + 1;
		}
	}
}

/* Calls fn on each line, trimmed of surrounding white space as runc trims it; stops when fn
 * returns true. */
static void each_line(const char *data, size_t len, bool (*fn)(const char *line, size_t n, void *ctx), void *ctx)
{
	size_t i = 0;

	while (data && i < len) {
		size_t end = i, a, b;

		while (end < len && data[end] != '\n')
			end++;
		a = i;
		b = end;
		while (a < b && isspace((unsigned char)data[a]))
			a++;
		while (b > a && isspace((unsigned char)data[b - 1]))
			b--;
		if (b > a && fn(data + a, b - a, ctx))
			return;
		i = end + 1;
	}
}

static bool field_is(const struct fields *f, size_t i, const char *s, size_t n)
{
	return i < f->count && f->n[i] == n && !memcmp(f->p[i], s, n);
}

struct user_match {
	const char *name; /* NULL: match by uid */
	size_t name_len;
	uint32_t uid;
	bool found;
	char matched[256];
	uint32_t m_uid, m_gid;
	char home[MAX_FIELD];
};

/* name:password:uid:gid:gecos:home:shell */
static bool user_line(const char *line, size_t n, void *ctx)
{
	struct user_match *m = ctx;
	struct fields f;
	uint32_t uid, gid;

	split(line, n, 7, &f);
	if (f.count < 4 || !parse_id(f.p[2], f.n[2], &uid) || !parse_id(f.p[3], f.n[3], &gid) ||
	    f.n[0] >= sizeof(m->matched))
		return false; /* a malformed entry names no one */
	if (m->name ? !field_is(&f, 0, m->name, m->name_len) : uid != m->uid)
		return false;
	m->found = true;
	memcpy(m->matched, f.p[0], f.n[0]);
	m->matched[f.n[0]] = 0;
	m->m_uid = uid;
	m->m_gid = gid;
	if (f.count >= 6 && f.n[5] && f.n[5] < sizeof(m->home)) {
		memcpy(m->home, f.p[5], f.n[5]);
		m->home[f.n[5]] = 0;
	}
	return true; /* the first match wins */
}

struct group_match {
	const char *name; /* the group asked for by name, or */
	size_t name_len;
	bool by_gid;      /* by number, or */
	uint32_t gid;
	const char *member; /* every group listing this user */
	struct image_user *u;
	bool found, too_many;
	uint32_t m_gid;
};

/* name:password:gid:member,member,... */
static bool group_line(const char *line, size_t n, void *ctx)
{
	struct group_match *m = ctx;
	struct fields f;
	uint32_t gid;

	split(line, n, 4, &f);
	if (f.count < 3 || !parse_id(f.p[2], f.n[2], &gid))
		return false;
	if (m->member) {
		size_t ml = strlen(m->member), s = 0;

		if (f.count < 4)
			return false;
		for (size_t i = 0; i <= f.n[3]; i++) {
			if (i < f.n[3] && f.p[3][i] != ',')
				continue;
			if (i - s == ml && !memcmp(f.p[3] + s, m->member, ml)) {
				if (m->u->n_groups == IMAGE_USER_MAX_GROUPS) {
					m->too_many = true;
					return true;
				}
				m->u->groups[m->u->n_groups++] = gid;
				break;
			}
			s = i + 1;
		}
		return false;
	}
	if (m->by_gid ? gid != m->gid : !field_is(&f, 0, m->name, m->name_len))
		return false;
	m->found = true;
	m->m_gid = gid;
	return true;
}

int image_user_resolve(const char *spec, const char *passwd, size_t passwd_len, const char *group, size_t group_len,
		       struct image_user *out, struct err *err)
{
	const char *colon = strchr(spec, ':');
	size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
	const char *garg = colon ? colon + 1 : "";
	size_t glen = strcspn(garg, ":");
	struct user_match um = { 0 };
	uint32_t n;
	bool unum = parse_id(spec, ulen, &n);

	memset(out, 0, sizeof(*out));
	snprintf(out->home, sizeof(out->home), "/");
	/* the user: by number when the spec is one, else by name; root when there is none */
	if (!ulen)
		um.uid = 0;
	else if (unum)
		um.uid = n;
	else {
		um.name = spec;
		um.name_len = ulen;
	}
	each_line(passwd, passwd_len, user_line, &um);
	if (um.found) {
		out->uid = um.m_uid;
		out->gid = um.m_gid;
		if (um.home[0])
			snprintf(out->home, sizeof(out->home), "%s", um.home);
	} else if (ulen && !unum) {
		return err_set(err, ENOENT, "USER %.*s: no such user in the image's /etc/passwd%s", (int)ulen, spec,
			       passwd ? "" : " (the image has none): name the user by number");
	} else if (ulen) {
		out->uid = n; /* a number with no entry: runs as that number, in group 0 */
	}
	/* the group: named ones replace the user's; otherwise the groups listing the user's name
	 * are its supplementary groups */
	if (glen) {
		struct group_match gm = { 0 };
		uint32_t g;
		bool gnum = parse_id(garg, glen, &g);

		if (gnum) {
			gm.by_gid = true;
			gm.gid = g;
		} else {
			gm.name = garg;
			gm.name_len = glen;
		}
		each_line(group, group_len, group_line, &gm);
		if (gm.found)
			out->gid = gm.m_gid;
		else if (gnum)
			out->gid = g;
		else
			return err_set(err, ENOENT, "USER %s: no group %.*s in the image's /etc/group%s", spec, (int)glen, garg,
				       group ? "" : " (the image has none): name the group by number");
	}
	/* Docker (since 20.10.18, CVE-2022-36109) puts the primary group first among the
	 * supplementary groups, then, for a user named without a group, those listing it */
	out->groups[out->n_groups++] = out->gid;
	if (!glen && um.found) {
		struct group_match gm = { .member = um.matched, .u = out };

		each_line(group, group_len, group_line, &gm);
		if (gm.too_many)
			return err_set(err, E2BIG, "USER %s: the image's /etc/group lists it in more than %d groups", spec,
				       IMAGE_USER_MAX_GROUPS - 1);
	}
	return 0;
}
