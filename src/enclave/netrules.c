/*
 * The xtables ABI, spoken directly: IPT_SO_GET_INFO names the table's hooks and how many counters
 * the kernel will hand back, IPT_SO_SET_REPLACE swaps in a whole new table (its builtin chains
 * each ending in an ACCEPT policy, then one ERROR entry). No iptables binary, lock file or
 * libiptc; the Nitro kernels have no nftables. Runs in odyn as root of the enclave; trusts the
 * kernel only.
 */
#include "enclave/netrules.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <errno.h>
#include <limits.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_tcpudp.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv4/ipt_REJECT.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <linux/netfilter_ipv6/ip6t_REJECT.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "eif/bootkit.h"
#include "eif/initfiles.h"

enum target { T_ACCEPT, T_REDIRECT, T_REJECT_RST, T_REJECT };

struct rule {
	int proto;	    /* 0: any */
	uint16_t dport;	    /* 0: any; needs proto */
	bool to_loopback;   /* -d 127.0.0.0/8 or ::1/128 */
	bool out_lo;	    /* -o lo */
	enum target target;
	uint16_t to_port;   /* REDIRECT */
};

struct family_ops {
	int af, level, get_info, set_replace;
	size_t entry_size;
	const char *modprefix; /* of the kernel's table modules: iptable_nat, ip6table_nat */
	const char *targets;   /* /proc/net/..._targets, to name what is missing */
	const char *matches;
};

static const struct family_ops v4 = { AF_INET, IPPROTO_IP, IPT_SO_GET_INFO, IPT_SO_SET_REPLACE,
				      XT_ALIGN(sizeof(struct ipt_entry)), "iptable_",
				      "/proc/net/ip_tables_targets", "/proc/net/ip_tables_matches" };
static const struct family_ops v6 = { AF_INET6, IPPROTO_IPV6, IP6T_SO_GET_INFO, IP6T_SO_SET_REPLACE,
				      XT_ALIGN(sizeof(struct ip6t_entry)), "ip6table_",
				      "/proc/net/ip6_tables_targets", "/proc/net/ip6_tables_matches" };

/* The entry's address part, as iptables fills it for -p, -d and -o. */
static void put_ip(const struct family_ops *f, void *entry, const struct rule *r)
{
	if (f->af == AF_INET) {
		struct ipt_ip *ip = &((struct ipt_entry *)entry)->ip;

		ip->proto = (uint16_t)r->proto;
		if (r->to_loopback) {
			ip->dst.s_addr = htonl(0x7f000000);
			ip->dmsk.s_addr = htonl(0xff000000);
		}
		if (r->out_lo) {
			strcpy(ip->outiface, "lo");
			memset(ip->outiface_mask, 0xff, 3); /* the name and its NUL: "lo" exactly */
		}
	} else {
		struct ip6t_ip6 *ip = &((struct ip6t_entry *)entry)->ipv6;

		if (r->proto) {
			ip->proto = (uint16_t)r->proto;
			ip->flags |= IP6T_F_PROTO; /* ip6_tables ignores proto without it */
		}
		if (r->to_loopback) {
			ip->dst = in6addr_loopback;
			memset(&ip->dmsk, 0xff, sizeof(ip->dmsk));
		}
		if (r->out_lo) {
			strcpy(ip->outiface, "lo");
			memset(ip->outiface_mask, 0xff, 3);
		}
	}
}

static void *grow(struct buf *b, size_t n)
{
	size_t at = b->len;

	buf_reserve(b, n);
	memset(b->data + at, 0, n);
	b->len += n;
	return b->data + at;
}

static void put_target_head(struct xt_entry_target *t, size_t size, const char *name)
{
	t->u.user.target_size = (uint16_t)size;
	snprintf(t->u.user.name, sizeof(t->u.user.name), "%s", name);
}

