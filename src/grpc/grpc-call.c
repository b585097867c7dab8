/* One gRPC call on an HTTP/2 stream: request headers and body in, messages and trailers out. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "grpc-frame.h"
#include "grpc-internal.h"
#include "grpc-timeout.h"
#include "log.h"
#include "quote.h"
#include "time-util.h"

#define MAKE_NV(n, v, vlen)                                                                        \
        {                                                                                          \
                (uint8_t *) (n), (uint8_t *) (v), sizeof(n) - 1, (vlen),                           \
                        NGHTTP2_NV_FLAG_NO_COPY_NAME                                               \
        }
#define MAKE_NV_LIT(n, v) MAKE_NV(n, v, sizeof(v) - 1)

static void call_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents);

GrpcCall *grpc_call_new(GrpcConn *conn, int32_t stream_id) {
        GrpcCall *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->n_ref = 1; /* the stream's */
        c->conn = conn;
        c->stream_id = stream_id;
        c->start_usec = now_usec(CLOCK_MONOTONIC);
        ev_timer_init(&c->deadline, call_deadline_cb, 0., 0.);

        c->next = conn->calls;
        if (conn->calls)
                conn->calls->prev = c;
        conn->calls = c;
        return c;
}

GrpcCall *grpc_call_ref(GrpcCall *c) {
        assert(c->n_ref > 0);
        c->n_ref++;
        return c;
}

GrpcCall *grpc_call_unref(GrpcCall *c) {
        if (!c)
                return NULL;
        assert(c->n_ref > 0);
        if (--c->n_ref > 0)
                return NULL;
        assert(!c->conn);
        buffer_free(&c->body);
        buffer_free(&c->out);
        free(c->path);
        free(c->encoding);
        free(c->malformed);
        free(c->status_message);
        free(c);
        return NULL;
}

const char *grpc_call_path(const GrpcCall *c) {
        return c->path ? c->path : "";
}

bool grpc_call_is_done(const GrpcCall *c) {
        return c->done;
}

void grpc_call_set_cancel(GrpcCall *c, GrpcCancel cancel, void *userdata) {
        c->cancel = cancel;
        c->cancel_userdata = userdata;
}

static void call_run_cancel(GrpcCall *c) {
        GrpcCancel cancel = c->cancel;
        void *userdata = c->cancel_userdata;

        c->cancel = NULL;
        c->cancel_userdata = NULL;
        if (cancel)
                cancel(c, userdata);
}

static void call_log_end(GrpcCall *c, GrpcServer *s) {
        uint64_t usec = now_usec(CLOCK_MONOTONIC) - c->start_usec;

        if (s && s->config.observe)
                s->config.observe(c->method ? c->method->name : NULL, c->status, usec, s->config.observe_userdata);
        if (log_get_max_level() < LOG_DEBUG)
                return;

        char method[512], status[64];
        const char *fields[] = { method, status, NULL };

        snprintf(method, sizeof method, "RKTLET_METHOD=%s", grpc_call_path(c));
        snprintf(status, sizeof status, "RKTLET_GRPC_STATUS=%s", grpc_status_to_string(c->status));
        log_fields(LOG_DEBUG, fields, "%s: %s%s%s (%llu µs)", grpc_call_path(c),
                   grpc_status_to_string(c->status), c->status_message ? ": " : "",
                   c->status_message ? c->status_message : "", (unsigned long long) usec);
}

/* The request is complete and its handler runs: at debug level, so that a test (or an operator) can
 * tell a call that reached the daemon from one that did not. */
static void call_log_start(GrpcCall *c) {
        if (log_get_max_level() < LOG_DEBUG)
                return;

        char method[512];
        const char *fields[] = { method, NULL };

        snprintf(method, sizeof method, "RKTLET_CALL_STARTED=%s", grpc_call_path(c));
        log_fields(LOG_DEBUG, fields, "%s: started", grpc_call_path(c));
}

