/* Benchmark client for rktlet's gRPC path: unary Version calls over h2c on a unix socket (nghttp2 + poll).
 *
 *   rktlet-bench-grpc [--socket PATH] [--mode latency|throughput] [--calls N] [--duration SEC]
 *                     [--warmup N] [--concurrency C] [--connections K] [--path GRPC-PATH]
 *                     [--authority A]
 *
 * --authority: the :authority sent (default: the socket path, as kubelet's and crictl's grpc-go do).
 *
 * latency:    one call at a time on one connection; p50/p90/p99/max of each call's round trip.
 * throughput: K connections, C streams kept in flight on each, for N calls or SEC seconds; calls/s
 *             (and the round trips seen under that load).
 *
 * Prints a human line, then a machine line "result mode=... key=value ...". Every response must end
 * with HTTP 200, at least one message and grpc-status 0; otherwise the call counts as failed, and any
 * failure makes the exit status 1 (2 for usage errors). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define _unused_ __attribute__((unused))
#define MAX_CONNECTIONS 64
#define STALL_TIMEOUT_MS 10000

/* runtime.v1.VersionRequest{version: "v1"} behind its 5-byte gRPC prefix (not compressed, length 4). */
static const uint8_t version_body[] = { 0, 0, 0, 0, 4, 0x0a, 0x02, 'v', '1' };
/* --empty: an empty message, which every List* request may be (ListContainerStatsRequest{}…). */
static const uint8_t empty_body[] = { 0, 0, 0, 0, 0 };
static const uint8_t *request_body = version_body;
static size_t request_len = sizeof version_body;

typedef struct Conn Conn;

typedef struct Call {
        Conn *conn;
        uint64_t start_ns;
        size_t sent;
        size_t received; /* response DATA bytes */
        int http_status; /* -1 until the headers say */
        int grpc_status; /* -1 until the trailers (or a Trailers-Only response) say */
} Call;

struct Conn {
        unsigned index;
        int fd;
        nghttp2_session *session;
        unsigned in_flight;
        const uint8_t *pending; /* output from nghttp2_session_mem_send() the socket did not take yet */
        size_t n_pending;
};

static const char *arg_socket = "/run/rktlet/rktlet.sock";
static const char *arg_path = "/runtime.v1.RuntimeService/Version";
static const char *arg_authority = NULL; /* NULL: the socket path */
static unsigned long arg_calls = 20000, arg_warmup = 1000;
static unsigned arg_concurrency = 32, arg_connections = 1;
static double arg_duration = 0.;
static bool arg_throughput = false;

static unsigned long completed, failed;
static bool reported_failure;
static bool recording;
static uint64_t *latencies;
static size_t n_latencies, n_latencies_allocated;

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static int record_latency(uint64_t ns) {
        if (n_latencies == n_latencies_allocated) {
                size_t n = n_latencies_allocated ? n_latencies_allocated * 2 : 65536;
                uint64_t *a = realloc(latencies, n * sizeof *a);
                if (!a)
                        return -ENOMEM;
                latencies = a;
                n_latencies_allocated = n;
        }
        latencies[n_latencies++] = ns;
        return 0;
}

static ssize_t read_request_body(_unused_ nghttp2_session *session, _unused_ int32_t stream_id, uint8_t *buf,
                                 size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                                 _unused_ void *user_data) {
        Call *call = source->ptr;
        size_t n = request_len - call->sent;

        if (n > length)
                n = length;
        memcpy(buf, request_body + call->sent, n);
        call->sent += n;
        if (call->sent == request_len)
                *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t) n;
}

