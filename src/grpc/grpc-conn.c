/* One HTTP/2 connection: socket I/O on the loop, the nghttp2 session and its callbacks. */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "grpc-internal.h"
#include "log.h"
#include "time-util.h"

/* Stop pulling frames from nghttp2 (and reading the socket) while this much output waits. */
#define WBUF_HIGH (256u * 1024u)
#define READ_CHUNK (64u * 1024u)
#define STREAM_WINDOW (1u << 20)
#define CONNECTION_WINDOW (8u << 20)

static GrpcCall *stream_call(nghttp2_session *session, int32_t stream_id) {
        return nghttp2_session_get_stream_user_data(session, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        GrpcConn *c = user_data;

        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;

        GrpcCall *call = grpc_call_new(c, frame->hd.stream_id);
        if (!call)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets just this stream */
        nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
        return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0; /* request trailers carry nothing we use */

        GrpcCall *call = stream_call(session, frame->hd.stream_id);
        if (call)
                grpc_call_on_header(call, (const char *) name, namelen, (const char *) value, valuelen);
        return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        GrpcConn *c = user_data;
        GrpcCall *call;

        /* Any complete frame means the client spoke HTTP/2: the handshake is over. */
        ev_timer_stop(c->server->loop, &c->handshake_timer);

        switch (frame->hd.type) {
        case NGHTTP2_HEADERS:
                call = stream_call(session, frame->hd.stream_id);
                if (!call)
                        return 0;
                if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
                        grpc_call_on_headers_end(call);
                if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
                        grpc_call_on_request_end(call);
                break;
        case NGHTTP2_DATA:
                if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                        return 0;
                call = stream_call(session, frame->hd.stream_id);
                if (call)
                        grpc_call_on_request_end(call);
                break;
        default:
                break;
        }
        return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data) {
        GrpcCall *call = stream_call(session, stream_id);
        if (call)
                grpc_call_on_data(call, data, len);
        return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        /* A response that ended while the client is still sending (message too large, unknown method):
         * tell the client to stop, as gRPC servers do, with RST_STREAM(NO_ERROR). */
        if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
                GrpcCall *call = stream_call(session, frame->hd.stream_id);
                if (call && !call->body_complete)
                        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                                  NGHTTP2_NO_ERROR);
        }
        return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
        GrpcCall *call = stream_call(session, stream_id);
        if (!call)
                return 0;
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        grpc_call_detach(call);
        grpc_call_unref(call); /* the stream's reference */
        return 0;
}

int grpc_conn_setup_callbacks(nghttp2_session_callbacks **ret) {
        nghttp2_session_callbacks *cbs;

        if (nghttp2_session_callbacks_new(&cbs) != 0)
                return -ENOMEM;
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
        *ret = cbs;
        return 0;
}

static void conn_free(GrpcConn *c) {
        GrpcServer *s = c->server;

        ev_io_stop(s->loop, &c->rio);
        ev_io_stop(s->loop, &c->wio);
        ev_timer_stop(s->loop, &c->handshake_timer);
        ev_timer_stop(s->loop, &c->linger_timer);
        ev_timer_stop(s->loop, &c->kick_timer);

        /* nghttp2_session_del() does not report stream closes: cancel what is left ourselves. */
        c->busy++;
        while (c->calls) {
                GrpcCall *call = c->calls;
                if (call->stream_id > 0)
                        nghttp2_session_set_stream_user_data(c->session, call->stream_id, NULL);
                grpc_call_detach(call);
                grpc_call_unref(call);
        }
        c->busy--;

        nghttp2_session_del(c->session);
        safe_close(c->fd);
        buffer_free(&c->wbuf);

        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        free(c);

        if (s->shutting_down && s->n_conns == 0 && s->shutdown_done) {
                void (*done)(void *) = s->shutdown_done;
                s->shutdown_done = NULL;
                done(s->shutdown_userdata);
        }
}

