/* Network interfaces' counters from an RTM_GETLINK dump in a network namespace: the parser (pure)
 * and the socket made inside the namespace. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "stats.h"

void stats_net_done(StatsNet *n) {
        free(n->ifs);
        *n = (StatsNet) {};
}

/* The counters of IFLA_STATS64 or of the older 32-bit IFLA_STATS: the same names. */
#define COPY_COUNTERS(it, st)                                                   \
        do {                                                                    \
                (it)->rx_bytes = (st)->rx_bytes, (it)->tx_bytes = (st)->tx_bytes;   \
                (it)->rx_errors = (st)->rx_errors, (it)->tx_errors = (st)->tx_errors; \
                (it)->rx_packets = (st)->rx_packets, (it)->tx_packets = (st)->tx_packets; \
                (it)->rx_dropped = (st)->rx_dropped, (it)->tx_dropped = (st)->tx_dropped; \
        } while (0)

static int add_link(StatsNet *n, const struct ifinfomsg *ifi, const uint8_t *attrs, size_t len) {
        StatsNetIf it = {};
        bool named = false, counted = false;

        if (ifi->ifi_type == ARPHRD_LOOPBACK || (ifi->ifi_flags & IFF_LOOPBACK))
                return 0;
        while (len >= sizeof(struct rtattr)) {
                struct rtattr rta;
                memcpy(&rta, attrs, sizeof rta);
                if (rta.rta_len < sizeof rta || rta.rta_len > len)
                        return -EBADMSG;
                const uint8_t *data = attrs + RTA_LENGTH(0);
                size_t dlen = rta.rta_len - RTA_LENGTH(0);
                if (rta.rta_type == IFLA_IFNAME && dlen > 0) {
                        size_t k = strnlen((const char *) data, dlen);
                        if (k >= sizeof it.name)
                                return -EBADMSG;
                        memcpy(it.name, data, k);
                        it.name[k] = '\0';
                        named = k > 0;
                } else if (rta.rta_type == IFLA_STATS64 && dlen >= sizeof(struct rtnl_link_stats64)) {
                        struct rtnl_link_stats64 st;
                        memcpy(&st, data, sizeof st);
                        COPY_COUNTERS(&it, &st);
                        counted = true;
                } else if (rta.rta_type == IFLA_STATS && !counted && dlen >= sizeof(struct rtnl_link_stats)) {
                        struct rtnl_link_stats st;
                        memcpy(&st, data, sizeof st);
                        COPY_COUNTERS(&it, &st);
                }
                size_t step = RTA_ALIGN(rta.rta_len);
                if (step >= len)
                        break;
                attrs += step;
                len -= step;
        }
        if (!named)
                return 0;
        if (n->n_ifs >= 4096)
                return -E2BIG;
        StatsNetIf *ifs = realloc(n->ifs, (n->n_ifs + 1) * sizeof *ifs);
        if (!ifs)
                return -ENOMEM;
        n->ifs = ifs;
        n->ifs[n->n_ifs++] = it;
        return 0;
}

int stats_net_parse(const void *buf, size_t len, StatsNet *n, bool *ret_done) {
        const uint8_t *p = buf;
        int r;

        *ret_done = false;
        while (len >= sizeof(struct nlmsghdr)) {
                struct nlmsghdr h;
                memcpy(&h, p, sizeof h);
                if (h.nlmsg_len < sizeof h || h.nlmsg_len > len)
                        return -EBADMSG;
                if (h.nlmsg_type == NLMSG_DONE) {
                        *ret_done = true;
                        return 0;
                }
                if (h.nlmsg_type == NLMSG_ERROR) {
                        struct nlmsgerr e;
                        if (h.nlmsg_len < NLMSG_LENGTH(sizeof e))
                                return -EBADMSG;
                        memcpy(&e, p + NLMSG_HDRLEN, sizeof e);
                        *ret_done = true;
                        return e.error < 0 && e.error > -4096 ? e.error : -EPROTO;
                }
                if (h.nlmsg_type == RTM_NEWLINK) {
                        struct ifinfomsg ifi;
                        if (h.nlmsg_len < NLMSG_LENGTH(sizeof ifi))
                                return -EBADMSG;
                        memcpy(&ifi, p + NLMSG_HDRLEN, sizeof ifi);
                        size_t off = NLMSG_LENGTH(NLMSG_ALIGN(sizeof ifi));
                        if (off > h.nlmsg_len)
                                off = h.nlmsg_len;
                        r = add_link(n, &ifi, p + off, h.nlmsg_len - off);
                        if (r < 0)
                                return r;
                }
                size_t step = NLMSG_ALIGN(h.nlmsg_len);
                if (step >= len)
                        break;
                p += step;
                len -= step;
        }
        return 0;
}

/* A netlink socket in the namespace at path: entered for socket() only (the socket stays in the
 * namespace it was made in), on this thread, and left at once. */
static int socket_in(const char *path) {
        int ns, self, fd, r;

        if (!path) {
                fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
                return fd < 0 ? -errno : fd;
        }
        ns = open(path, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
                return -errno;
        self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0 || setns(ns, CLONE_NEWNET) < 0) {
                r = -errno;
                safe_close(ns);
                safe_close(self);
                return r;
        }
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        r = fd < 0 ? -errno : fd;
        if (setns(self, CLONE_NEWNET) < 0) {
                /* The daemon cannot live in a pod's namespace: nothing sane is left to do. */
                log_error_errno(errno, "Failed to return to the daemon's network namespace: %m");
                abort();
        }
        safe_close(ns);
        safe_close(self);
        return r;
}

int stats_net_read(const char *netns_path, StatsNet *ret) {
        struct {
                struct nlmsghdr h;
                struct ifinfomsg ifi;
        } req = {
                .h = { .nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
                .ifi = { .ifi_family = AF_UNSPEC },
        };
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
        _cleanup_close_ int fd = -1;
        StatsNet n = {};
        struct timespec ts;
        bool done = false;
        static uint8_t buf[32768];
        int r;

        fd = socket_in(netns_path);
        if (fd < 0)
                return fd;
        /* The kernel answers a dump from within recvmsg(): no wait on anything but itself. A deadline
         * anyway, so that a kernel that did not would not hold the loop. */
        struct timeval tv = { .tv_sec = 0, .tv_usec = 200 * 1000 };
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        while (!done) {
                ssize_t k = recv(fd, buf, sizeof buf, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = errno == EAGAIN ? -ETIMEDOUT : -errno;
                        stats_net_done(&n);
                        return r;
                }
                if (k == 0)
                        break;
                r = stats_net_parse(buf, (size_t) k, &n, &done);
                if (r < 0) {
                        stats_net_done(&n);
                        return r;
                }
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        n.timestamp_ns = (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
        *ret = n;
        return 0;
}

const StatsNetIf *stats_net_default(const StatsNet *n) {
        for (size_t i = 0; i < n->n_ifs; i++)
                if (strcmp(n->ifs[i].name, "eth0") == 0)
                        return &n->ifs[i];
        return n->n_ifs > 0 ? &n->ifs[0] : NULL;
}