/* Appends one entry; offsets are taken from the buffer, which may move. */
static void put_entry(const struct family_ops *f, struct buf *b, const struct rule *r)
{
	size_t at = b->len, toff, size;
	struct xt_entry_target *t;

	put_ip(f, grow(b, f->entry_size), r);
	if (r->dport) {
		bool tcp = r->proto == IPPROTO_TCP;
		size_t msize = XT_ALIGN(sizeof(struct xt_entry_match) + (tcp ? sizeof(struct xt_tcp) : sizeof(struct xt_udp)));
		struct xt_entry_match *m = grow(b, msize);

		m->u.user.match_size = (uint16_t)msize;
		strcpy(m->u.user.name, tcp ? "tcp" : "udp");
		if (tcp) {
			struct xt_tcp *x = (struct xt_tcp *)m->data;

			x->spts[1] = 0xffff;
			x->dpts[0] = x->dpts[1] = r->dport;
		} else {
			struct xt_udp *x = (struct xt_udp *)m->data;

			x->spts[1] = 0xffff;
			x->dpts[0] = x->dpts[1] = r->dport;
		}
	}
	toff = b->len - at;
	switch (r->target) {
	case T_ACCEPT:
		size = XT_ALIGN(sizeof(struct xt_standard_target));
		t = grow(b, size);
		put_target_head(t, size, XT_STANDARD_TARGET);
		((struct xt_standard_target *)t)->verdict = -NF_ACCEPT - 1;
		break;
	case T_REDIRECT:
		if (f->af == AF_INET) {
			struct nf_nat_ipv4_multi_range_compat *mr;

			size = XT_ALIGN(sizeof(*t) + sizeof(*mr));
			t = grow(b, size);
			mr = (void *)t->data;
			mr->rangesize = 1;
			mr->range[0].flags = NF_NAT_RANGE_PROTO_SPECIFIED;
			mr->range[0].min.tcp.port = mr->range[0].max.tcp.port = htons(r->to_port);
		} else {
			struct nf_nat_range *nr;

			size = XT_ALIGN(sizeof(*t) + sizeof(*nr));
			t = grow(b, size);
			nr = (void *)t->data;
			nr->flags = NF_NAT_RANGE_PROTO_SPECIFIED;
			nr->min_proto.tcp.port = nr->max_proto.tcp.port = htons(r->to_port);
		}
		put_target_head(t, size, "REDIRECT");
		break;
	case T_REJECT_RST:
	case T_REJECT:
		size = XT_ALIGN(sizeof(*t) + sizeof(uint32_t));
		t = grow(b, size);
		put_target_head(t, size, "REJECT");
		if (f->af == AF_INET)
			((struct ipt_reject_info *)t->data)->with = r->target == T_REJECT_RST ? IPT_TCP_RESET
											 : IPT_ICMP_PORT_UNREACHABLE;
		else
			((struct ip6t_reject_info *)t->data)->with = r->target == T_REJECT_RST ? IP6T_TCP_RESET
											  : IP6T_ICMP6_PORT_UNREACH;
		break;
	}
	/* target_offset and next_offset sit at the same place after either family's address part */
	{
		uint8_t *e = b->data + at;
		size_t ipsize = f->af == AF_INET ? sizeof(struct ipt_ip) : sizeof(struct ip6t_ip6);
		uint16_t offs[2] = { (uint16_t)toff, (uint16_t)(b->len - at) };

		memcpy(e + ipsize + sizeof(unsigned int), offs, sizeof(offs));
	}
}

static void put_error(const struct family_ops *f, struct buf *b)
{
	size_t at = b->len, size = XT_ALIGN(sizeof(struct xt_error_target));
	size_t ipsize = f->af == AF_INET ? sizeof(struct ipt_ip) : sizeof(struct ip6t_ip6);
	struct xt_error_target *t;
	uint16_t offs[2];

	grow(b, f->entry_size);
	t = grow(b, size);
	put_target_head(&t->target, size, XT_ERROR_TARGET);
	strcpy(t->errorname, XT_ERROR_TARGET);
	offs[0] = (uint16_t)f->entry_size;
	offs[1] = (uint16_t)(b->len - at);
	memcpy(b->data + at + ipsize + sizeof(unsigned int), offs, sizeof(offs));
}

/* Which of the named targets and matches /proc says the kernel lacks, for the error line. */
static void name_missing(const struct family_ops *f, const char *table, char *out, size_t n)
{
	static const char *const targets[] = { "REDIRECT", "REJECT" }, *const matches[] = { "tcp", "udp" };
	static const char *const tmods[2][2] = { { "xt_REDIRECT", "ipt_REJECT" }, { "xt_REDIRECT", "ip6t_REJECT" } };
	char have[4096];
	size_t len = 0;

	out[0] = 0;
	for (int kind = 0; kind < 2; kind++) {
		FILE *fp = fopen(kind ? f->matches : f->targets, "re");

		len = fp ? fread(have, 1, sizeof(have) - 1, fp) : 0;
		if (fp)
			fclose(fp);
		if (!fp)
			continue;
		have[len] = 0;
		for (int i = 0; i < 2; i++) {
			const char *want = kind ? matches[i] : targets[i];
			const char *p = have;
			bool found = false;

			while ((p = strstr(p, want))) {
				size_t wl = strlen(want);

				if ((p == have || p[-1] == '\n') && (p[wl] == '\n' || !p[wl])) {
					found = true;
					break;
				}
				p += wl;
			}
			if (!found)
				snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? ", " : "",
					 kind ? "xt_tcpudp" : tmods[f->af == AF_INET6][i]);
		}
	}
	if (!out[0])
		snprintf(out, n, "%s%s", f->modprefix, table);
}

static int replace_table(const struct family_ops *f, int fd, const char *table, const struct rule *rules, size_t n,
			 struct err *err)
{
	struct ipt_getinfo info = { 0 }; /* ip6t_getinfo is the same */
	socklen_t ilen = sizeof(info);
	struct ipt_replace *rep;
	struct buf b = BUF_INIT;
	struct xt_counters *counters = NULL;
	unsigned hook_entry[NF_INET_NUMHOOKS] = { 0 }, underflow[NF_INET_NUMHOOKS] = { 0 }, entries = 0;
	size_t head = offsetof(struct ipt_replace, entries);
	const struct rule policy = { .target = T_ACCEPT };
	int rc = 0;

