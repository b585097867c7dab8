/* The streaming server of Exec, Attach and PortForward: HTTP/1.1 from libmicrohttpd on the daemon's
 * loop, single-use tokens, and the SPDY/3.1 connections the upgraded sockets become.
 *
 * A CRI call registers a request (stream_server_add()) and answers the URL it gets back. A client
 * that comes with the token within a minute gets `101 Switching Protocols` (SPDY/3.1, the best
 * X-Stream-Protocol-Version both sides know), then opens its streams (streamType error, stdin,
 * stdout, stderr, resize; for port-forward a data + error pair per requestID). Once every stream
 * the request expects is open (within the stream-creation timeout), the handler's start() runs the
 * work and hands its fds over with stream_conn_set_io(); stream_conn_exit() reports the end on the
 * error stream. The connection pumps bytes both ways with bounded buffers: a pipe is not read while
 * the SPDY output queue is above its high-water mark, and the socket is not read while a pipe we
 * write to is full.
 *
 * A client may upgrade to a WebSocket instead (Upgrade: websocket, kubelet's channel protocols, see
 * ws.h): then every channel is open at the upgrade and start() runs at once; port-forward takes
 * its ports from ?port=. The handler sees no difference. */
#pragma once

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error-chain.h"

typedef enum StreamKind {
        STREAM_EXEC,
        STREAM_ATTACH,
        STREAM_PORTFORWARD,
        _STREAM_KIND_MAX,
        _STREAM_KIND_INVALID = -EINVAL,
} StreamKind;

const char *stream_kind_to_string(StreamKind k);

typedef struct StreamServerConfig {
        const char *address; /* a numeric IPv4 or IPv6 address */
        uint16_t port;       /* 0: the kernel chooses */
        unsigned max_connections;
        size_t max_header_size;        /* the request line and headers together */
        uint64_t creation_timeout_usec; /* the request, and then every expected stream */
        uint64_t idle_timeout_usec;     /* an upgraded connection with no traffic either way */
        const char *tls_cert_pem;       /* both set: HTTPS (GnuTLS inside libmicrohttpd), https:// URLs */
        const char *tls_key_pem;
} StreamServerConfig;

typedef struct StreamServer StreamServer;
typedef struct StreamConn StreamConn;

typedef struct StreamHandler {
        /* Exec and attach: every expected stream is open. Start the work and call
         * stream_conn_set_io() (now or later); stream_conn_exit() when it ends. A negative return
         * is reported at once as the exit, with the message of *error. */
        int (*start)(StreamConn *c, void *data, Error *error);
        /* The connection ends before stream_conn_exit(): stop the work. */
        void (*stop)(StreamConn *c, void *data);
        /* Port-forward: a socket connecting (non-blocking) to port in the pod, returned in *ret_fd. */
        int (*connect)(void *data, uint16_t port, int *ret_fd, Error *error);
        void (*free_data)(void *data);
        /* Attach: the client's stdin ended (FIN or a reset) and what it sent is written. Called from
         * the loop, never from inside another stream_*() call. */
        void (*stdin_closed)(StreamConn *c, void *data);
        /* Attach with tty: a size from the resize stream, for the handler's own terminal. */
        void (*resize)(StreamConn *c, void *data, unsigned short cols, unsigned short rows);
} StreamHandler;

typedef struct StreamRequest {
        StreamKind kind;
        bool in, out, err, tty; /* exec and attach: which streams */
        void *data;              /* the handler's; the server frees it with free_data() */
} StreamRequest;

int stream_server_new(struct ev_loop *loop, const StreamServerConfig *config, const StreamHandler *handler,
                      StreamServer **ret);
StreamServer *stream_server_free(StreamServer *s);
/* "http://127.0.0.1:40123" (https:// with TLS), the server's base URL. */
const char *stream_server_base_url(const StreamServer *s);
unsigned stream_server_n_connections(const StreamServer *s);

/* Registers req under a new token and returns the URL to answer. On success the server owns
 * req->data; on failure the caller does: -EBUSY when 1000 requests are pending. */
int stream_server_add(StreamServer *s, const StreamRequest *req, char **ret_url);

/* The work's fds, taken over (-1: none): in_fd is written with what the client sends on stdin,
 * out_fd and err_fd are read into stdout and stderr; tty_fd (a pty master, or -1) is both, and gets
 * the resize stream's sizes. */
void stream_conn_set_io(StreamConn *c, int in_fd, int out_fd, int err_fd, int tty_fd);
/* The work ended: exit_code, or message (not NULL) when it could not run. Reported on the error
 * stream once its output is out; then the connection closes. */
void stream_conn_exit(StreamConn *c, int exit_code, const char *message);

/* Attach: the work's output comes from memory instead of an fd (stream_conn_set_io() with out_fd,
 * err_fd and tty_fd -1). Queues len bytes on the client's stdout (err: stderr) stream and arms the
 * write; never frees c. 0 also when the client did not open that stream (the bytes are dropped);
 * -EPIPE once the connection is ending; -ENOBUFS when the SPDY output queue is at its hard cap. */
int stream_conn_send(StreamConn *c, bool err, const void *data, size_t len);
/* What is queued for the client and not yet taken by its socket: the caller bounds it. */
size_t stream_conn_queued(const StreamConn *c);
/* Drops the client now (nothing more is written to it; the socket is reset); the handler's stop() and free_data() run
 * before this returns, unless it is called from inside the session's input (then soon after). */
void stream_conn_close(StreamConn *c);
/* Closes the fd stdin is written to (stdin_once: another client closed the container's stdin);
 * what the client sends on stdin from now on is dropped, and stdin_closed() is not called. */
void stream_conn_close_stdin(StreamConn *c);
