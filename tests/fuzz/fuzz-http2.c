/* Fuzzes a server connection with arbitrary client bytes: HTTP/2 frames, headers, gRPC messages.
 * The input goes through a socketpair into a real GrpcServer connection driven by its own loop. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "grpc-internal.h"
#include "grpc-server.h"
#include "log.h"

static void hold_cancel(GrpcCall *call, void *userdata) {
        grpc_call_unref(call);
}

static int echo(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        int r = grpc_call_send(call, msg, len);
        if (r < 0)
                return r;
        return grpc_call_finish(call, GRPC_STATUS_OK, "echoed %zu byte(s)", len);
}

static int hold(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        grpc_call_ref(call);
        grpc_call_set_cancel(call, hold_cancel, NULL);
        return 0;
}

static int fail(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        return -EINVAL;
}

static const GrpcMethod methods[] = {
        { "/f.F/Echo", "Echo", echo, NULL },
        { "/f.F/Hold", "Hold", hold, NULL },
        { "/f.F/Fail", "Fail", fail, NULL },
};

static const GrpcMethod *lookup(const char *path, void *userdata) {
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
                if (strcmp(methods[i].path, path) == 0)
                        return &methods[i];
        return NULL;
}

static void drain(int fd) {
        char buf[65536];
        while (read(fd, buf, sizeof buf) > 0)
                ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        GrpcServerConfig config = {
                .max_message_size = 1 << 20,
                .max_concurrent_streams = 32,
                .max_connections = 4,
                .handshake_timeout_usec = 1000 * 1000,
        };
        struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL);
        GrpcServer *server = NULL;
        int fds[2];
        size_t off = 0;
        bool shut = false;

        if (!loop)
                return 0;
        log_set_max_level(getenv("FUZZ_DEBUG") ? LOG_DEBUG : LOG_ERR);
        if (grpc_server_new(loop, &config, lookup, NULL, &server) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0) {
                grpc_server_free(server);
                ev_loop_destroy(loop);
                return 0;
        }
        if (grpc_conn_new(server, fds[0]) < 0) {
                close(fds[0]);
                close(fds[1]);
                grpc_server_free(server);
                ev_loop_destroy(loop);
                return 0;
        }
        /* Feed the input in pieces as the socket takes it, letting the server run in between. */
        for (unsigned spins = 0; spins < 10000 && grpc_server_n_connections(server) > 0; spins++) {
                if (off < size) {
                        ssize_t k = write(fds[1], data + off, size - off);
                        if (k > 0)
                                off += (size_t) k;
                        else if (k < 0 && errno != EAGAIN)
                                off = size;
                }
                if (off == size && !shut) {
                        (void) shutdown(fds[1], SHUT_WR);
                        shut = true;
                }
                ev_run(loop, EVRUN_NOWAIT);
                drain(fds[1]);
        }
        grpc_server_close_connections(server);
        close(fds[1]);
        grpc_server_free(server);
        ev_loop_destroy(loop);
        return 0;
}