/* Stream closed or connection gone. */
void grpc_call_detach(GrpcCall *c) {
        GrpcConn *conn = c->conn;

        if (!conn)
                return;
        ev_timer_stop(conn->server->loop, &c->deadline);
        if (c->prev)
                c->prev->next = c->next;
        else
                conn->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        c->conn = NULL;
        c->stream_id = 0;

        if (!c->done) {
                c->done = true;
                c->status = GRPC_STATUS_CANCELLED;
                call_log_end(c, conn->server);
                grpc_call_ref(c);
                call_run_cancel(c);
                grpc_call_unref(c);
        }
}

static bool header_is(const char *name, size_t namelen, const char *want) {
        return namelen == strlen(want) && memcmp(name, want, namelen) == 0;
}

enum {
        PSEUDO_METHOD = 1u << 0,
        PSEUDO_SCHEME = 1u << 1,
        PSEUDO_PATH = 1u << 2,
        PSEUDO_AUTHORITY = 1u << 3,
};

_printf_(2, 3) static void call_malformed(GrpcCall *c, const char *format, ...) {
        va_list ap;

        if (c->malformed)
                return; /* the first reason is the one reported */
        va_start(ap, format);
        if (vasprintf(&c->malformed, format, ap) < 0)
                c->malformed = NULL;
        va_end(ap);
        if (!c->malformed)
                c->malformed = strdup("malformed request headers");
}