/* nghttp2 NUL-terminates names and values it passes to this callback. */
static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, _unused_ size_t valuelen, _unused_ uint8_t flags,
                     _unused_ void *user_data) {
        Call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

        if (!call)
                return 0;
        if (namelen == 7 && memcmp(name, ":status", 7) == 0)
                call->http_status = atoi((const char *) value);
        else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
                call->grpc_status = atoi((const char *) value);
        else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0 && !reported_failure) {
                reported_failure = true; /* only the first one: a broken server would flood the terminal */
                fprintf(stderr, "rktlet-bench-grpc: stream %d: grpc-message '%s'\n", frame->hd.stream_id,
                        (const char *) value);
        }
        return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, _unused_ uint8_t flags, int32_t stream_id,
                              _unused_ const uint8_t *data, size_t len, _unused_ void *user_data) {
        Call *call = nghttp2_session_get_stream_user_data(session, stream_id);

        if (call)
                call->received += len;
        return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           _unused_ void *user_data) {
        Call *call = nghttp2_session_get_stream_user_data(session, stream_id);
        uint64_t ns = now_ns();

        if (!call)
                return 0;
        if (error_code != NGHTTP2_NO_ERROR || call->http_status != 200 || call->grpc_status != 0 ||
            call->received <= 5) {
                if (failed++ == 0)
                        fprintf(stderr,
                                "rktlet-bench-grpc: stream %d failed: RST_STREAM %s, :status %d, grpc-status %d, "
                                "%zu response bytes\n",
                                stream_id, nghttp2_http2_strerror(error_code), call->http_status,
                                call->grpc_status, call->received);
        }
        if (recording && record_latency(ns - call->start_ns) < 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        completed++;
        call->conn->in_flight--;
        free(call);
        return 0;
}

static int submit_call(Conn *c) {
        const nghttp2_nv hdrs[] = {
#define NV(n, v) { (uint8_t *) (n), (uint8_t *) (v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }
                NV(":method", "POST"),
                NV(":scheme", "http"),
                NV(":path", arg_path),
                NV(":authority", arg_authority ?: arg_socket),
                NV("content-type", "application/grpc"),
                NV("te", "trailers"),
#undef NV
        };
        Call *call = calloc(1, sizeof *call);
        nghttp2_data_provider dp = { .source.ptr = call, .read_callback = read_request_body };
        int32_t id;

        if (!call)
                return -ENOMEM;
        call->conn = c;
        call->http_status = call->grpc_status = -1;
        call->start_ns = now_ns();
        id = nghttp2_submit_request(c->session, NULL, hdrs, sizeof hdrs / sizeof hdrs[0], &dp, call);
        if (id < 0) {
                fprintf(stderr, "rktlet-bench-grpc: connection %u: cannot submit a request: %s\n", c->index,
                        nghttp2_strerror(id));
                free(call);
                return -EIO;
        }
        c->in_flight++;
        return 0;
}

/* Writes what nghttp2 has queued until the socket would block. */
static int conn_send(Conn *c) {
        for (;;) {
                if (c->n_pending == 0) {
                        ssize_t n = nghttp2_session_mem_send(c->session, &c->pending);
                        if (n < 0) {
                                fprintf(stderr, "rktlet-bench-grpc: connection %u: %s\n", c->index,
                                        nghttp2_strerror((int) n));
                                return -EIO;
                        }
                        if (n == 0)
                                return 0;
                        c->n_pending = (size_t) n;
                }
                ssize_t k = write(c->fd, c->pending, c->n_pending);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        fprintf(stderr, "rktlet-bench-grpc: connection %u: write: %s\n", c->index, strerror(errno));
                        return -errno;
                }
                c->pending += k;
                c->n_pending -= (size_t) k;
        }
}

static int conn_receive(Conn *c) {
        static uint8_t buf[65536];

        for (;;) {
                ssize_t n = read(c->fd, buf, sizeof buf);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        fprintf(stderr, "rktlet-bench-grpc: connection %u: read: %s\n", c->index, strerror(errno));
                        return -errno;
                }
                if (n == 0) {
                        fprintf(stderr, "rktlet-bench-grpc: connection %u: closed by the server with %u call(s) "
                                "in flight\n", c->index, c->in_flight);
                        return -ECONNRESET;
                }
                ssize_t r = nghttp2_session_mem_recv(c->session, buf, (size_t) n);
                if (r < 0) {
                        fprintf(stderr, "rktlet-bench-grpc: connection %u: bad HTTP/2 input: %s\n", c->index,
                                nghttp2_strerror((int) r));
                        return -EPROTO;
                }
                if ((size_t) n < sizeof buf)
                        return 0;
        }
}

static int conn_open(Conn *c, unsigned index, const nghttp2_session_callbacks *cbs) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const nghttp2_settings_entry settings[] = {
                { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20 },
        };

        c->index = index;
        if (strlen(arg_socket) >= sizeof sa.sun_path) {
                fprintf(stderr, "rktlet-bench-grpc: socket path too long: %s\n", arg_socket);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, arg_socket);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                fprintf(stderr, "rktlet-bench-grpc: cannot connect to %s: %s\n", arg_socket, strerror(errno));
                return -errno;
        }
        /* Non-blocking, so the client never sits in write() while the server waits for it to read. */
        if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
                return -errno;
        if (nghttp2_session_client_new(&c->session, cbs, c) != 0 ||
            nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2) != 0 ||
            nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 8u << 20) != 0) {
                fprintf(stderr, "rktlet-bench-grpc: cannot set up an HTTP/2 session\n");
                return -ENOMEM;
        }
        return conn_send(c);
}

