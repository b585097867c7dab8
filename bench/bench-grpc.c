/* Benchmark client for rktlet's gRPC path: unary Version calls over h2c on a unix socket, with
 * nghttp2 and poll(). Latency mode: one call at a time on one connection, percentiles of each
 * call's round trip. Throughput mode: K connections with C streams each kept in flight.
 *
 *   rktlet-bench-grpc [--socket PATH] [--mode latency|throughput] [--calls N] [--warmup N]
 *                     [--concurrency C] [--connections K] [--path /runtime.v1.RuntimeService/Version]
 *
 * Prints a human line and a machine line ("result mode=... key=value ..."); exits 1 if any call
 * failed or ended with a grpc-status other than 0. */
#include <errno.h>
#include <getopt.h>
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

/* runtime.v1.VersionRequest{version: "v1"} with its 5-byte gRPC prefix. */
static const uint8_t body[] = { 0, 0, 0, 0, 4, 0x0a, 0x02, 'v', '1' };

typedef struct Conn Conn;

typedef struct Call {
        Conn *conn;
        uint64_t start_ns;
        size_t sent;
        int grpc_status; /* -1 until the trailers say */
} Call;

struct Conn {
        int fd;
        nghttp2_session *session;
        unsigned in_flight;
        uint8_t rbuf[65536];
};

static const char *arg_socket = "/run/rktlet/rktlet.sock";
static const char *arg_path = "/runtime.v1.RuntimeService/Version";
static unsigned long arg_calls = 20000, arg_warmup = 1000, arg_concurrency = 32, arg_connections = 1;
static bool arg_throughput = false;

static unsigned long submitted, completed, failed;
static uint64_t *latencies;
static size_t n_latencies;
static bool recording;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
        Call *call = source->ptr;
        size_t n = sizeof body - call->sent;

        if (n > length)
                n = length;
        memcpy(buf, body + call->sent, n);
        call->sent += n;
        if (call->sent == sizeof body)
                *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t) n;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
        Call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

        if (call && namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
                call->grpc_status = atoi((const char *) value);
        return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data) {
        Call *call = nghttp2_session_get_stream_user_data(session, stream_id);

        if (!call)
                return 0;
        if (error_code != NGHTTP2_NO_ERROR || call->grpc_status != 0)
                failed++;
        if (recording && latencies)
                latencies[n_latencies++] = now_ns() - call->start_ns;
        completed++;
        call->conn->in_flight--;
        free(call);
        return 0;
}

static int submit(Conn *c) {
        const nghttp2_nv hdrs[] = {
#define NV(n, v) { (uint8_t *) (n), (uint8_t *) (v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }
                NV(":method", "POST"),         NV(":scheme", "http"), NV(":path", arg_path),
                NV(":authority", "localhost"), NV("content-type", "application/grpc"), NV("te", "trailers"),
#undef NV
        };
        Call *call = calloc(1, sizeof *call);
        nghttp2_data_provider dp = { .source.ptr = call, .read_callback = read_body };

        if (!call)
                return -ENOMEM;
        call->conn = c;
        call->grpc_status = -1;
        call->start_ns = now_ns();
        if (nghttp2_submit_request(c->session, NULL, hdrs, sizeof hdrs / sizeof hdrs[0], &dp, call) < 0) {
                free(call);
                return -EIO;
        }
        c->in_flight++;
        submitted++;
        return 0;
}

static int flush(Conn *c) {
        for (;;) {
                const uint8_t *data;
                ssize_t n = nghttp2_session_mem_send(c->session, &data);
                if (n < 0)
                        return -EIO;
                if (n == 0)
                        return 0;
                for (ssize_t off = 0; off < n;) {
                        ssize_t k = write(c->fd, data + off, (size_t) (n - off));
                        if (k < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        off += k;
                }
        }
}

static int receive(Conn *c) {
        ssize_t n = read(c->fd, c->rbuf, sizeof c->rbuf);

        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 0 : -errno;
        if (n == 0)
                return -ECONNRESET;
        if (nghttp2_session_mem_recv(c->session, c->rbuf, (size_t) n) < 0)
                return -EPROTO;
        return 0;
}

static int conn_open(Conn *c, nghttp2_session_callbacks *cbs) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        nghttp2_settings_entry settings[] = {
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20 },
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1024 },
        };

        strncpy(sa.sun_path, arg_socket, sizeof sa.sun_path - 1);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                fprintf(stderr, "rktlet-bench-grpc: cannot connect to %s: %s\n", arg_socket, strerror(errno));
                return -1;
        }
        if (nghttp2_session_client_new(&c->session, cbs, c) < 0 ||
            nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2) < 0 ||
            nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 8 << 20) < 0)
                return -1;
        return flush(c);
}