static unsigned pseudo_header_bit(const char *name, size_t namelen) {
        static const struct {
                const char *name;
                unsigned bit;
        } table[] = {
                { ":method", PSEUDO_METHOD },
                { ":scheme", PSEUDO_SCHEME },
                { ":path", PSEUDO_PATH },
                { ":authority", PSEUDO_AUTHORITY },
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (header_is(name, namelen, table[i].name))
                        return table[i].bit;
        return 0;
}

/* HTTP/2's rules for a request header block (RFC 9113 8.2 and 8.3) and what gRPC needs of it. The
 * authority (":authority", "host") is never judged: a unix socket has none, and real clients send
 * "localhost", the socket path, its percent-encoding, or nothing. */
void grpc_call_on_header(GrpcCall *c, const char *name, size_t namelen, const char *value, size_t valuelen) {
        const uint8_t *n = (const uint8_t *) name, *v = (const uint8_t *) value;

        if (namelen > 0 && name[0] == ':') {
                unsigned bit = pseudo_header_bit(name, namelen);
                if (c->regular_seen)
                        return call_malformed(c, "pseudo-header '%.*s' after a regular header", (int) MIN(namelen, 64u), name);
                if (bit == 0)
                        return call_malformed(c, "unknown pseudo-header '%.*s'", (int) MIN(namelen, 64u), name);
                if (c->pseudo_seen & bit)
                        return call_malformed(c, "pseudo-header '%.*s' appears twice", (int) MIN(namelen, 64u), name);
                c->pseudo_seen |= bit;
                if (bit == PSEUDO_AUTHORITY)
                        return;
                if (valuelen == 0)
                        return call_malformed(c, "pseudo-header '%.*s' is empty", (int) MIN(namelen, 64u), name);
                if (!nghttp2_check_header_value(v, valuelen))
                        return call_malformed(c, "pseudo-header '%.*s' has a forbidden character", (int) MIN(namelen, 64u), name);
                if (bit == PSEUDO_METHOD)
                        c->method_post = header_is(value, valuelen, "POST");
                else if (bit == PSEUDO_PATH) {
                        free(c->path);
                        c->path = strndup(value, valuelen);
                }
                return;
        }

        c->regular_seen = true;
        if (namelen == 0 || !nghttp2_check_header_name(n, namelen))
                return call_malformed(c, "header name '%.*s' is not a lower-case token", (int) MIN(namelen, 64u), name);
        if (header_is(name, namelen, "host"))
                return;
        if (!nghttp2_check_header_value(v, valuelen))
                return call_malformed(c, "header '%.*s' has a forbidden character", (int) MIN(namelen, 64u), name);
        if (header_is(name, namelen, "connection") || header_is(name, namelen, "keep-alive") ||
            header_is(name, namelen, "proxy-connection") || header_is(name, namelen, "transfer-encoding") ||
            header_is(name, namelen, "upgrade"))
                return call_malformed(c, "connection-specific header '%.*s' is not allowed in HTTP/2",
                                      (int) MIN(namelen, 64u), name);

        if (header_is(name, namelen, "te")) {
                c->te_trailers = valuelen == 8 && strncasecmp(value, "trailers", 8) == 0;
                if (!c->te_trailers)
                        return call_malformed(c, "te: '%.*s': HTTP/2 allows only 'trailers'", (int) MIN(valuelen, 64u),
                                              value);
        } else if (header_is(name, namelen, "content-type")) {
                c->content_type_ok = valuelen >= 16 && strncmp(value, "application/grpc", 16) == 0 &&
                                     (valuelen == 16 || value[16] == '+' || value[16] == ';');
        } else if (header_is(name, namelen, "grpc-timeout")) {
                uint64_t usec;
                if (grpc_timeout_parse(value, valuelen, &usec) >= 0)
                        c->timeout_usec = usec > 0 ? usec : 1;
        } else if (header_is(name, namelen, "grpc-encoding")) {
                free(c->encoding);
                c->encoding = strndup(value, valuelen);
        }
}

static void call_kick(GrpcCall *c) {
        if (c->conn)
                grpc_conn_flush(c->conn);
}

/* A request that is not a gRPC call answered as the gRPC-over-HTTP/2 spec asks: an HTTP status that
 * says why, and a gRPC status with a message for gRPC clients, in one HEADERS frame that ends the
 * stream (on_frame_send() then resets a stream the client has not ended with NO_ERROR). */
/* A Trailers-Only response: one HEADERS frame with the call's status that ends the stream. */
static void call_trailers_only(GrpcCall *c, const char *http_status) {
        char code[4];
        _cleanup_free_ char *encoded = c->status_message ? grpc_percent_encode_max(c->status_message, GRPC_MESSAGE_MAX) : NULL;
        nghttp2_nv nva[] = {
                MAKE_NV(":status", http_status, strlen(http_status)),
                MAKE_NV_LIT("content-type", "application/grpc"),
                MAKE_NV_LIT("grpc-accept-encoding", "identity"), /* also what a compression refusal names */
                MAKE_NV("grpc-status", code, (size_t) snprintf(code, sizeof code, "%i", c->status)),
                MAKE_NV("grpc-message", encoded, encoded ? strlen(encoded) : 0),
        };
        if (nghttp2_submit_response(c->conn->session, c->stream_id, nva, encoded ? ELEMENTSOF(nva) : ELEMENTSOF(nva) - 1,
                                    NULL) != 0)
                nghttp2_submit_rst_stream(c->conn->session, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_INTERNAL_ERROR);
}

/* A request that is not a gRPC call answered as the gRPC-over-HTTP/2 spec asks: an HTTP status that
 * says why, and a gRPC status with a message for gRPC clients (on_frame_send() then resets a stream
 * the client has not ended, with NO_ERROR). */
_printf_(4, 5) static void call_refuse(GrpcCall *c, const char *http_status, GrpcStatus status,
                                       const char *format, ...) {
        va_list ap;

        c->done = c->finished = true;
        c->status = status;
        free(c->status_message);
        va_start(ap, format);
        if (vasprintf(&c->status_message, format, ap) < 0)
                c->status_message = NULL;
        va_end(ap);
        call_log_end(c, c->conn ? c->conn->server : NULL);
        call_trailers_only(c, http_status);
}

void grpc_call_on_headers_end(GrpcCall *c) {
        GrpcServer *s = c->conn->server;
        const unsigned required = PSEUDO_METHOD | PSEUDO_SCHEME | PSEUDO_PATH;

        if (c->malformed)
                return call_refuse(c, "400", GRPC_STATUS_INTERNAL, "malformed request: %s", c->malformed);
        if ((c->pseudo_seen & required) != required)
                return call_refuse(c, "400", GRPC_STATUS_INTERNAL, "malformed request: no %s pseudo-header",
                                   !(c->pseudo_seen & PSEUDO_METHOD)   ? ":method"
                                   : !(c->pseudo_seen & PSEUDO_SCHEME) ? ":scheme"
                                                                       : ":path");
        if (!c->method_post)
                return call_refuse(c, "405", GRPC_STATUS_INTERNAL, "gRPC requests use :method POST");
        if (!c->content_type_ok)
                /* Not gRPC at all: plain HTTP says so. */
                return call_refuse(c, "415", GRPC_STATUS_INVALID_ARGUMENT,
                                   "content-type must be application/grpc or application/grpc+proto");
        if (!c->te_trailers)
                return call_refuse(c, "400", GRPC_STATUS_INTERNAL, "gRPC requests carry 'te: trailers'");

        c->method = s->lookup(c->path, s->userdata);
        if (!c->method) {
                grpc_call_finish(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", QUOTE(grpc_call_path(c)));
                return;
        }

        if (c->timeout_usec > 0) {
                ev_timer_set(&c->deadline, (double) c->timeout_usec / USEC_PER_SEC, 0.);
                ev_timer_start(s->loop, &c->deadline);
        }
}

static bool encoding_is_identity(const char *e) {
        return !e || strcasecmp(e, "identity") == 0;
}

void grpc_call_on_data(GrpcCall *c, const uint8_t *data, size_t len) {
        uint64_t max = c->conn->server->config.max_message_size;
        bool compressed;
        uint32_t n;
        int r;

        if (c->done)
                return; /* answered already; nghttp2 still accounts the window */

        if (buffer_append(&c->body, data, len) < 0) {
                grpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory reading the request");
                return;
        }

        /* Judge the message by its header, before it is all buffered. */
        r = grpc_frame_header_read(buffer_peek(&c->body), buffer_len(&c->body), &compressed, &n);
        if (r == -EAGAIN)
                return;
        if (r < 0) {
                grpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "bad gRPC message header");
                buffer_free(&c->body);
                return;
        }
        if (n > max || buffer_len(&c->body) > max + GRPC_FRAME_HEADER_SIZE) {
                grpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                 "request message of %u bytes is larger than the limit of %llu bytes",
                                 n, (unsigned long long) max);
                buffer_free(&c->body);
                return;
        }
        if (compressed) {
                /* We decompress nothing, so any compressed message is refused, whatever it declares. */
                if (encoding_is_identity(c->encoding))
                        grpc_call_finish(c, GRPC_STATUS_UNIMPLEMENTED,
                                         "compressed message without a supported grpc-encoding (supported: identity)");
                else
                        grpc_call_finish(c, GRPC_STATUS_UNIMPLEMENTED,
                                         "grpc-encoding %s is not supported (supported: identity)", QUOTE(c->encoding));
                buffer_free(&c->body);
        }
}