static void conn_close(Conn *c) {
        nghttp2_session_del(c->session);
        if (c->fd >= 0)
                close(c->fd);
}

/* Completes `calls` calls (or, with deadline_ns, as many as start before then), keeping `depth` in
 * flight on each connection. */
static int run(Conn *conns, unsigned n_conns, unsigned long calls, uint64_t deadline_ns, unsigned depth) {
        struct pollfd pfd[MAX_CONNECTIONS];
        unsigned long goal = completed + calls, left = calls;
        unsigned in_flight;

        for (;;) {
                bool stop_submitting = deadline_ns > 0 ? now_ns() >= deadline_ns : left == 0;

                in_flight = 0;
                for (unsigned i = 0; i < n_conns; i++) {
                        Conn *c = conns + i;
                        if (!nghttp2_session_check_request_allowed(c->session)) {
                                fprintf(stderr, "rktlet-bench-grpc: connection %u: the server sent GOAWAY\n", i);
                                return -1;
                        }
                        while (!stop_submitting && c->in_flight < depth && (deadline_ns > 0 || left > 0)) {
                                if (submit_call(c) < 0)
                                        return -1;
                                if (left > 0)
                                        left--;
                        }
                        if (conn_send(c) < 0)
                                return -1;
                        if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) {
                                fprintf(stderr, "rktlet-bench-grpc: connection %u: the session ended\n", i);
                                return -1;
                        }
                        in_flight += c->in_flight;
                        pfd[i] = (struct pollfd) {
                                .fd = c->fd,
                                .events = POLLIN | (c->n_pending > 0 ? POLLOUT : 0),
                        };
                }
                if (in_flight == 0 && (deadline_ns > 0 ? stop_submitting : completed >= goal))
                        return 0;

                int r = poll(pfd, n_conns, STALL_TIMEOUT_MS);
                if (r < 0 && errno != EINTR) {
                        fprintf(stderr, "rktlet-bench-grpc: poll: %s\n", strerror(errno));
                        return -1;
                }
                if (r == 0) {
                        fprintf(stderr, "rktlet-bench-grpc: no answer for %d s with %u call(s) in flight\n",
                                STALL_TIMEOUT_MS / 1000, in_flight);
                        return -1;
                }
                for (unsigned i = 0; r > 0 && i < n_conns; i++)
                        if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) && conn_receive(conns + i) < 0)
                                return -1;
        }
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted latencies, in µs. */
static double percentile_us(double p) {
        size_t rank;

        if (n_latencies == 0)
                return 0.;
        rank = (size_t) (p / 100.0 * (double) n_latencies + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > n_latencies)
                rank = n_latencies;
        return (double) latencies[rank - 1] / 1000.0;
}

