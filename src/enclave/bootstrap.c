/* Loopback and entropy at enclave start. Runs in odyn, as root inside the enclave. */
#include "enclave/bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "nitro/nsm.h"

/* One rtnetlink request and its acknowledgement. */
static int rtnl_request(void *req, size_t len, const char *what, struct err *err)
{
	struct {
		struct nlmsghdr nh;
		struct nlmsgerr e;
	} ack;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	ssize_t n;

	if (fd < 0)
		return err_sys(err, "netlink socket");
	if (sendto(fd, req, len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err_sys(err, "netlink send");
		close(fd);
		return -1;
	}
	n = recv(fd, &ack, sizeof(ack), 0);
	close(fd);
	if (n < (ssize_t)sizeof(struct nlmsghdr))
		return err_set(err, EIO, "netlink: no answer %s", what);
	if (ack.nh.nlmsg_type == NLMSG_ERROR && ack.e.error) {
		errno = -ack.e.error;
		return err_sys(err, "%s", what);
	}
	return 0;
}

int bootstrap_loopback_up(struct err *err)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
	} req = { 0 };

	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = RTM_NEWLINK;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.nh.nlmsg_seq = 1;
	req.ifi.ifi_family = AF_UNSPEC;
	req.ifi.ifi_index = 1; /* lo */
	req.ifi.ifi_flags = IFF_UP;
	req.ifi.ifi_change = IFF_UP;
	return rtnl_request(&req, sizeof(req), "setting lo up", err);
}

int bootstrap_default_route(int family, struct err *err)
{
	struct {
		struct nlmsghdr nh;
		struct rtmsg rt;
		char attrs[64];
	} req = { 0 };
	struct rtattr *a;
	uint32_t lo = 1;
	struct in_addr src = { htonl(INADDR_LOOPBACK) };

	req.nh.nlmsg_type = RTM_NEWROUTE;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	req.nh.nlmsg_seq = 1;
	req.rt.rtm_family = (unsigned char)family;
	req.rt.rtm_table = RT_TABLE_MAIN;
	req.rt.rtm_protocol = RTPROT_BOOT;
	req.rt.rtm_scope = family == AF_INET ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
	req.rt.rtm_type = RTN_UNICAST;
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.rt));
	a = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
	a->rta_type = RTA_OIF;
	a->rta_len = RTA_LENGTH(sizeof(lo));
	memcpy(RTA_DATA(a), &lo, sizeof(lo));
	req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(a->rta_len);
	/* Without a source of 127.0.0.1 a connection to a far address would leave from no address
	 * the redirect can answer, and hang. */
	if (family == AF_INET) {
		a = (struct rtattr *)((char *)&req + req.nh.nlmsg_len);
		a->rta_type = RTA_PREFSRC;
		a->rta_len = RTA_LENGTH(sizeof(src));
		memcpy(RTA_DATA(a), &src, sizeof(src));
		req.nh.nlmsg_len += RTA_ALIGN(a->rta_len);
	}
	return rtnl_request(&req, req.nh.nlmsg_len,
			    family == AF_INET ? "adding the route default dev lo src 127.0.0.1"
					      : "adding the IPv6 route default dev lo",
			    err);
}

int bootstrap_seed_entropy(struct err *err)
{
	struct nsm *nsm;
	uint8_t rnd[256];
	long got;
	int fd, rc = 0;

	if (nsm_open(&nsm, err) < 0) {
		if (err->code == ENOENT)
			return 1;
		return -1;
	}
	log_info("Seeding /dev/random with entropy from nsm device");
	got = nsm_get_random(nsm, rnd, sizeof(rnd), err);
	nsm_close(nsm);
	if (got < 0)
		return -1;
	/* A plain write mixes the bytes in without crediting entropy, as upstream does. */
	fd = open("/dev/random", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || fs_write_full(fd, rnd, (size_t)got) < 0)
		rc = err_sys(err, "/dev/random");
	if (fd >= 0)
		close(fd);
	explicit_bzero(rnd, sizeof(rnd));
	return rc;
}