void grpc_call_on_request_end(GrpcCall *c) {
        const uint8_t *msg;
        size_t len;
        bool compressed;
        int r;

        c->body_complete = true;
        if (c->done)
                return;

        r = grpc_frame_decode_unary(buffer_peek(&c->body), buffer_len(&c->body), &compressed, &msg, &len);
        if (r < 0) {
                grpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                                 buffer_len(&c->body) == 0 ? "request has no message"
                                                           : "request is not exactly one gRPC message");
                return;
        }
        assert(!compressed); /* refused in grpc_call_on_data() */

        grpc_call_ref(c);
        call_log_start(c);
        r = c->method->handler(c, msg, len, c->method->userdata);
        if (r < 0 && !c->done)
                grpc_call_finish_errno(c, r, "%s failed: %s", c->method->name, strerror(-r));
        buffer_free(&c->body);
        grpc_call_unref(c);
}

/* n bytes of out were taken by nghttp2: keeps count of the message boundaries. */
static void call_out_consume(GrpcCall *c, size_t n) {
        while (n > 0) {
                if (c->out_front_left == 0) {
                        bool compressed;
                        uint32_t len = 0;
                        int r = grpc_frame_header_read(buffer_peek(&c->out), buffer_len(&c->out), &compressed, &len);
                        assert(r >= 0); /* out holds whole framed messages */
                        (void) r;
                        c->out_front_left = GRPC_FRAME_HEADER_SIZE + (size_t) len;
                }
                size_t k = MIN(n, c->out_front_left);
                buffer_consume(&c->out, k);
                c->out_front_left -= k;
                n -= k;
                if (c->out_front_left == 0) {
                        assert(c->out_messages > 0);
                        c->out_messages--;
                }
        }
}

