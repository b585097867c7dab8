/* A gRPC server built from src/grpc/ with test-only methods, so that the integration tests can drive
 * what no CRI method exercises as hard (server streaming, paced sends, calls held open) with grpcio.
 *
 *   grpc-test-server SOCKET
 *
 * Methods (requests and responses are raw bytes, not protobuf):
 *   /rktlet.test.Test/Stream   request: count (u32 BE), size (u32 BE), interval_ms (u32 BE, optional);
 *                              count messages of size bytes, message i filled with byte i & 0xff,
 *                              all at once or one every interval_ms (0xffffffff: each once the last
 *                              was drained, grpc_call_when_drained()); then OK.
 *   /rktlet.test.Test/Hold     never answers; ends only when cancelled.
 *   /rktlet.test.Test/Counters responds "held=H cancelled=C streaming=S".
 * SIGTERM: graceful shutdown as rktlet does it (GOAWAY, in-flight calls finish), exit 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc-server.h"
#include "log.h"
#include "macro.h"

typedef struct Stream {
        ev_timer timer;
        GrpcCall *call;
        struct ev_loop *loop;
        uint32_t count, size, next;
} Stream;

static unsigned n_held, n_cancelled, n_streaming;

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void stream_free(Stream *s) {
        ev_timer_stop(s->loop, &s->timer);
        grpc_call_unref(s->call);
        n_streaming--;
        free(s);
}

static int stream_send_one(Stream *s) {
        uint8_t *p = grpc_call_reserve_message(s->call, s->size);

        if (!p)
                return -errno;
        memset(p, (int) (s->next & 0xff), s->size);
        grpc_call_commit(s->call);
        s->next++;
        return 0;
}

static void stream_cancel(GrpcCall *call, void *userdata) {
        n_cancelled++;
        stream_free(userdata);
}

static void stream_tick(struct ev_loop *loop, ev_timer *w, int revents) {
        Stream *s = container_of(w, Stream, timer);

        if (s->next < s->count && stream_send_one(s) < 0) {
                grpc_call_finish(s->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                stream_free(s);
                return;
        }
        if (s->next >= s->count) {
                grpc_call_finish(s->call, GRPC_STATUS_OK, NULL);
                stream_free(s);
        }
}

#define PACED_BY_DRAIN UINT32_MAX

/* The last message was taken by the connection: nothing may be pending, then the next one. */
static void stream_drained(GrpcCall *call, void *userdata) {
        Stream *s = userdata;

        if (grpc_call_pending_bytes(call) != 0 || grpc_call_pending_messages(call) != 0) {
                grpc_call_finish(call, GRPC_STATUS_INTERNAL, "drained with %zu bytes in %u messages pending",
                                 grpc_call_pending_bytes(call), grpc_call_pending_messages(call));
                stream_free(s);
                return;
        }
        if (s->next >= s->count) {
                grpc_call_finish(call, GRPC_STATUS_OK, NULL);
                stream_free(s);
                return;
        }
        if (stream_send_one(s) < 0) {
                grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                stream_free(s);
                return;
        }
        if (grpc_call_pending_messages(call) != 1) {
                grpc_call_finish(call, GRPC_STATUS_INTERNAL, "%u messages pending after one send",
                                 grpc_call_pending_messages(call));
                stream_free(s);
                return;
        }
        grpc_call_when_drained(call, stream_drained, s);
}

static int method_stream(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        struct ev_loop *loop = userdata;
        uint32_t interval_ms = 0;
        Stream *s;

        if (len != 8 && len != 12)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "want 8 or 12 bytes, got %zu", len);
        if (len == 12)
                interval_ms = be32(msg + 8);
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->count = be32(msg);
        s->size = be32(msg + 4);
        s->loop = loop;
        s->call = grpc_call_ref(call);
        n_streaming++;
        if (interval_ms == 0) {
                /* Everything at once: the connection's flow control decides the pace. */
                while (s->next < s->count)
                        if (stream_send_one(s) < 0) {
                                stream_free(s);
                                return -ENOMEM;
                        }
                grpc_call_finish(call, GRPC_STATUS_OK, NULL);
                stream_free(s);
                return 0;
        }
        grpc_call_set_cancel(call, stream_cancel, s);
        if (interval_ms == PACED_BY_DRAIN) {
                ev_timer_init(&s->timer, stream_tick, 0., 0.); /* never started: stream_free() stops it */
                grpc_call_when_drained(call, stream_drained, s);
                return 0;
        }
        ev_timer_init(&s->timer, stream_tick, interval_ms / 1000., interval_ms / 1000.);
        ev_timer_start(loop, &s->timer);
        return 0;
}

static void hold_cancel(GrpcCall *call, void *userdata) {
        n_held--;
        n_cancelled++;
        grpc_call_unref(call);
}

static int method_hold(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        n_held++;
        grpc_call_ref(call);
        grpc_call_set_cancel(call, hold_cancel, NULL);
        return 0;
}

static int method_counters(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        char buf[128];
        int n = snprintf(buf, sizeof buf, "held=%u cancelled=%u streaming=%u", n_held, n_cancelled, n_streaming);
        int r = grpc_call_send(call, buf, (size_t) n);

        if (r < 0)
                return r;
        return grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* A handler bug the server must catch: OK without the unary reply message. */
static int method_no_reply(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        return grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static GrpcMethod methods[] = {
        { "/rktlet.test.Test/Stream", "Stream", method_stream, NULL, .server_streaming = true },
        { "/rktlet.test.Test/Hold", "Hold", method_hold, NULL },
        { "/rktlet.test.Test/Counters", "Counters", method_counters, NULL },
        { "/rktlet.test.Test/NoReply", "NoReply", method_no_reply, NULL },
};

static const GrpcMethod *lookup(const char *path, void *userdata) {
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (strcmp(methods[i].path, path) == 0)
                        return &methods[i];
        return NULL;
}

static void stopped(void *userdata) {
        ev_break(userdata, EVBREAK_ALL);
}

static void sigterm_cb(struct ev_loop *loop, ev_signal *w, int revents) {
        GrpcServer *server = w->data;

        ev_signal_stop(loop, w);
        grpc_server_shutdown(server, stopped, loop);
}

int main(int argc, char *argv[]) {
        GrpcServerConfig config = {
                .max_message_size = 16 * 1024 * 1024,
                .max_concurrent_streams = 128,
                .max_connections = 64,
                .handshake_timeout_usec = 10 * 1000 * 1000,
        };
        struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL);
        GrpcServer *server = NULL;
        ev_signal sigterm;
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: grpc-test-server SOCKET\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        log_setup();
        log_set_max_level(LOG_DEBUG);
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                methods[i].userdata = loop;

        r = grpc_server_new(loop, &config, lookup, NULL, &server);
        if (r >= 0)
                r = grpc_server_listen_unix(server, argv[1], 0600);
        if (r < 0) {
                fprintf(stderr, "grpc-test-server: %s\n", strerror(-r));
                return 1;
        }
        ev_signal_init(&sigterm, sigterm_cb, SIGTERM);
        sigterm.data = server;
        ev_signal_start(loop, &sigterm);

        ev_run(loop, 0);

        grpc_server_free(server);
        ev_loop_destroy(loop);
        return 0;
}
