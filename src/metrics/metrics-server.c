/* The metrics endpoint: libmicrohttpd with MHD_USE_EPOLL and no thread of its own, its epoll fd one
 * libev read watcher, MHD_run() when it fires and when MHD_get_timeout() says (as the streaming
 * server drives it). GET and HEAD of /metrics; 404 elsewhere, 405 for other methods. */
#include "metrics-server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "parse-util.h"

#define METRICS_PATH "/metrics"
#define MAX_CONNECTIONS 32
#define CONNECTION_TIMEOUT_SEC 10
/* A server that stopped listening answers the requests it has for this long at most. */
#define DRAIN_TIMEOUT_SEC CONNECTION_TIMEOUT_SEC

struct MetricsServer {
        struct ev_loop *loop;
        Metrics *metrics;
        MetricsCollect collect;
        void *userdata;
        struct MHD_Daemon *mhd;
        int listen_fd;
        ev_io mhd_io;
        ev_timer mhd_timer;
        ev_timer drain_timer;
        MetricsServerDrained drained; /* set once it stopped listening */
        void *drained_userdata;
        bool in_mhd;
        char url[96];
};

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text, const char *allow) {
        struct MHD_Response *resp;
        enum MHD_Result r;

        resp = MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
        if (allow)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        static int headers_seen;
        MetricsServer *s = cls;
        struct MHD_Response *resp;
        enum MHD_Result ret;
        char *text = NULL;
        size_t len = 0;
        int r;

        if (!*con_cls) {
                /* The first call, with the headers only: the answer comes once any body is read. */
                *con_cls = &headers_seen;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                *upload_data_size = 0; /* a body: ignored */
                return MHD_YES;
        }
        if (strcmp(url, METRICS_PATH) != 0)
                return reply_text(conn, MHD_HTTP_NOT_FOUND, "404 page not found\n", NULL);
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "405 method not allowed\n", "GET, HEAD");

        if (s->collect)
                s->collect(s->metrics, s->userdata);
        r = metrics_render(s->metrics, &text, &len);
        if (r < 0)
                return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
        resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return MHD_NO;
        }
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
        if (s->drained) /* a kept-alive connection goes to the new address for its next scrape */
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

_printf_(2, 0) static void mhd_logger(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        vsnprintf(buf, sizeof buf, fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        log_debug("metrics: libmicrohttpd: %s", buf);
}

static bool server_idle(MetricsServer *s) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        return !info || info->num_connections == 0;
}

/* The end of a drain: the owner frees s; nothing may touch it afterwards. */
static void server_drained(MetricsServer *s) {
        ev_timer_stop(s->loop, &s->drain_timer);
        s->drained(s, s->drained_userdata);
}

static void server_run(MetricsServer *s) {
        MHD_UNSIGNED_LONG_LONG ms;

        if (s->in_mhd || !s->mhd)
                return;
        s->in_mhd = true;
        (void) MHD_run(s->mhd);
        s->in_mhd = false;
        ev_timer_stop(s->loop, &s->mhd_timer);
        if (s->drained && server_idle(s)) {
                server_drained(s);
                return;
        }
        if (MHD_get_timeout(s->mhd, &ms) == MHD_YES) {
                ev_timer_set(&s->mhd_timer, (double) ms / 1000., 0.);
                ev_timer_start(s->loop, &s->mhd_timer);
        }
}

static void mhd_io_cb(struct ev_loop *loop, ev_io *w, int revents) {
        server_run(container_of(w, MetricsServer, mhd_io));
}

static void mhd_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        server_run(container_of(w, MetricsServer, mhd_timer));
}

static void drain_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        MetricsServer *s = container_of(w, MetricsServer, drain_timer);

        log_debug("metrics: %s: requests still open after %u s; closing them.", s->url, (unsigned) DRAIN_TIMEOUT_SEC);
        server_drained(s);
}