static int parse_number(const char *s, unsigned long min, unsigned long max, unsigned long *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static void usage(FILE *f) {
        fprintf(f,
                "Usage: rktlet-bench-grpc [OPTIONS]\n"
                "Unary gRPC calls against rktlet over h2c on a unix socket.\n\n"
                "  --socket PATH              Server socket (default /run/rktlet/rktlet.sock)\n"
                "  --mode latency|throughput  One call at a time, or many in flight (default latency)\n"
                "  --calls N                  Calls to measure (default 20000)\n"
                "  --duration SEC             Throughput: run for SEC seconds instead of N calls\n"
                "  --warmup N                 Calls before measuring (default 1000)\n"
                "  --concurrency C            Throughput: streams in flight per connection (default 32)\n"
                "  --connections K            Throughput: connections (default 1, at most %d)\n"
                "  --path PATH                gRPC method (default /runtime.v1.RuntimeService/Version;\n"
                "                             the request is a VersionRequest unless --empty)\n"
                "  --empty                    Send an empty request message instead\n"
                "  --authority A              :authority to send (default the socket path, as grpc-go)\n",
                MAX_CONNECTIONS);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },      { "mode", required_argument, NULL, 'm' },
                { "calls", required_argument, NULL, 'n' },       { "duration", required_argument, NULL, 'd' },
                { "warmup", required_argument, NULL, 'w' },      { "concurrency", required_argument, NULL, 'c' },
                { "connections", required_argument, NULL, 'k' }, { "path", required_argument, NULL, 'p' },
                { "authority", required_argument, NULL, 'a' },   { "help", no_argument, NULL, 'h' },
                { "empty", no_argument, NULL, 'e' },
                {},
        };
        nghttp2_session_callbacks *cbs;
        Conn conns[MAX_CONNECTIONS];
        unsigned long v;
        int opt, ret = 1;
        char *end;

        while ((opt = getopt_long(argc, argv, "s:m:n:d:w:c:k:p:a:he", options, NULL)) >= 0) {
                switch (opt) {
                case 's':
                        arg_socket = optarg;
                        continue;
                case 'm':
                        if (strcmp(optarg, "latency") != 0 && strcmp(optarg, "throughput") != 0)
                                break;
                        arg_throughput = strcmp(optarg, "throughput") == 0;
                        continue;
                case 'n':
                        if (parse_number(optarg, 1, ULONG_MAX / 2, &arg_calls) < 0)
                                break;
                        continue;
                case 'd':
                        errno = 0;
                        arg_duration = strtod(optarg, &end);
                        if (errno != 0 || end == optarg || *end != '\0' || !(arg_duration > 0.) ||
                            arg_duration > 86400.)
                                break;
                        continue;
                case 'w':
                        if (parse_number(optarg, 0, ULONG_MAX / 2, &arg_warmup) < 0)
                                break;
                        continue;
                case 'c':
                        if (parse_number(optarg, 1, 100000, &v) < 0)
                                break;
                        arg_concurrency = (unsigned) v;
                        continue;
                case 'k':
                        if (parse_number(optarg, 1, MAX_CONNECTIONS, &v) < 0)
                                break;
                        arg_connections = (unsigned) v;
                        continue;
                case 'p':
                        arg_path = optarg;
                        continue;
                case 'a':
                        arg_authority = optarg;
                        continue;
                case 'e':
                        request_body = empty_body;
                        request_len = sizeof empty_body;
                        continue;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
                /* A value that did not parse: name the option it was given to. */
                const char *name = "?";
                for (const struct option *o = options; o->name; o++)
                        if (o->val == opt)
                                name = o->name;
                fprintf(stderr, "rktlet-bench-grpc: bad value for --%s: '%s'\n", name, optarg);
                return 2;
        }
        if (optind < argc) {
                usage(stderr);
                return 2;
        }
        if (!arg_throughput && (arg_duration > 0. || arg_connections > 1)) {
                fprintf(stderr, "rktlet-bench-grpc: --duration and --connections only apply to --mode throughput\n");
                return 2;
        }

        unsigned n_conns = arg_throughput ? arg_connections : 1, opened = 0;
        unsigned depth = arg_throughput ? arg_concurrency : 1;

        if (nghttp2_session_callbacks_new(&cbs) != 0)
                return 1;
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);

        for (; opened < n_conns; opened++) {
                conns[opened] = (Conn) { .fd = -1 };
                if (conn_open(conns + opened, opened, cbs) < 0) {
                        opened++;
                        goto finish;
                }
        }

        if (arg_warmup > 0 && run(conns, n_conns, arg_warmup, 0, depth) < 0)
                goto finish;

        unsigned long completed_before = completed, failed_before = failed;
        uint64_t t0 = now_ns();
        recording = true;
        if (run(conns, n_conns, arg_calls, arg_duration > 0. ? t0 + (uint64_t) (arg_duration * 1e9) : 0, depth) < 0)
                goto finish;
        recording = false;
        double secs = (double) (now_ns() - t0) / 1e9;
        unsigned long calls = completed - completed_before, calls_failed = failed - failed_before;

        qsort(latencies, n_latencies, sizeof *latencies, cmp_u64);
        if (arg_throughput)
                printf("%lu calls in %.2f s on %u connection(s) x %u streams: %.0f calls/s "
                       "(round trip p50 %.0f µs, p99 %.0f µs)\n",
                       calls, secs, n_conns, depth, (double) calls / secs, percentile_us(50), percentile_us(99));
        else
                printf("%lu calls, one at a time: p50 %.1f µs, p90 %.1f µs, p99 %.1f µs, max %.1f µs\n", calls,
                       percentile_us(50), percentile_us(90), percentile_us(99), percentile_us(100));
        printf("result mode=%s calls=%lu failed=%lu seconds=%.3f connections=%u streams=%u calls_per_s=%.0f "
               "p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f\n",
               arg_throughput ? "throughput" : "latency", calls, calls_failed, secs, n_conns, depth,
               (double) calls / secs, percentile_us(50), percentile_us(90), percentile_us(99), percentile_us(100));
        ret = 0;

finish:
        for (unsigned i = 0; i < opened; i++)
                conn_close(conns + i);
        nghttp2_session_callbacks_del(cbs);
        free(latencies);
        if (failed > 0) {
                fprintf(stderr, "rktlet-bench-grpc: %lu call(s) failed (warm-up included)\n", failed);
                ret = 1;
        }
        return ret;
}
