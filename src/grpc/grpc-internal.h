/* Structures shared by the server, connection and call halves of the gRPC module. */
#pragma once

#include <ev.h>
#include <nghttp2/nghttp2.h>

#include "buffer.h"
#include "grpc-server.h"

typedef struct GrpcConn GrpcConn;

typedef struct GrpcListener {
        ev_io io;
        GrpcServer *server;
} GrpcListener;

struct GrpcServer {
        struct ev_loop *loop;
        GrpcServerConfig config;
        GrpcLookup lookup;
        void *userdata;
        nghttp2_session_callbacks *callbacks;
        nghttp2_option *option;

        GrpcListener **listeners;
        size_t n_listeners;
        char *socket_path; /* the socket file we bound, removed on shutdown */

        GrpcConn *conns;
        unsigned n_conns;

        bool paused; /* listeners not accepting (connections wait in the backlog) */
        bool shutting_down;
        void (*shutdown_done)(void *userdata);
        void *shutdown_userdata;
};

struct GrpcConn {
        GrpcServer *server;
        GrpcConn *prev, *next;
        int fd;
        ev_io rio, wio;
        ev_timer handshake_timer;
        ev_timer linger_timer; /* after a graceful end: drain input for a while, then close */
        ev_timer kick_timer;   /* a flush soon, from the loop (grpc_conn_kick_later()) */
        nghttp2_session *session;
        Buffer wbuf;
        GrpcCall *calls;

        unsigned busy;       /* nesting of entry points; the connection is freed only at 0 */
        unsigned in_session; /* inside nghttp2_session_mem_recv/mem_send: no flushing now */
        bool want_flush;
        bool lingering;
        bool dead;
};

struct GrpcCall {
        unsigned n_ref;
        GrpcConn *conn; /* NULL once the stream is closed or the connection is gone */
        GrpcCall *prev, *next;
        int32_t stream_id;

        const GrpcMethod *method;
        char *path;
        char *encoding;
        /* What the request headers said, judged when they end (grpc_call_on_headers_end()): nghttp2's
         * own HTTP checks are off, since they refuse the authorities real clients send on a unix
         * socket (grpc-go sends the socket path). */
        char *malformed;      /* the first way the header block breaks HTTP/2's rules */
        unsigned pseudo_seen; /* PSEUDO_* bits */
        bool regular_seen;
        bool method_post;
        bool te_trailers;
        bool content_type_ok;
        unsigned n_sent; /* messages queued */
        bool body_complete;
        bool headers_sent;
        bool finished; /* trailers queued */
        bool trailers_submitted; /* handed to nghttp2 */
        bool done;     /* finished or cancelled */
        uint64_t start_usec;

        uint64_t timeout_usec;
        ev_timer deadline;

        Buffer body;
        Buffer out;
        /* Of the message at the front of out, the bytes nghttp2 has not taken yet (0: out starts at
         * a message boundary); and how many messages out holds, whole or begun. */
        size_t out_front_left;
        unsigned out_messages;
        /* Called (from the connection's flush, never from inside nghttp2) once out is empty again:
         * everything queued was handed to the connection. */
        GrpcDrained drained;
        void *drained_userdata;
        bool drained_armed;
        GrpcStatus status;
        char *status_message;

        GrpcCancel cancel;
        void *cancel_userdata;
};

/* grpc-conn.c */
int grpc_conn_new(GrpcServer *s, int fd);
void grpc_conn_enter(GrpcConn *c);
void grpc_conn_leave(GrpcConn *c);
void grpc_conn_flush(GrpcConn *c);
/* A flush from the loop's next iteration (which runs the drained callbacks that are due). */
void grpc_conn_kick_later(GrpcConn *c);
void grpc_conn_kill(GrpcConn *c);
void grpc_conn_goaway(GrpcConn *c);
int grpc_conn_setup_callbacks(nghttp2_session_callbacks **ret);

/* grpc-call.c */
GrpcCall *grpc_call_new(GrpcConn *conn, int32_t stream_id);
void grpc_call_on_header(GrpcCall *c, const char *name, size_t namelen, const char *value, size_t valuelen);
void grpc_call_on_headers_end(GrpcCall *c);
void grpc_call_on_data(GrpcCall *c, const uint8_t *data, size_t len);
void grpc_call_on_request_end(GrpcCall *c);
void grpc_call_detach(GrpcCall *c);
ssize_t grpc_call_read_data(GrpcCall *c, uint8_t *buf, size_t length, uint32_t *data_flags);
/* Whether the call's drained callback is due (armed, output empty); disarms it then. */
bool grpc_call_take_drained(GrpcCall *c);