	snprintf(info.name, sizeof(info.name), "%s", table);
	if (getsockopt(fd, f->level, f->get_info, &info, &ilen) < 0) {
		if (errno == ENOENT || errno == ENOPROTOOPT)
			return err_set(err, ENOENT, "the kernel has no legacy %s table %s (module %s%s missing)",
				       f->af == AF_INET ? "iptables" : "ip6tables", table, f->modprefix, table);
		return err_sys(err, "reading the %s %s table", f->af == AF_INET ? "IPv4" : "IPv6", table);
	}
	if (!(info.valid_hooks & (1u << NF_INET_LOCAL_OUT)))
		return err_set(err, EINVAL, "the kernel's %s table has no OUTPUT chain", table);
	grow(&b, head);
	for (unsigned h = 0; h < NF_INET_NUMHOOKS; h++) {
		if (!(info.valid_hooks & (1u << h)))
			continue;
		hook_entry[h] = (unsigned)(b.len - head);
		if (h == NF_INET_LOCAL_OUT)
			for (size_t i = 0; i < n; i++, entries++)
				put_entry(f, &b, &rules[i]);
		underflow[h] = (unsigned)(b.len - head);
		put_entry(f, &b, &policy);
		entries++;
	}
	put_error(f, &b);
	entries++;
	counters = calloc(info.num_entries ? info.num_entries : 1, sizeof(*counters));
	if (!counters)
		abort();
	rep = (struct ipt_replace *)b.data;
	snprintf(rep->name, sizeof(rep->name), "%s", table);
	rep->valid_hooks = info.valid_hooks;
	rep->num_entries = entries;
	rep->size = (unsigned)(b.len - head);
	memcpy(rep->hook_entry, hook_entry, sizeof(hook_entry));
	memcpy(rep->underflow, underflow, sizeof(underflow));
	rep->num_counters = info.num_entries;
	rep->counters = counters;
	if (setsockopt(fd, f->level, f->set_replace, b.data, (socklen_t)b.len) < 0) {
		int e = errno;
		char missing[256];

		if (e == ENOENT) {
			name_missing(f, table, missing, sizeof(missing));
			rc = err_set(err, ENOENT, "the kernel cannot load the %s %s rules (module %s missing)",
				     f->af == AF_INET ? "IPv4" : "IPv6", table, missing);
		} else {
			errno = e;
			rc = err_sys(err, "writing the %s %s table", f->af == AF_INET ? "IPv4" : "IPv6", table);
		}
	}
	free(counters);
	buf_free(&b);
	return rc;
}

int netrules_install(int family, uint16_t dns_port, uint16_t tcp_port, struct err *err)
{
	const struct family_ops *f = family == AF_INET ? &v4 : &v6;
	/* Loopback stays as it is: odyn's own services and the app's local traffic. Only then is
	 * DNS and every other TCP connection taken, and in filter whatever was not redirected to
	 * loopback is refused: TCP with a reset, the rest (UDP, ICMP) with EPERM at the sender. */
	const struct rule nat[] = {
		{ .to_loopback = true, .target = T_ACCEPT },
		{ .proto = IPPROTO_UDP, .dport = 53, .target = T_REDIRECT, .to_port = dns_port },
		{ .proto = IPPROTO_TCP, .dport = 53, .target = T_REDIRECT, .to_port = dns_port },
		{ .proto = IPPROTO_TCP, .target = T_REDIRECT, .to_port = tcp_port },
	};
	const struct rule filter[] = {
		{ .out_lo = true, .to_loopback = true, .target = T_ACCEPT },
		{ .proto = IPPROTO_TCP, .target = T_REJECT_RST },
		{ .target = T_REJECT },
	};
	int fd = socket(f->af, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW), rc;

	if (fd < 0) {
		if (errno == EAFNOSUPPORT)
			return err_set(err, EAFNOSUPPORT, "the kernel has no IPv6");
		return err_sys(err, "raw %s socket for the packet rules", family == AF_INET ? "IPv4" : "IPv6");
	}
	rc = replace_table(f, fd, "nat", nat, sizeof(nat) / sizeof(nat[0]), err);
	if (rc == 0)
		rc = replace_table(f, fd, "filter", filter, sizeof(filter) / sizeof(filter[0]), err);
	close(fd);
	return rc;
}

int netrules_load_kit_modules(struct err *err)
{
	struct dirent **list = NULL;
	int n = scandir(BOOTKIT_NET_MODULES_RUN, &list, initfiles_module_filter, alphasort), rc = 0;

	if (n < 0)
		return errno == ENOENT ? 0 : err_sys(err, "%s", BOOTKIT_NET_MODULES_RUN);
	for (int i = 0; i < n; i++) {
		char path[512];
		int fd;

		snprintf(path, sizeof(path), BOOTKIT_NET_MODULES_RUN "/%s", list[i]->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		/* EEXIST: built in, or loaded by an earlier start */
		if (!rc && (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)))
			rc = err_sys(err, "loading the boot kit's module %s", list[i]->d_name);
		if (fd >= 0)
			close(fd);
		free(list[i]);
	}
	free(list);
	return rc;
}