static int listen_on(MetricsServer *s, const char *address) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa = {};
        char host[INET6_ADDRSTRLEN];
        socklen_t len;
        uint16_t port;
        int family, one = 1;

        family = parse_ip_port(address, host, sizeof host, &port);
        if (family < 0)
                return -EINVAL;
        if (family == AF_INET) {
                sa.in.sin_family = AF_INET;
                sa.in.sin_port = htons(port);
                (void) inet_pton(AF_INET, host, &sa.in.sin_addr);
                len = sizeof sa.in;
        } else {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons(port);
                (void) inet_pton(AF_INET6, host, &sa.in6.sin6_addr);
                len = sizeof sa.in6;
        }
        s->listen_fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->listen_fd < 0)
                return -errno;
        (void) setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (family == AF_INET6)
                (void) setsockopt(s->listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(s->listen_fd, &sa.sa, len) < 0 || listen(s->listen_fd, 64) < 0 ||
            getsockname(s->listen_fd, &sa.sa, &len) < 0)
                return -errno;
        port = ntohs(family == AF_INET ? sa.in.sin_port : sa.in6.sin6_port);
        snprintf(s->url, sizeof s->url, family == AF_INET ? "http://%s:%u" METRICS_PATH : "http://[%s]:%u" METRICS_PATH,
                 host, (unsigned) port);
        return 0;
}

int metrics_server_new(struct ev_loop *loop, const char *address, Metrics *m, MetricsCollect collect, void *userdata,
                       MetricsServer **ret) {
        const union MHD_DaemonInfo *info;
        MetricsServer *s;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->loop = loop;
        s->metrics = m;
        s->collect = collect;
        s->userdata = userdata;
        s->listen_fd = -1;
        ev_timer_init(&s->mhd_timer, mhd_timer_cb, 0., 0.);
        ev_timer_init(&s->drain_timer, drain_timer_cb, (double) DRAIN_TIMEOUT_SEC, 0.);
        r = listen_on(s, address);
        if (r < 0) {
                metrics_server_free(s);
                return r;
        }
        s->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, access_cb, s,
                                  MHD_OPTION_LISTEN_SOCKET, (MHD_socket) s->listen_fd,
                                  MHD_OPTION_CONNECTION_LIMIT, (unsigned) MAX_CONNECTIONS,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) CONNECTION_TIMEOUT_SEC,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
                                  MHD_OPTION_END);
        if (!s->mhd) {
                metrics_server_free(s);
                return -EIO;
        }
        s->listen_fd = -1; /* MHD's now: MHD_stop_daemon() closes it */
        info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info || info->epoll_fd < 0) {
                metrics_server_free(s);
                return -EIO;
        }
        ev_io_init(&s->mhd_io, mhd_io_cb, info->epoll_fd, EV_READ);
        ev_io_start(loop, &s->mhd_io);
        server_run(s);
        *ret = s;
        return 0;
}

MetricsServer *metrics_server_free(MetricsServer *s) {
        if (!s)
                return NULL;
        ev_io_stop(s->loop, &s->mhd_io);
        ev_timer_stop(s->loop, &s->mhd_timer);
        ev_timer_stop(s->loop, &s->drain_timer);
        if (s->mhd)
                MHD_stop_daemon(s->mhd);
        safe_close(s->listen_fd);
        free(s);
        return NULL;
}

bool metrics_server_drain(MetricsServer *s, MetricsServerDrained drained, void *userdata) {
        MHD_socket fd;

        assert(drained && !s->drained);
        /* MHD hands the listening socket back (ours: MHD_OPTION_LISTEN_SOCKET); closing it closes
         * the port now, while the connections already accepted are answered. */
        fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET)
                safe_close(fd);
        if (server_idle(s))
                return false;
        s->drained = drained;
        s->drained_userdata = userdata;
        ev_timer_start(s->loop, &s->drain_timer);
        return true;
}

const char *metrics_server_url(const MetricsServer *s) {
        return s->url;
}

int metrics_process_sample(uint64_t *ret_fds, uint64_t *ret_rss_bytes) {
        unsigned long long size, resident;
        uint64_t n = 0;
        struct dirent *de;
        FILE *f;
        DIR *d;

        d = opendir("/proc/self/fd");
        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        f = fopen("/proc/self/statm", "re");
        if (!f)
                return -errno;
        if (fscanf(f, "%llu %llu", &size, &resident) != 2) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        *ret_fds = n > 0 ? n - 1 : 0; /* not the directory's own fd */
        *ret_rss_bytes = (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE);
        return 0;
}
