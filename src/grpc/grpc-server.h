/* The gRPC server: unix listeners, HTTP/2 connections on nghttp2, and the calls they carry. */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "grpc-status.h"
#include "macro.h"

typedef struct GrpcServer GrpcServer;
typedef struct GrpcCall GrpcCall;

/* A handler gets the request message (unframed, not decoded) and replies now or later with
 * grpc_call_reply()/grpc_call_send()+grpc_call_finish(). To reply later it takes a reference and sets
 * a cancel callback; a negative return before any reply ends the call with the errno's status. */
typedef int (*GrpcHandler)(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata);
/* Called at most once when a call ends before the handler finished it: deadline passed, stream
 * reset, connection gone or server stopped. The handler drops its work and its reference. */
typedef void (*GrpcCancel)(GrpcCall *call, void *userdata);
/* A streaming call's output was all handed to the connection (the client's flow-control window took
 * it): the handler may produce the next message. */
typedef void (*GrpcDrained)(GrpcCall *call, void *userdata);

typedef struct GrpcMethod {
        const char *path; /* "/runtime.v1.RuntimeService/Version" */
        const char *name; /* "Version" */
        GrpcHandler handler;
        void *userdata;
        /* A unary method (the default) must answer OK with exactly its one response message; the
         * server turns an OK without one into INTERNAL. A server-streaming one may send none. */
        bool server_streaming;
} GrpcMethod;

/* Finds the method for a :path; NULL means unknown (the server answers UNIMPLEMENTED). */
typedef const GrpcMethod *(*GrpcLookup)(const char *path, void *userdata);

typedef struct GrpcServerConfig {
        uint64_t max_message_size;
        uint32_t max_concurrent_streams;
        unsigned max_connections;
        uint64_t handshake_timeout_usec; /* a connection must send its preface within this */
        /* Told of every call as it ends (finished, refused or cancelled): the method's name (NULL
         * for a path no method has), its status and how long it took. NULL: nobody. */
        void (*observe)(const char *method, GrpcStatus status, uint64_t usec, void *userdata);
        void *observe_userdata;
} GrpcServerConfig;

int grpc_server_new(struct ev_loop *loop, const GrpcServerConfig *config, GrpcLookup lookup,
                    void *userdata, GrpcServer **ret);
GrpcServer *grpc_server_free(GrpcServer *s);

/* Serves on an already listening socket (socket activation); takes ownership of fd. */
int grpc_server_add_listener_fd(GrpcServer *s, int fd);
/* Creates the parent directory, replaces a stale socket, binds, sets mode, listens. The socket file
 * is removed again by grpc_server_shutdown()/grpc_server_free(). */
int grpc_server_listen_unix(GrpcServer *s, const char *path, mode_t mode);

/* Graceful stop: closes the listeners, sends GOAWAY and lets in-flight calls finish; done() runs once
 * the last connection is gone (possibly from inside this call). */
void grpc_server_shutdown(GrpcServer *s, void (*done)(void *userdata), void *userdata);
/* Forced stop: cancels every call and closes every connection now. */
void grpc_server_close_connections(GrpcServer *s);
unsigned grpc_server_n_connections(const GrpcServer *s);
/* Stops (or starts again) accepting new connections; clients wait in the listen backlog meanwhile. */
void grpc_server_pause(GrpcServer *s, bool pause);

GrpcCall *grpc_call_ref(GrpcCall *c);
GrpcCall *grpc_call_unref(GrpcCall *c);
const char *grpc_call_path(const GrpcCall *c);
/* True once the call was finished or cancelled: nothing more can be sent. */
bool grpc_call_is_done(const GrpcCall *c);
void grpc_call_set_cancel(GrpcCall *c, GrpcCancel cancel, void *userdata);

/* Appends one framed message of len bytes and returns where to write its len payload bytes (valid
 * until the next call on this GrpcCall). NULL with errno set on OOM or when the call is done. Nothing
 * is sent before grpc_call_commit() or grpc_call_finish(). */
uint8_t *grpc_call_reserve_message(GrpcCall *c, size_t len);
void grpc_call_commit(GrpcCall *c);
int grpc_call_send(GrpcCall *c, const void *msg, size_t len);
/* What is queued on the call and not yet taken by the connection (held back by the peer's HTTP/2
 * flow-control window): bytes, and messages whole or begun. */
size_t grpc_call_pending_bytes(const GrpcCall *c);
unsigned grpc_call_pending_messages(const GrpcCall *c);
/* Calls drained() once, soon (from the loop, not from this call), when nothing is pending any more:
 * at once if nothing is. Re-arm it for each wait; NULL disarms. Not after the call is done. */
void grpc_call_when_drained(GrpcCall *c, GrpcDrained drained, void *userdata);
/* Drops the queued messages nghttp2 has not begun to send (one begun is completed, so the stream
 * stays well framed): a peer that does not read costs no more memory. Returns the bytes dropped. */
size_t grpc_call_discard_pending(GrpcCall *c);
/* Ends the call with trailers. message may be NULL; it is percent-encoded here. */
int grpc_call_finish(GrpcCall *c, GrpcStatus status, const char *format, ...) _printf_(3, 4);
int grpc_call_finish_errno(GrpcCall *c, int error, const char *format, ...) _printf_(3, 4);
/* Ends the call at once, dropping what grpc_call_discard_pending() drops: the trailers go out ahead of
 * the flow-control window (HEADERS are not flow-controlled), unless a message was begun (it is
 * completed first, as the window allows). For a peer that stopped reading. */
int grpc_call_finish_discard(GrpcCall *c, GrpcStatus status, const char *format, ...) _printf_(3, 4);
/* Sends the response headers now, before any message (a streaming call the client waits on). */
int grpc_call_send_headers(GrpcCall *c);