/* Runs until `target` calls have completed, keeping `depth` in flight per connection. */
static int run(Conn *conns, unsigned n_conns, unsigned long target, unsigned depth) {
        struct pollfd pfd[64];
        unsigned long goal = completed + target, to_submit = target;

        while (completed < goal) {
                for (unsigned i = 0; i < n_conns; i++) {
                        while (to_submit > 0 && conns[i].in_flight < depth) {
                                if (submit(&conns[i]) < 0)
                                        return -1;
                                to_submit--;
                        }
                        if (flush(&conns[i]) < 0)
                                return -1;
                        pfd[i] = (struct pollfd) { .fd = conns[i].fd, .events = POLLIN };
                }
                if (poll(pfd, n_conns, 10000) <= 0) {
                        fprintf(stderr, "rktlet-bench-grpc: no answer for 10 s\n");
                        return -1;
                }
                for (unsigned i = 0; i < n_conns; i++)
                        if (pfd[i].revents && receive(&conns[i]) < 0) {
                                fprintf(stderr, "rktlet-bench-grpc: connection %u broke\n", i);
                                return -1;
                        }
        }
        return 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double pct(double p) {
        size_t i = (size_t) (p / 100.0 * (double) (n_latencies - 1) + 0.5);
        return (double) latencies[i] / 1000.0;
}

static void usage(void) {
        printf("Usage: rktlet-bench-grpc [--socket PATH] [--mode latency|throughput] [--calls N] [--warmup N]\n"
               "                         [--concurrency C] [--connections K] [--path GRPC-PATH]\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },      { "mode", required_argument, NULL, 'm' },
                { "calls", required_argument, NULL, 'n' },       { "warmup", required_argument, NULL, 'w' },
                { "concurrency", required_argument, NULL, 'c' }, { "connections", required_argument, NULL, 'k' },
                { "path", required_argument, NULL, 'p' },        { "help", no_argument, NULL, 'h' },
                {},
        };
        nghttp2_session_callbacks *cbs;
        Conn conns[64] = {};
        int c;

        while ((c = getopt_long(argc, argv, "s:m:n:w:c:k:p:h", options, NULL)) >= 0)
                switch (c) {
                case 's': arg_socket = optarg; break;
                case 'm': arg_throughput = strcmp(optarg, "throughput") == 0; break;
                case 'n': arg_calls = strtoul(optarg, NULL, 10); break;
                case 'w': arg_warmup = strtoul(optarg, NULL, 10); break;
                case 'c': arg_concurrency = strtoul(optarg, NULL, 10); break;
                case 'k': arg_connections = strtoul(optarg, NULL, 10); break;
                case 'p': arg_path = optarg; break;
                case 'h': usage(); return 0;
                default: usage(); return 2;
                }
        if (arg_calls == 0 || arg_concurrency == 0 || arg_connections == 0 || arg_connections > 64) {
                usage();
                return 2;
        }

        nghttp2_session_callbacks_new(&cbs);
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
        unsigned n_conns = arg_throughput ? (unsigned) arg_connections : 1;
        for (unsigned i = 0; i < n_conns; i++)
                if (conn_open(&conns[i], cbs) < 0)
                        return 1;

        unsigned depth = arg_throughput ? (unsigned) arg_concurrency : 1;
        if (arg_warmup > 0 && run(conns, n_conns, arg_warmup, depth) < 0)
                return 1;

        latencies = calloc(arg_calls, sizeof *latencies);
        if (!latencies)
                return 1;
        recording = !arg_throughput;
        uint64_t t0 = now_ns();
        if (run(conns, n_conns, arg_calls, depth) < 0)
                return 1;
        double secs = (double) (now_ns() - t0) / 1e9;
        recording = false;

        if (arg_throughput) {
                printf("%lu calls, %u connection(s) x %u streams: %.0f calls/s (%.2f s)\n", arg_calls, n_conns,
                       depth, (double) arg_calls / secs, secs);
                printf("result mode=throughput calls=%lu connections=%u streams=%u calls_per_s=%.0f failed=%lu\n",
                       arg_calls, n_conns, depth, (double) arg_calls / secs, failed);
        } else {
                qsort(latencies, n_latencies, sizeof *latencies, cmp_u64);
                printf("%zu calls, one at a time: p50 %.1f µs, p90 %.1f µs, p99 %.1f µs, max %.1f µs\n",
                       n_latencies, pct(50), pct(90), pct(99), pct(100));
                printf("result mode=latency calls=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f failed=%lu\n",
                       n_latencies, pct(50), pct(90), pct(99), pct(100), failed);
        }

        for (unsigned i = 0; i < n_conns; i++) {
                nghttp2_session_del(conns[i].session);
                close(conns[i].fd);
        }
        nghttp2_session_callbacks_del(cbs);
        free(latencies);
        if (failed > 0) {
                fprintf(stderr, "rktlet-bench-grpc: %lu call(s) failed\n", failed);
                return 1;
        }
        return 0;
}