void grpc_conn_enter(GrpcConn *c) {
        c->busy++;
}

void grpc_conn_leave(GrpcConn *c) {
        assert(c->busy > 0);
        if (--c->busy == 0 && c->dead)
                conn_free(c);
}

void grpc_conn_kill(GrpcConn *c) {
        if (c->dead)
                return;
        c->dead = true;
        ev_io_stop(c->server->loop, &c->rio);
        ev_io_stop(c->server->loop, &c->wio);
        ev_timer_stop(c->server->loop, &c->handshake_timer);
        ev_timer_stop(c->server->loop, &c->linger_timer);
        ev_timer_stop(c->server->loop, &c->kick_timer);
        if (c->busy == 0)
                conn_free(c);
}

static void conn_linger_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        GrpcConn *c = container_of(w, GrpcConn, linger_timer);

        grpc_conn_enter(c);
        grpc_conn_kill(c);
        grpc_conn_leave(c);
}

/* Both sides are done (GOAWAY sent, every stream closed). Closing now could reset the connection
 * under the client's feet while it still sends WINDOW_UPDATEs or acks, before it read our last
 * frames. So: half-close, read and discard until the client closes too, for at most a second. */
static void conn_linger(GrpcConn *c) {
        if (c->lingering)
                return;
        c->lingering = true;
        (void) shutdown(c->fd, SHUT_WR);
        ev_io_stop(c->server->loop, &c->wio);
        ev_io_start(c->server->loop, &c->rio);
        ev_timer_set(&c->linger_timer, 1., 0.);
        ev_timer_start(c->server->loop, &c->linger_timer);
}

/* Moves frames from nghttp2 into the write buffer and the buffer into the socket. Returns 1 when the
 * socket would block, 0 when everything was written, negative on error. */
static int conn_write_some(GrpcConn *c) {
        for (;;) {
                while (buffer_len(&c->wbuf) < WBUF_HIGH) {
                        const uint8_t *data;
                        ssize_t n = nghttp2_session_mem_send(c->session, &data);
                        if (n < 0)
                                return -EPROTO;
                        if (n == 0)
                                break;
                        if (buffer_append(&c->wbuf, data, (size_t) n) < 0)
                                return -ENOMEM;
                }
                if (buffer_len(&c->wbuf) == 0)
                        return 0;

                ssize_t w = write(c->fd, buffer_peek(&c->wbuf), buffer_len(&c->wbuf));
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 1;
                        return -errno;
                }
                buffer_consume(&c->wbuf, (size_t) w);
        }
}

/* The drained callbacks that are due, with flushing deferred (in_session): what they queue is
 * written by the flush loop around this. */
static void conn_run_drained(GrpcConn *c) {
        c->in_session++;
        for (GrpcCall *call = c->calls, *next; call && !c->dead; call = next) {
                if (!grpc_call_take_drained(call)) {
                        next = call->next;
                        continue;
                }
                grpc_call_ref(call);
                call->drained(call, call->drained_userdata);
                /* Detached meanwhile: start over (the calls already run were disarmed by take_drained). */
                next = call->conn == c ? call->next : c->calls;
                grpc_call_unref(call);
        }
        c->in_session--;
}

static void conn_kick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        GrpcConn *c = container_of(w, GrpcConn, kick_timer);

        grpc_conn_enter(c);
        grpc_conn_flush(c);
        grpc_conn_leave(c);
}

void grpc_conn_kick_later(GrpcConn *c) {
        if (c->dead || ev_is_active(&c->kick_timer))
                return;
        ev_timer_set(&c->kick_timer, 0., 0.);
        ev_timer_start(c->server->loop, &c->kick_timer);
}