size_t grpc_call_pending_bytes(const GrpcCall *c) {
        return buffer_len(&c->out);
}

unsigned grpc_call_pending_messages(const GrpcCall *c) {
        return c->out_messages;
}

size_t grpc_call_discard_pending(GrpcCall *c) {
        size_t keep = c->out_front_left, dropped = buffer_len(&c->out) - keep;

        c->out.end = c->out.start + keep;
        c->out_messages = keep > 0 ? 1 : 0;
        if (keep == 0)
                buffer_free(&c->out); /* its memory too, not only its contents */
        return dropped;
}

void grpc_call_when_drained(GrpcCall *c, GrpcDrained drained, void *userdata) {
        c->drained = drained;
        c->drained_userdata = userdata;
        c->drained_armed = drained && !c->done;
        if (c->drained_armed && c->conn)
                grpc_conn_kick_later(c->conn); /* the flush that follows runs it, if out is empty */
}

bool grpc_call_take_drained(GrpcCall *c) {
        if (!c->drained_armed || buffer_len(&c->out) > 0 || !c->conn)
                return false;
        c->drained_armed = false;
        if (c->done)
                return false;
        return true;
}

static int call_submit_trailers(GrpcCall *c) {
        char status[4];
        _cleanup_free_ char *encoded = c->status_message ? grpc_percent_encode_max(c->status_message, GRPC_MESSAGE_MAX) : NULL;
        nghttp2_nv trailers[] = {
                MAKE_NV("grpc-status", status, (size_t) snprintf(status, sizeof status, "%i", c->status)),
                MAKE_NV("grpc-message", encoded, encoded ? strlen(encoded) : 0),
        };
        if (nghttp2_submit_trailer(c->conn->session, c->stream_id, trailers, encoded ? 2 : 1) != 0)
                return -EPROTO;
        c->trailers_submitted = true;
        return 0;
}