void grpc_conn_flush(GrpcConn *c) {
        int r;

        if (c->dead)
                return;
        if (c->in_session > 0) {
                c->want_flush = true; /* the outer entry point flushes when nghttp2 returns */
                return;
        }
        if (c->lingering)
                return;

        grpc_conn_enter(c);
        do {
                c->want_flush = false;
                c->in_session++;
                r = conn_write_some(c);
                c->in_session--;
                if (r < 0) {
                        log_debug_errno(r, "Connection %i: write failed: %m", c->fd);
                        grpc_conn_kill(c);
                        goto out;
                }
                conn_run_drained(c);
        } while (c->want_flush && r == 0);

        struct ev_loop *loop = c->server->loop;
        if (r == 1)
                ev_io_start(loop, &c->wio);
        else
                ev_io_stop(loop, &c->wio);

        /* Back-pressure: a client that does not read its responses is not read from either. */
        if (buffer_len(&c->wbuf) >= WBUF_HIGH)
                ev_io_stop(loop, &c->rio);
        else if (!c->dead)
                ev_io_start(loop, &c->rio);

        if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
            buffer_len(&c->wbuf) == 0)
                conn_linger(c);
out:
        grpc_conn_leave(c);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
        static uint8_t buf[READ_CHUNK];
        GrpcConn *c = container_of(w, GrpcConn, rio);

        grpc_conn_enter(c);
        for (int i = 0; i < 8 && !c->dead; i++) {
                ssize_t n = read(c->fd, buf, sizeof buf);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                grpc_conn_kill(c);
                        break;
                }
                if (n == 0) {
                        grpc_conn_kill(c);
                        break;
                }
                if (c->lingering)
                        continue; /* discard */

                c->in_session++;
                ssize_t rv = nghttp2_session_mem_recv(c->session, buf, (size_t) n);
                c->in_session--;
                if (rv < 0) {
                        log_debug("Connection %i: HTTP/2 input rejected: %s", c->fd, nghttp2_strerror((int) rv));
                        grpc_conn_kill(c);
                        break;
                }
                if ((size_t) n < sizeof buf || buffer_len(&c->wbuf) >= WBUF_HIGH)
                        break;
        }
        grpc_conn_flush(c);
        grpc_conn_leave(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
        GrpcConn *c = container_of(w, GrpcConn, wio);

        grpc_conn_enter(c);
        grpc_conn_flush(c);
        grpc_conn_leave(c);
}

static void conn_handshake_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        GrpcConn *c = container_of(w, GrpcConn, handshake_timer);

        log_debug("Connection %i: no HTTP/2 preface in time, closing.", c->fd);
        grpc_conn_enter(c);
        grpc_conn_kill(c);
        grpc_conn_leave(c);
}

void grpc_conn_goaway(GrpcConn *c) {
        if (c->dead)
                return;
        grpc_conn_enter(c);
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR,
                              NULL, 0);
        grpc_conn_flush(c);
        grpc_conn_leave(c);
}

int grpc_conn_new(GrpcServer *s, int fd) {
        GrpcConn *c;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->server = s;
        c->fd = fd;

        r = nghttp2_session_server_new2(&c->session, s->callbacks, c, s->option);
        if (r != 0) {
                free(c);
                return -ENOMEM;
        }

        nghttp2_settings_entry settings[] = {
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->config.max_concurrent_streams },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
                { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64u * 1024u },
        };
        if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, ELEMENTSOF(settings)) != 0 ||
            nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, CONNECTION_WINDOW) != 0) {
                nghttp2_session_del(c->session);
                free(c);
                return -ENOMEM;
        }

        ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
        ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
        ev_timer_init(&c->handshake_timer, conn_handshake_timeout_cb,
                      (double) s->config.handshake_timeout_usec / USEC_PER_SEC, 0.);
        ev_timer_init(&c->linger_timer, conn_linger_timeout_cb, 1., 0.);
        ev_timer_init(&c->kick_timer, conn_kick_cb, 0., 0.);

        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;

        ev_timer_start(s->loop, &c->handshake_timer);
        grpc_conn_flush(c); /* sends our SETTINGS and starts reading */
        return 0;
}