static ssize_t call_data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                                 size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                                 void *user_data) {
        GrpcCall *c = source->ptr;
        size_t n = MIN(length, buffer_len(&c->out));

        if (c->trailers_submitted)
                return NGHTTP2_ERR_DEFERRED; /* ended ahead of its data (grpc_call_finish_discard()) */

        memcpy(buf, buffer_peek(&c->out), n);
        call_out_consume(c, n);
        if (buffer_len(&c->out) > 0)
                return (ssize_t) n;
        if (!c->finished)
                return n > 0 ? (ssize_t) n : NGHTTP2_ERR_DEFERRED;

        /* All data out: end the stream with the trailers. */
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (call_submit_trailers(c) < 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        return (ssize_t) n;
}

static int call_send_headers(GrpcCall *c) {
        nghttp2_nv nva[] = {
                MAKE_NV_LIT(":status", "200"),
                MAKE_NV_LIT("content-type", "application/grpc"),
                MAKE_NV_LIT("grpc-accept-encoding", "identity"),
        };
        nghttp2_data_provider prd = { .source.ptr = c, .read_callback = call_data_read_cb };

        if (nghttp2_submit_response(c->conn->session, c->stream_id, nva, ELEMENTSOF(nva), &prd) != 0)
                return -EPROTO;
        c->headers_sent = true;
        return 0;
}

int grpc_call_send_headers(GrpcCall *c) {
        if (c->done || !c->conn)
                return -ESTALE;
        if (c->headers_sent)
                return 0;
        if (call_send_headers(c) < 0)
                return -EPROTO;
        call_kick(c);
        return 0;
}

uint8_t *grpc_call_reserve_message(GrpcCall *c, size_t len) {
        uint8_t *p;

        if (c->done || !c->conn) {
                errno = ESTALE;
                return NULL;
        }
        if (len > UINT32_MAX) {
                errno = EMSGSIZE;
                return NULL;
        }
        if (!c->headers_sent && call_send_headers(c) < 0) {
                errno = EPROTO;
                return NULL;
        }
        p = buffer_reserve(&c->out, GRPC_FRAME_HEADER_SIZE + len);
        if (!p) {
                errno = ENOMEM;
                return NULL;
        }
        grpc_frame_header_write(p, false, (uint32_t) len);
        buffer_commit(&c->out, GRPC_FRAME_HEADER_SIZE + len);
        c->n_sent++;
        c->out_messages++;
        return p + GRPC_FRAME_HEADER_SIZE;
}

void grpc_call_commit(GrpcCall *c) {
        if (!c->conn || !c->headers_sent)
                return;
        nghttp2_session_resume_data(c->conn->session, c->stream_id);
        call_kick(c);
}

int grpc_call_send(GrpcCall *c, const void *msg, size_t len) {
        uint8_t *p = grpc_call_reserve_message(c, len);
        if (!p)
                return -errno;
        memcpy(p, msg, len);
        grpc_call_commit(c);
        return 0;
}

_printf_(4, 0) static int call_finishv(GrpcCall *c, GrpcStatus status, bool now, const char *format, va_list ap) {
        if (c->done)
                return -ESTALE;

        c->done = c->finished = true;
        c->status = status;
        free(c->status_message);
        c->status_message = NULL;
        if (status == GRPC_STATUS_OK && c->method && !c->method->server_streaming && c->n_sent != 1) {
                /* Clients report an OK without its message as INTERNAL anyway: say why, and log the bug. */
                log_error("%s: the handler ended with OK and %u response messages, not one",
                          grpc_call_path(c), c->n_sent);
                c->status = GRPC_STATUS_INTERNAL;
                if (asprintf(&c->status_message, "rktlet bug: %s ended OK with %u response messages, not one",
                             c->method->name, c->n_sent) < 0)
                        c->status_message = NULL;
        } else if (format && vasprintf(&c->status_message, format, ap) < 0)
                c->status_message = NULL;
        call_log_end(c, c->conn ? c->conn->server : NULL);
        c->cancel = NULL;
        c->cancel_userdata = NULL;
        c->drained = NULL;
        c->drained_userdata = NULL;
        c->drained_armed = false;

        if (!c->conn)
                return 0;
        ev_timer_stop(c->conn->server->loop, &c->deadline);

        if (!c->headers_sent)
                call_trailers_only(c, "200");
        else if (now && buffer_len(&c->out) == 0) {
                /* HEADERS are not flow-controlled: the trailers go out even to a peer whose window
                 * is shut. */
                if (call_submit_trailers(c) < 0)
                        nghttp2_submit_rst_stream(c->conn->session, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_INTERNAL_ERROR);
        } else
                nghttp2_session_resume_data(c->conn->session, c->stream_id);
        call_kick(c);
        return 0;
}

int grpc_call_finish(GrpcCall *c, GrpcStatus status, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = call_finishv(c, status, false, format, ap);
        va_end(ap);
        return r;
}

int grpc_call_finish_discard(GrpcCall *c, GrpcStatus status, const char *format, ...) {
        va_list ap;
        int r;

        if (c->done)
                return -ESTALE;
        (void) grpc_call_discard_pending(c);
        va_start(ap, format);
        r = call_finishv(c, status, true, format, ap);
        va_end(ap);
        return r;
}

int grpc_call_finish_errno(GrpcCall *c, int error, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = call_finishv(c, grpc_status_from_errno(error), false, format, ap);
        va_end(ap);
        return r;
}

static void call_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        GrpcCall *c = container_of(w, GrpcCall, deadline);
        GrpcConn *conn = c->conn;
        GrpcCancel cancel = c->cancel;
        void *userdata = c->cancel_userdata;

        if (!conn)
                return;
        grpc_conn_enter(conn);
        grpc_call_ref(c);
        grpc_call_finish(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline of %llu µs exceeded",
                         (unsigned long long) c->timeout_usec);
        if (cancel)
                cancel(c, userdata); /* the work behind the call stops too */
        grpc_call_unref(c);
        grpc_conn_leave(conn);
}
