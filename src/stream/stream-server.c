/* The streaming server: libmicrohttpd on the loop, tokens, and the SPDY connections (see the header).
 *
 * libmicrohttpd runs with MHD_USE_EPOLL and no thread of its own: its epoll fd is one libev read
 * watcher, MHD_run() runs when it fires and when MHD_get_timeout() says, and MHD_ALLOW_UPGRADE hands
 * the socket over after the 101 (MHD reads and writes it no more until MHD_upgrade_action(CLOSE)). */
#include "stream-server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "buffer.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "spdy.h"
#include "time-util.h"
#include "ws.h"

#define MAX_PENDING 1000                     /* kubelet's request cache */
#define TOKEN_TTL_USEC (60ULL * USEC_PER_SEC) /* likewise */
#define TOKEN_BYTES 32
#define TOKEN_LEN 43 /* base64url of 32 bytes, unpadded */
#define READ_SIZE (64u * 1024)
#define OUTPUT_HIGH (1u * 1024 * 1024) /* stop reading producers above this much queued for the peer */
#define OUTPUT_LOW (256u * 1024)       /* and resume below this */
#define RESIZE_MAX 4096
#define WS_MAX_PORTS 100                     /* port-forward ports in one WebSocket request */
#define WS_LINGER_USEC (2ULL * USEC_PER_SEC) /* after our close frame, for the peer's */

typedef enum Slot {
        SLOT_ERROR,
        SLOT_STDIN,
        SLOT_STDOUT,
        SLOT_STDERR,
        SLOT_RESIZE,
        _SLOT_MAX,
} Slot;

static const char *const slot_names[_SLOT_MAX] = {
        [SLOT_ERROR] = "error", [SLOT_STDIN] = "stdin", [SLOT_STDOUT] = "stdout",
        [SLOT_STDERR] = "stderr", [SLOT_RESIZE] = "resize",
};

static const char *const kind_names[_STREAM_KIND_MAX] = {
        [STREAM_EXEC] = "exec", [STREAM_ATTACH] = "attach", [STREAM_PORTFORWARD] = "portforward",
};

const char *stream_kind_to_string(StreamKind k) {
        return k >= 0 && k < _STREAM_KIND_MAX ? kind_names[k] : NULL;
}

typedef struct Token {
        char token[TOKEN_LEN + 1];
        uint64_t expires;
        StreamRequest req;
} Token;

/* One direction between an fd and a SPDY stream. A reader reads fd into stream sid; a writer writes
 * what the peer sends on sid into fd, through buf. */
typedef struct Pump {
        StreamConn *conn;
        int fd;
        ev_io io;
        uint32_t sid;
        bool writer;
        bool eof;    /* reader: the fd ended; writer: the peer sent FIN */
        bool paused; /* reader: held for back-pressure */
        bool dropping; /* writer: its fd's reader went; what comes for it is dropped */
        Buffer buf;  /* writer */
} Pump;

/* A port-forward request: its data and error streams, and the connection in the pod. */
typedef struct PfPair {
        struct PfPair *next;
        char *request_id;
        uint16_t port;
        uint32_t data_sid, error_sid;
        bool connecting, failed;
        Pump rd, wr;
} PfPair;

struct StreamConn {
        StreamServer *server;
        StreamConn *prev, *next;
        StreamRequest req;
        int version; /* exec, attach: 4 for v4.channel.k8s.io … 1 for channel.k8s.io */
        struct MHD_UpgradeResponseHandle *urh;
        int fd;
        ev_io rd, wr;
        ev_timer create_timer, idle_timer;
        bool drain_armed; /* closing: the idle timer is the drain deadline now */
        ev_timer stdin_timer; /* attach: tells the handler the client's stdin ended, from the loop */
        bool stdin_told;
        SpdySession *spdy;
        WsSession *ws; /* instead of spdy: a WebSocket, whose channel n is "stream" n + 1 here */
        uint32_t sid[_SLOT_MAX];
        unsigned n_expected;
        bool started, exited, reported, closing, freeing;
        bool io_set;  /* stream_conn_set_io() came */
        bool in_recv; /* inside spdy_session_recv(): not freed now, conn_update() follows */
        bool lingering; /* WebSocket: our close frame is out, the peer's is awaited */
        int exit_code;
        char *exit_message;
        Pump in, out, err, tty; /* tty: the pty master, read into stdout */
        Buffer resize;
        struct winsize size;
        bool have_size;
        PfPair *pairs;
};

struct StreamServer {
        struct ev_loop *loop;
        StreamServerConfig config;
        StreamHandler handler;
        struct MHD_Daemon *mhd;
        int listen_fd;
        ev_io mhd_io;
        ev_timer mhd_timer;
        bool in_mhd;
        char base_url[96];
        Token *tokens;
        size_t n_tokens;
        StreamConn *conns;
        unsigned n_conns;
};

/* What the access handler keeps for a request between its calls, until MHD says it completed. */
typedef struct Pending {
        StreamServer *server;
        bool have_req;
        StreamRequest req;
        int version;
        const WsProtocol *ws; /* a WebSocket upgrade */
        uint16_t ports[WS_MAX_PORTS]; /* its port-forward ports (?port=) */
        size_t n_ports;
} Pending;

static void server_run(StreamServer *s);
static void conn_update(StreamConn *c);
static void conn_free(StreamConn *c);

static void request_done(StreamServer *s, StreamRequest *req) {
        if (req->data && s->handler.free_data)
                s->handler.free_data(req->data);
        req->data = NULL;
}

/* --- tokens ------------------------------------------------------------------------------------ */

static void tokens_prune(StreamServer *s) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        size_t j = 0;

        for (size_t i = 0; i < s->n_tokens; i++) {
                if (s->tokens[i].expires <= now)
                        request_done(s, &s->tokens[i].req);
                else
                        s->tokens[j++] = s->tokens[i];
        }
        s->n_tokens = j;
}

static void token_generate(char out[static TOKEN_LEN + 1]) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        uint8_t raw[TOKEN_BYTES + 1] = {};
        size_t got = 0;
        unsigned bits = 0, acc = 0, n = 0;

        while (got < TOKEN_BYTES) {
                ssize_t r = getrandom(raw + got, TOKEN_BYTES - got, 0);
                if (r > 0)
                        got += (size_t) r;
        }
        for (size_t i = 0; i < TOKEN_BYTES; i++) {
                acc = (acc << 8) | raw[i];
                bits += 8;
                while (bits >= 6) {
                        bits -= 6;
                        out[n++] = alphabet[(acc >> bits) & 63];
                }
        }
        if (bits > 0)
                out[n++] = alphabet[(acc << (6 - bits)) & 63];
        out[n] = '\0';
}

int stream_server_add(StreamServer *s, const StreamRequest *req, char **ret_url) {
        Token t = { .expires = now_usec(CLOCK_MONOTONIC) + TOKEN_TTL_USEC, .req = *req };
        char *url;

        tokens_prune(s);
        if (s->n_tokens >= MAX_PENDING)
                return -EBUSY;
        token_generate(t.token);
        if (asprintf(&url, "%s/%s/%s", s->base_url, stream_kind_to_string(req->kind), t.token) < 0)
                return -ENOMEM;
        s->tokens[s->n_tokens++] = t;
        *ret_url = url;
        return 0;
}

/* Takes the token's request out (single use). */
static bool token_take(StreamServer *s, StreamKind kind, const char *token, StreamRequest *ret) {
        tokens_prune(s);
        for (size_t i = 0; i < s->n_tokens; i++) {
                if (strcmp(s->tokens[i].token, token) != 0)
                        continue;
                if (s->tokens[i].req.kind != kind)
                        return false; /* an exec token on /attach/: refused, and kept for its owner */
                *ret = s->tokens[i].req;
                s->tokens[i] = s->tokens[--s->n_tokens];
                return true;
        }
        return false;
}

/* --- the status on the error stream ---------------------------------------------------------------- */

static char *status_text(const StreamConn *c) {
        char *text = NULL;

        if (c->version < 4) {
                /* v1–v3: any text on the error stream is the error; success is silence. */
                if (c->exit_message)
                        return strdup(c->exit_message);
                if (c->exit_code == 0)
                        return strdup("");
                return asprintf(&text, "command terminated with non-zero exit code: exit status %i", c->exit_code) < 0
                               ? NULL
                               : text;
        }

        /* v4: a metav1.Status, as kubelet's writeStatus sends it and client-go's errorDecoderV4 reads it. */
        _cleanup_(yajl_gen_freep) yajl_gen g = yajl_gen_alloc(NULL);
        char code[16], message[4096];
        if (!g)
                return NULL;
        yajl_gen_map_open(g);
        json_gen_str(g, "metadata");
        yajl_gen_map_open(g);
        yajl_gen_map_close(g);
        if (!c->exit_message && c->exit_code == 0)
                json_gen_key_str(g, "status", "Success");
        else if (!c->exit_message) {
                snprintf(code, sizeof code, "%i", c->exit_code);
                snprintf(message, sizeof message, "command terminated with non-zero exit code: exit status %i",
                         c->exit_code);
                json_gen_key_str(g, "status", "Failure");
                json_gen_key_str(g, "message", message);
                json_gen_key_str(g, "reason", "NonZeroExitCode");
                json_gen_str(g, "details");
                yajl_gen_map_open(g);
                json_gen_str(g, "causes");
                yajl_gen_array_open(g);
                yajl_gen_map_open(g);
                json_gen_key_str(g, "reason", "ExitCode");
                json_gen_key_str(g, "message", code);
                yajl_gen_map_close(g);
                yajl_gen_array_close(g);
                yajl_gen_map_close(g);
        } else {
                snprintf(message, sizeof message, "Internal error occurred: %s", c->exit_message);
                json_gen_key_str(g, "status", "Failure");
                json_gen_key_str(g, "message", message);
                json_gen_key_str(g, "reason", "InternalError");
                json_gen_str(g, "details");
                yajl_gen_map_open(g);
                json_gen_str(g, "causes");
                yajl_gen_array_open(g);
                yajl_gen_map_open(g);
                json_gen_key_str(g, "message", c->exit_message);
                yajl_gen_map_close(g);
                yajl_gen_array_close(g);
                yajl_gen_map_close(g);
                json_gen_key_int(g, "code", 500);
        }
        yajl_gen_map_close(g);
        return json_gen_steal(g);
}

/* --- the transport: SPDY streams, or WebSocket channels ------------------------------------------ */

/* Data for the peer on stream sid (a WebSocket: channel sid - 1). A WebSocket channel has no end of
 * its own: a FIN with no data sends nothing there, the close frame ends every channel. */
static int conn_send(StreamConn *c, uint32_t sid, const void *data, size_t len, bool fin) {
        if (!c->ws)
                return spdy_session_submit_data(c->spdy, sid, data, len, fin);
        if (len == 0 && fin)
                return 0;
        return ws_session_submit(c->ws, (uint8_t) (sid - 1), data, len);
}

static size_t conn_queued(const StreamConn *c) {
        return c->ws ? ws_session_queued(c->ws) : spdy_session_queued(c->spdy);
}

static size_t conn_peek_output(StreamConn *c, const uint8_t **ret) {
        return c->ws ? ws_session_peek_output(c->ws, ret) : spdy_session_peek_output(c->spdy, ret);
}

static void conn_consume_output(StreamConn *c, size_t n) {
        if (c->ws)
                ws_session_consume_output(c->ws, n);
        else
                spdy_session_consume_output(c->spdy, n);
}

static bool conn_want_read(const StreamConn *c) {
        return c->ws ? ws_session_want_read(c->ws) : spdy_session_want_read(c->spdy);
}

static int conn_recv(StreamConn *c, const uint8_t *buf, size_t len) {
        int r;

        c->in_recv = true;
        r = c->ws ? ws_session_recv(c->ws, buf, len) : spdy_session_recv(c->spdy, buf, len);
        c->in_recv = false;
        return r;
}

/* --- pumps --------------------------------------------------------------------------------------- */

static void pump_close(Pump *p) {
        if (p->fd >= 0) {
                ev_io_stop(p->conn->server->loop, &p->io);
                p->fd = safe_close(p->fd);
        }
        buffer_free(&p->buf);
}

static void conn_fail(StreamConn *c) {
        /* Nothing more can be said to this peer: drop it. */
        if (!c->freeing)
                conn_free(c);
}

static void conn_check_finished(StreamConn *c);
static void pf_ws_check_done(StreamConn *c);

static void reader_cb(struct ev_loop *loop, ev_io *w, int revents) {
        Pump *p = container_of(w, Pump, io);
        StreamConn *c = p->conn;
        uint8_t buf[READ_SIZE];
        ssize_t n;

        if (conn_queued(c) >= OUTPUT_HIGH) {
                ev_io_stop(loop, &p->io);
                p->paused = true;
                return;
        }
        n = read(p->fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n > 0) {
                if (p->sid && conn_send(c, p->sid, buf, (size_t) n, false) < 0)
                        p->sid = 0; /* the stream went; what comes next is dropped */
                conn_update(c);
                return;
        }
        /* EOF, or EIO from a pty master whose slaves are all closed. */
        pump_close(p);
        p->eof = true;
        if (c->req.kind == STREAM_PORTFORWARD) {
                /* The pod's side closed: end the data stream, and the error stream with nothing on it
                 * (client-go waits for that one before it closes the local connection). */
                PfPair *pp = container_of(p, PfPair, rd);
                if (pp->data_sid)
                        (void) conn_send(c, pp->data_sid, NULL, 0, true);
                if (pp->error_sid)
                        (void) conn_send(c, pp->error_sid, NULL, 0, true);
                pf_ws_check_done(c);
        } else
                conn_check_finished(c);
        conn_update(c);
}

static void pump_start_reader(StreamConn *c, Pump *p, int fd, uint32_t sid) {
        *p = (Pump) { .conn = c, .fd = fd, .sid = sid };
        if (fd < 0) {
                p->eof = true;
                return;
        }
        (void) fd_nonblock(fd, true);
        ev_io_init(&p->io, reader_cb, fd, EV_READ);
        ev_io_start(c->server->loop, &p->io);
}

static bool conn_writers_blocked(StreamConn *c);

/* Writes what the writer holds; closes the fd after the peer's FIN once it is all out. */
static void writer_flush(Pump *p) {
        StreamConn *c = p->conn;

        while (p->fd >= 0 && buffer_len(&p->buf) > 0) {
                ssize_t n = write(p->fd, buffer_peek(&p->buf), buffer_len(&p->buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0) {
                        /* the reader went (EPIPE): what the client sends is dropped from now on, never
                         * buffered, so the socket is not held for it */
                        buffer_free(&p->buf);
                        p->buf = (Buffer) {};
                        p->dropping = true;
                        if (!c->pairs)
                                pump_close(p);
                        break;
                }
                buffer_consume(&p->buf, (size_t) n);
        }
        if (p->fd >= 0 && buffer_len(&p->buf) > 0)
                ev_io_start(c->server->loop, &p->io);
        else if (p->fd >= 0) {
                ev_io_stop(c->server->loop, &p->io);
                if (p->eof) {
                        if (c->pairs)
                                (void) shutdown(p->fd, SHUT_WR); /* the socket is the reader's too */
                        else
                                pump_close(p);
                }
        }
        if (!conn_writers_blocked(c) && !c->closing && c->fd >= 0)
                ev_io_start(c->server->loop, &c->rd);
        if (p == &c->in && c->req.kind == STREAM_ATTACH && c->req.in && c->io_set && p->eof && p->fd < 0 &&
            buffer_len(&p->buf) == 0 && !c->stdin_told && c->server->handler.stdin_closed) {
                c->stdin_told = true;
                ev_timer_start(c->server->loop, &c->stdin_timer);
        }
}

static void writer_cb(struct ev_loop *loop, ev_io *w, int revents) {
        writer_flush(container_of(w, Pump, io));
}

static void pump_init_writer(StreamConn *c, Pump *p, int fd) {
        Buffer keep = p->buf; /* what came before the fd */
        bool eof = p->eof;
        uint32_t sid = p->sid;

        *p = (Pump) { .conn = c, .fd = fd, .sid = sid, .writer = true, .eof = eof, .buf = keep };
        if (fd >= 0) {
                (void) fd_nonblock(fd, true);
                ev_io_init(&p->io, writer_cb, fd, EV_WRITE);
        }
}

/* Data from the peer for a writer: buffered, then written; the socket is not read meanwhile. */
static int writer_push(Pump *p, const uint8_t *data, size_t len, bool fin) {
        if (len > 0 && !p->dropping && (p->fd >= 0 || !p->eof) && buffer_append(&p->buf, data, len) < 0)
                return -ENOMEM;
        if (fin)
                p->eof = true;
        writer_flush(p);
        return 0;
}

static bool pump_blocked(const Pump *p) {
        /* A writer with bytes it cannot write yet; one with no fd yet holds at most one read. */
        return p->writer && buffer_len(&p->buf) > 0 && (p->fd >= 0 || !p->eof);
}

static bool conn_writers_blocked(StreamConn *c) {
        if (pump_blocked(&c->in))
                return true;
        for (PfPair *pp = c->pairs; pp; pp = pp->next)
                if (pump_blocked(&pp->wr))
                        return true;
        return false;
}

/* --- exec and attach ----------------------------------------------------------------------------- */

static void apply_size(StreamConn *c) {
        /* The pty master the terminal's output is read from: open until the terminal ends (-1 then),
         * unlike its twin for stdin, which the client may close first. */
        if (c->have_size && c->tty.fd >= 0)
                (void) ioctl(c->tty.fd, TIOCSWINSZ, &c->size);
        else if (c->have_size && c->req.kind == STREAM_ATTACH && c->req.tty && c->started && c->server->handler.resize)
                c->server->handler.resize(c, c->req.data, c->size.ws_col, c->size.ws_row);
}

static void resize_push(StreamConn *c, const uint8_t *data, size_t len) {
        /* client-go encodes one {"Width":…,"Height":…} per line. */
        if (buffer_append(&c->resize, data, len) < 0)
                return;
        for (;;) {
                const uint8_t *b = buffer_peek(&c->resize), *nl = memchr(b, '\n', buffer_len(&c->resize));
                if (!nl) {
                        if (buffer_len(&c->resize) > RESIZE_MAX)
                                buffer_consume(&c->resize, buffer_len(&c->resize));
                        return;
                }
                _cleanup_free_ char *line = strndup((const char *) b, (size_t) (nl - b));
                buffer_consume(&c->resize, (size_t) (nl - b) + 1);
                yajl_val v = line ? json_parse(line, NULL, 0) : NULL;
                long long w, h;
                if (json_get_int(v, "Width", &w) && json_get_int(v, "Height", &h) && w >= 0 && h >= 0 && w <= 65535 &&
                    h <= 65535) {
                        c->size = (struct winsize) { .ws_col = (unsigned short) w, .ws_row = (unsigned short) h };
                        c->have_size = true;
                        apply_size(c);
                }
                yajl_tree_free(v);
        }
}

void stream_conn_set_io(StreamConn *c, int in_fd, int out_fd, int err_fd, int tty_fd) {
        if (c->exited || c->closing) {
                safe_close(in_fd);
                safe_close(out_fd);
                safe_close(err_fd);
                safe_close(tty_fd);
                return;
        }
        c->io_set = true;
        if (tty_fd >= 0) {
                int twin = fcntl(tty_fd, F_DUPFD_CLOEXEC, 3);
                pump_init_writer(c, &c->in, twin);
                pump_start_reader(c, &c->tty, tty_fd, c->sid[SLOT_STDOUT]);
                apply_size(c);
                safe_close(in_fd);
                safe_close(out_fd);
                safe_close(err_fd);
                c->out.eof = c->err.eof = true;
        } else {
                pump_init_writer(c, &c->in, in_fd);
                pump_start_reader(c, &c->out, out_fd, c->sid[SLOT_STDOUT]);
                pump_start_reader(c, &c->err, err_fd, c->sid[SLOT_STDERR]);
                c->tty.eof = true;
                apply_size(c); /* attach: the handler's terminal */
        }
        writer_flush(&c->in);
        conn_update(c);
}

void stream_conn_exit(StreamConn *c, int exit_code, const char *message) {
        if (c->exited)
                return;
        c->exited = true;
        c->exit_code = exit_code;
        c->exit_message = message ? strdup(message ?: "") : NULL;
        if (message && !c->exit_message)
                c->exit_message = strdup("out of memory");
        if (!c->io_set) /* never ran: no output to wait for */
                c->out.eof = c->err.eof = c->tty.eof = true;
        conn_check_finished(c);
        conn_update(c);
}

static void conn_touch(StreamConn *c);

int stream_conn_send(StreamConn *c, bool err, const void *data, size_t len) {
        uint32_t sid = c->sid[err ? SLOT_STDERR : SLOT_STDOUT];
        int r;

        if (c->exited || c->closing || c->freeing)
                return -EPIPE;
        if (!sid || len == 0)
                return 0;
        r = conn_send(c, sid, data, len, false);
        if (r < 0)
                return r;
        /* What the socket takes now goes at once (a burst is not the client's fault); the rest, and
         * any error, are conn_write_cb()'s, outside the caller's walk. */
        const uint8_t *out;
        size_t n;
        while ((n = conn_peek_output(c, &out)) > 0) {
                ssize_t w = send(c->fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w <= 0)
                        break;
                conn_consume_output(c, (size_t) w);
                conn_touch(c);
        }
        if (conn_peek_output(c, &out) > 0)
                ev_io_start(c->server->loop, &c->wr);
        return 0;
}

size_t stream_conn_queued(const StreamConn *c) {
        return conn_queued(c);
}

void stream_conn_close(StreamConn *c) {
        /* An abort: a reset, not a FIN queued behind what the client did not read (the kernel
         * would hold that for it, and the client would never learn it was dropped). */
        struct linger l = { .l_onoff = 1, .l_linger = 0 };
        (void) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        if (c->in_recv)
                c->closing = true;
        else
                conn_fail(c);
}

void stream_conn_close_stdin(StreamConn *c) {
        c->stdin_told = true;
        if (!c->in.conn) /* not started */
                return;
        pump_close(&c->in);
        c->in.eof = true;
        writer_flush(&c->in); /* the socket is read again if stdin held it */
}

static void conn_stdin_closed_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        StreamConn *c = container_of(w, StreamConn, stdin_timer);

        if (!c->exited && !c->closing)
                c->server->handler.stdin_closed(c, c->req.data);
}

/* Once the work ended and its output is all in the queue: the status, then close after the drain. */
static void conn_check_finished(StreamConn *c) {
        _cleanup_free_ char *text = NULL;

        if (!c->exited || c->reported || !c->out.eof || !c->err.eof || !c->tty.eof)
                return;
        c->reported = true;
        for (Slot s = SLOT_STDOUT; s <= SLOT_STDERR; s++)
                if (c->sid[s])
                        (void) conn_send(c, c->sid[s], NULL, 0, true);
        text = status_text(c);
        if (c->ws) {
                /* v1: silence is success (kubelet's v1WriteStatusFunc); then the close frame. */
                if (text && text[0])
                        (void) conn_send(c, c->sid[SLOT_ERROR], text, strlen(text), true);
                (void) ws_session_submit_close(c->ws, 1000, NULL);
        } else if (c->sid[SLOT_ERROR])
                (void) spdy_session_submit_data(c->spdy, c->sid[SLOT_ERROR], text ?: "", text ? strlen(text) : 0, true);
        c->closing = true;
}

static void conn_start(StreamConn *c) {
        StreamServer *s = c->server;
        Error error = ERROR_INIT;
        int r;

        c->started = true;
        ev_timer_stop(s->loop, &c->create_timer);
        c->in = (Pump) { .conn = c, .fd = -1, .sid = c->sid[SLOT_STDIN], .writer = true, .eof = !c->sid[SLOT_STDIN] };
        c->out = c->err = c->tty = (Pump) { .conn = c, .fd = -1 };
        r = s->handler.start ? s->handler.start(c, c->req.data, &error) : -EOPNOTSUPP;
        if (r < 0) {
                c->started = false;
                stream_conn_exit(c, -1, error_is_set(&error) ? error_text(&error) : strerror(-r));
        }
        error_done(&error);
}

static Slot slot_from_type(const char *v, size_t n) {
        for (Slot s = 0; s < _SLOT_MAX; s++)
                if (strlen(slot_names[s]) == n && memcmp(slot_names[s], v, n) == 0)
                        return s;
        return _SLOT_MAX;
}

static unsigned count_open(const StreamConn *c) {
        unsigned n = 0;
        for (Slot s = 0; s < _SLOT_MAX; s++)
                n += c->sid[s] != 0;
        return n;
}

/* --- port-forward -------------------------------------------------------------------------------- */

static PfPair *pair_find(StreamConn *c, const char *id, size_t n) {
        for (PfPair *p = c->pairs; p; p = p->next)
                if (strlen(p->request_id) == n && memcmp(p->request_id, id, n) == 0)
                        return p;
        return NULL;
}

static PfPair *pair_by_sid(StreamConn *c, uint32_t sid) {
        for (PfPair *p = c->pairs; p; p = p->next)
                if (p->data_sid == sid || p->error_sid == sid)
                        return p;
        return NULL;
}

static void pair_error(StreamConn *c, PfPair *p, const char *why) {
        char msg[512];

        if (p->failed)
                return;
        p->failed = true;
        snprintf(msg, sizeof msg, "error forwarding port %u to pod: %s", (unsigned) p->port, why);
        if (p->error_sid)
                (void) conn_send(c, p->error_sid, msg, strlen(msg), true);
        if (p->data_sid)
                (void) conn_send(c, p->data_sid, NULL, 0, true);
        pf_ws_check_done(c);
}

static void pair_connected_cb(struct ev_loop *loop, ev_io *w, int revents) {
        Pump *wr = container_of(w, Pump, io);
        StreamConn *c = wr->conn;
        PfPair *p = container_of(wr, PfPair, wr);
        int err = 0;
        socklen_t len = sizeof err;

        ev_io_stop(loop, w);
        p->connecting = false;
        if (getsockopt(wr->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err) {
                /* The socket first: ending the pair's streams may free the pair (ASan saw it). */
                pump_close(wr);
                pair_error(c, p, strerror(err));
                conn_update(c);
                return;
        }
        int fd = wr->fd;
        Buffer keep = wr->buf;
        bool eof = wr->eof;
        wr->buf = (Buffer) {};
        pump_init_writer(c, wr, fd);
        wr->buf = keep;
        wr->eof = eof;
        pump_start_reader(c, &p->rd, fcntl(fd, F_DUPFD_CLOEXEC, 3), p->data_sid);
        writer_flush(wr);
        conn_update(c);
}

static void pair_try_connect(StreamConn *c, PfPair *p) {
        StreamServer *s = c->server;
        Error error = ERROR_INIT;
        int fd = -1, r;

        if (!p->data_sid || !p->error_sid || p->connecting || p->wr.conn)
                return;
        p->wr = (Pump) { .conn = c, .fd = -1, .writer = true, .sid = p->data_sid };
        p->rd = (Pump) { .conn = c, .fd = -1, .sid = p->data_sid, .eof = true };
        r = s->handler.connect ? s->handler.connect(c->req.data, p->port, &fd, &error) : -EOPNOTSUPP;
        if (r < 0) {
                pair_error(c, p, error_is_set(&error) ? error_text(&error) : strerror(-r));
                error_done(&error);
                return;
        }
        p->wr.fd = fd;
        p->rd.eof = false;
        p->connecting = true;
        ev_io_init(&p->wr.io, pair_connected_cb, fd, EV_WRITE);
        ev_io_start(s->loop, &p->wr.io);
}

static void pair_free(StreamConn *c, PfPair *p) {
        pump_close(&p->rd);
        pump_close(&p->wr);
        free(p->request_id);
        free(p);
}

static int pf_syn_stream(StreamConn *c, uint32_t id, const SpdyHeader *h, size_t n) {
        const SpdyHeader *type = spdy_header_find(h, n, "streamtype"), *port = spdy_header_find(h, n, "port"),
                         *rid = spdy_header_find(h, n, "requestid");
        char pbuf[8];
        bool data;
        PfPair *p;
        long v;
        char *end;

        if (!type || !port || !rid || port->value_len == 0 || port->value_len >= sizeof pbuf)
                return spdy_session_submit_rst_stream(c->spdy, id, SPDY_RST_REFUSED_STREAM);
        if (type->value_len == 4 && memcmp(type->value, "data", 4) == 0)
                data = true;
        else if (type->value_len == 5 && memcmp(type->value, "error", 5) == 0)
                data = false;
        else
                return spdy_session_submit_rst_stream(c->spdy, id, SPDY_RST_REFUSED_STREAM);
        memcpy(pbuf, port->value, port->value_len);
        pbuf[port->value_len] = '\0';
        v = strtol(pbuf, &end, 10);
        if (*end || v <= 0 || v > 65535)
                return spdy_session_submit_rst_stream(c->spdy, id, SPDY_RST_REFUSED_STREAM);
        p = pair_find(c, rid->value, rid->value_len);
        if (!p) {
                p = calloc(1, sizeof *p);
                if (!p || !(p->request_id = strndup(rid->value, rid->value_len))) {
                        free(p);
                        return spdy_session_submit_rst_stream(c->spdy, id, SPDY_RST_INTERNAL_ERROR);
                }
                p->port = (uint16_t) v;
                p->rd.fd = p->wr.fd = -1;
                p->next = c->pairs;
                c->pairs = p;
        }
        if ((data ? p->data_sid : p->error_sid) != 0 || p->port != v)
                return spdy_session_submit_rst_stream(c->spdy, id, SPDY_RST_PROTOCOL_ERROR);
        if (data)
                p->data_sid = id;
        else
                p->error_sid = id;
        int r = spdy_session_submit_syn_reply(c->spdy, id, NULL, 0, false);
        if (r < 0)
                return r;
        ev_timer_stop(c->server->loop, &c->create_timer);
        pair_try_connect(c, p);
        return 0;
}

/* --- SPDY callbacks ------------------------------------------------------------------------------ */

static int on_syn_stream(SpdySession *s, uint32_t id, uint32_t assoc, uint8_t prio, const SpdyHeader *h, size_t n,
                         bool fin, bool unidirectional, void *userdata) {
        StreamConn *c = userdata;
        const SpdyHeader *type;
        Slot slot;
        int r;

        if (c->req.kind == STREAM_PORTFORWARD)
                return pf_syn_stream(c, id, h, n);
        type = spdy_header_find(h, n, "streamtype");
        slot = type ? slot_from_type(type->value, type->value_len) : _SLOT_MAX;
        if (slot == _SLOT_MAX || c->sid[slot] || c->started)
                return spdy_session_submit_rst_stream(s, id, SPDY_RST_REFUSED_STREAM);
        r = spdy_session_submit_syn_reply(s, id, NULL, 0, false);
        if (r < 0)
                return r;
        c->sid[slot] = id;
        if (count_open(c) >= c->n_expected)
                conn_start(c);
        return 0;
}

static int on_data(SpdySession *s, uint32_t id, const uint8_t *data, size_t len, bool fin, void *userdata) {
        StreamConn *c = userdata;

        if (c->req.kind == STREAM_PORTFORWARD) {
                PfPair *p = pair_by_sid(c, id);
                if (p && id == p->data_sid && !p->failed && p->wr.conn && p->connecting) {
                        /* Held until pair_connected_cb() writes it: a flush now would stop the
                         * connect watcher (the same ev_io) once the buffer is empty. */
                        if (len > 0 && buffer_append(&p->wr.buf, data, len) < 0)
                                return -ENOMEM;
                        p->wr.eof = p->wr.eof || fin;
                        return 0;
                }
                if (p && id == p->data_sid && !p->failed && p->wr.conn)
                        return writer_push(&p->wr, data, len, fin);
                return 0;
        }
        if (id == c->sid[SLOT_STDIN] && c->started)
                return writer_push(&c->in, data, len, fin);
        if (id == c->sid[SLOT_RESIZE])
                resize_push(c, data, len);
        return 0; /* the error stream, or streams the client writes to for nothing */
}

static void on_stream_close(SpdySession *s, uint32_t id, uint32_t status, void *userdata) {
        StreamConn *c = userdata;

        if (c->freeing)
                return;
        if (c->req.kind == STREAM_PORTFORWARD) {
                PfPair *p = pair_by_sid(c, id), **pp;
                if (!p)
                        return;
                if (p->data_sid == id)
                        p->data_sid = p->rd.sid = p->wr.sid = 0;
                if (p->error_sid == id)
                        p->error_sid = 0;
                if (p->data_sid || p->error_sid)
                        return;
                for (pp = &c->pairs; *pp != p; pp = &(*pp)->next)
                        ;
                *pp = p->next;
                pair_free(c, p);
                return;
        }
        for (Slot sl = 0; sl < _SLOT_MAX; sl++)
                if (c->sid[sl] == id) {
                        c->sid[sl] = 0;
                        if (sl == SLOT_STDIN && c->started && !c->in.eof)
                                (void) writer_push(&c->in, NULL, 0, true);
                        if (sl == SLOT_STDOUT)
                                c->out.sid = c->tty.sid = 0;
                        if (sl == SLOT_STDERR)
                                c->err.sid = 0;
                }
}

static const SpdyCallbacks spdy_callbacks = {
        .on_syn_stream = on_syn_stream,
        .on_data = on_data,
        .on_stream_close = on_stream_close,
};

/* --- WebSocket callbacks and set-up ----------------------------------------------------------------- */

static int ws_on_message(WsSession *s, uint8_t channel, const uint8_t *data, size_t len, void *userdata) {
        StreamConn *c = userdata;
        uint32_t id = (uint32_t) channel + 1;

        if (ws_session_close_sent(s))
                return 0; /* ending: what still comes is dropped */
        if (c->req.kind != STREAM_PORTFORWARD && id == c->sid[SLOT_RESIZE]) {
                /* One size a message, with or without client-go's newline: kubelet decodes a stream
                 * of JSON values. */
                resize_push(c, data, len);
                if (len == 0 || data[len - 1] != '\n')
                        resize_push(c, (const uint8_t *) "\n", 1);
                return 0;
        }
        return on_data(NULL, id, data, len, false, c); /* SPDY's, which never looks at its session */
}

static int ws_on_channel_close(WsSession *s, uint8_t channel, void *userdata) {
        StreamConn *c = userdata;

        /* v5: stdin half-closed, the command's standard input ends (the other channels are ours). */
        if (c->req.kind != STREAM_PORTFORWARD && c->sid[SLOT_STDIN] && channel + 1u == c->sid[SLOT_STDIN] &&
            c->started && !c->in.eof)
                return writer_push(&c->in, NULL, 0, true);
        return 0;
}

static const WsCallbacks ws_callbacks = {
        .on_message = ws_on_message,
        .on_channel_close = ws_on_channel_close,
};

/* Port-forward over a WebSocket ends when every port's connection in the pod has (kubelet closes
 * the WebSocket once all its forwarders returned). */
static void pf_ws_check_done(StreamConn *c) {
        if (!c->ws || c->closing)
                return;
        for (PfPair *p = c->pairs; p; p = p->next)
                if (!p->failed && !p->rd.eof)
                        return;
        (void) ws_session_submit_close(c->ws, 1000, NULL);
        c->closing = true;
}

/* Every channel is open at once: exec and attach start now, port-forward connects every port. */
static int conn_ws_open(StreamConn *c, const Pending *pd) {
        uint8_t le[2];

        ev_timer_stop(c->server->loop, &c->create_timer);
        if (c->req.kind == STREAM_PORTFORWARD) {
                PfPair **tail = &c->pairs;
                for (size_t i = 0; i < pd->n_ports; i++) {
                        PfPair *p = calloc(1, sizeof *p);
                        if (!p || asprintf(&p->request_id, "%zu", i) < 0) {
                                free(p);
                                return -ENOMEM;
                        }
                        p->port = pd->ports[i];
                        p->rd.fd = p->wr.fd = -1;
                        p->data_sid = (uint32_t) (2 * i + 1);
                        p->error_sid = (uint32_t) (2 * i + 2);
                        *tail = p;
                        tail = &p->next;
                }
                /* Each channel's first message is its port, two bytes little-endian. */
                for (PfPair *p = c->pairs; p; p = p->next) {
                        le[0] = (uint8_t) (p->port & 0xff);
                        le[1] = (uint8_t) (p->port >> 8);
                        if (conn_send(c, p->data_sid, le, 2, false) < 0 || conn_send(c, p->error_sid, le, 2, false) < 0)
                                return -ENOBUFS;
                }
                for (PfPair *p = c->pairs; p; p = p->next)
                        pair_try_connect(c, p);
                return 0;
        }
        /* kubelet's channels: stdin 0, stdout 1, stderr 2 as asked; error 3 and resize 4 always. */
        c->sid[SLOT_STDIN] = c->req.in ? 1 : 0;
        c->sid[SLOT_STDOUT] = c->req.out ? 2 : 0;
        c->sid[SLOT_STDERR] = c->req.err ? 3 : 0;
        c->sid[SLOT_ERROR] = 4;
        c->sid[SLOT_RESIZE] = 5;
        /* An empty message on the lowest channel we write to says the connection is up. */
        if (conn_send(c, c->sid[SLOT_STDOUT] ?: c->sid[SLOT_STDERR] ?: c->sid[SLOT_ERROR], NULL, 0, false) < 0)
                return -ENOBUFS;
        conn_start(c);
        return 0;
}

/* --- the upgraded connection --------------------------------------------------------------------- */

static void conn_free(StreamConn *c) {
        StreamServer *s = c->server;

        c->freeing = true;
        if (c->started && !c->exited && s->handler.stop)
                s->handler.stop(c, c->req.data);
        ev_io_stop(s->loop, &c->rd);
        ev_io_stop(s->loop, &c->wr);
        ev_timer_stop(s->loop, &c->create_timer);
        ev_timer_stop(s->loop, &c->idle_timer);
        ev_timer_stop(s->loop, &c->stdin_timer);
        pump_close(&c->in);
        pump_close(&c->out);
        pump_close(&c->err);
        pump_close(&c->tty);
        while (c->pairs) {
                PfPair *p = c->pairs;
                c->pairs = p->next;
                pair_free(c, p);
        }
        buffer_free(&c->resize);
        spdy_session_free(c->spdy);
        ws_session_free(c->ws);
        if (c->urh)
                (void) MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE); /* closes the socket */
        request_done(s, &c->req);
        free(c->exit_message);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        free(c);
        server_run(s);
}

/* A closing connection has this long to drain what is queued for its client, again after each write
 * the client took: one that writes but never reads must not hold it (and a connection slot) for the
 * idle timeout, and one that reads slowly (as through TLS) still gets all of it. */
#define CLOSING_DRAIN_USEC (10 * USEC_PER_SEC)

static void conn_touch(StreamConn *c) {
        if (c->closing)
                return; /* traffic no longer keeps it: the drain deadline stands */
        if (c->server->config.idle_timeout_usec > 0)
                ev_timer_again(c->server->loop, &c->idle_timer);
}

/* Output went out: while closing, the drain deadline starts again. */
static void conn_progress(StreamConn *c) {
        if (!c->closing) {
                conn_touch(c);
                return;
        }
        if (c->drain_armed) {
                ev_timer_stop(c->server->loop, &c->idle_timer);
                ev_timer_set(&c->idle_timer, (double) CLOSING_DRAIN_USEC / USEC_PER_SEC, 0.);
                ev_timer_start(c->server->loop, &c->idle_timer);
        }
}

static void conn_arm_drain(StreamConn *c) {
        if (!c->closing || c->drain_armed)
                return;
        c->drain_armed = true;
        ev_timer_stop(c->server->loop, &c->idle_timer);
        ev_timer_set(&c->idle_timer, (double) CLOSING_DRAIN_USEC / USEC_PER_SEC, 0.);
        ev_timer_start(c->server->loop, &c->idle_timer);
}

/* Writes what the session has queued, re-arms the watchers, resumes readers, closes when done. */
static void conn_update(StreamConn *c) {
        StreamServer *s = c->server;
        const uint8_t *out;
        size_t n;

        if (c->freeing || c->in_recv)
                return;
        conn_arm_drain(c);
        while ((n = conn_peek_output(c, &out)) > 0) {
                ssize_t w = send(c->fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN)
                        break;
                if (w < 0) {
                        conn_fail(c);
                        return;
                }
                conn_consume_output(c, (size_t) w);
                conn_progress(c);
        }
        if (conn_queued(c) > 0)
                ev_io_start(s->loop, &c->wr);
        else
                ev_io_stop(s->loop, &c->wr);
        if (conn_queued(c) < OUTPUT_LOW) {
                Pump *readers[] = { &c->out, &c->err, &c->tty };
                for (size_t i = 0; i < ELEMENTSOF(readers); i++)
                        if (readers[i]->paused && readers[i]->fd >= 0) {
                                readers[i]->paused = false;
                                ev_io_start(s->loop, &readers[i]->io);
                        }
                for (PfPair *p = c->pairs; p; p = p->next)
                        if (p->rd.paused && p->rd.fd >= 0) {
                                p->rd.paused = false;
                                ev_io_start(s->loop, &p->rd.io);
                        }
        }
        if ((c->closing || !conn_want_read(c)) && conn_queued(c) == 0) {
                if (c->ws && conn_want_read(c) && ws_session_close_sent(c->ws)) {
                        /* Our close frame is out: the peer answers with its own once it has read
                         * everything before it; closing the socket first could reset what it has
                         * not read yet. Not for long, though. */
                        if (!c->lingering) {
                                c->lingering = true;
                                ev_timer_stop(s->loop, &c->create_timer);
                                ev_timer_set(&c->create_timer, (double) WS_LINGER_USEC / USEC_PER_SEC, 0.);
                                ev_timer_start(s->loop, &c->create_timer);
                                ev_io_start(s->loop, &c->rd);
                        }
                        return;
                }
                conn_free(c);
        }
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
        StreamConn *c = container_of(w, StreamConn, rd);
        uint8_t buf[READ_SIZE];
        ssize_t n;
        int r;

        if (conn_writers_blocked(c)) {
                ev_io_stop(loop, w);
                return;
        }
        n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                conn_fail(c);
                return;
        }
        conn_touch(c);
        r = conn_recv(c, buf, (size_t) n);
        if (r < 0) {
                log_debug_errno(r, "streaming: %s connection: %s: %m", stream_kind_to_string(c->req.kind),
                                c->ws ? "WebSocket" : "SPDY");
                c->closing = true;
                ev_io_stop(loop, w);
        } else if (conn_writers_blocked(c))
                ev_io_stop(loop, w);
        conn_update(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
        conn_update(container_of(w, StreamConn, wr));
}

static void conn_create_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        StreamConn *c = container_of(w, StreamConn, create_timer);
        if (c->lingering)
                log_debug("streaming: %s connection: no close frame from the client; closing.",
                          stream_kind_to_string(c->req.kind));
        else
                log_debug("streaming: %s connection: the client did not open its streams in time; closing.",
                          stream_kind_to_string(c->req.kind));
        conn_fail(c);
}

static void conn_idle_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        StreamConn *c = container_of(w, StreamConn, idle_timer);
        log_debug("streaming: %s connection idle too long; closing.", stream_kind_to_string(c->req.kind));
        conn_fail(c);
}

static void upgrade_cb(void *cls, struct MHD_Connection *connection, void *con_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
        Pending *pd = cls;
        StreamServer *s = pd->server;
        SpdyLimits limits = { .max_streams = 64 };
        StreamConn *c;
        int r;

        c = calloc(1, sizeof *c);
        if (!c) {
                (void) MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
                return;
        }
        c->server = s;
        c->req = pd->req;
        pd->have_req = false; /* ours now */
        c->version = pd->version;
        c->urh = urh;
        c->fd = sock;
        c->in.fd = c->out.fd = c->err.fd = c->tty.fd = -1;
        c->n_expected = 1 + c->req.in + c->req.out + c->req.err + (c->req.tty && c->version >= 3);
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        (void) fd_nonblock(sock, true);
        ev_io_init(&c->rd, conn_read_cb, sock, EV_READ);
        ev_io_init(&c->wr, conn_write_cb, sock, EV_WRITE);
        ev_timer_init(&c->create_timer, conn_create_timeout_cb, (double) s->config.creation_timeout_usec / USEC_PER_SEC,
                      0.);
        ev_timer_init(&c->idle_timer, conn_idle_timeout_cb, 0., (double) s->config.idle_timeout_usec / USEC_PER_SEC);
        ev_timer_init(&c->stdin_timer, conn_stdin_closed_cb, 0., 0.);
        if (pd->ws)
                r = ws_session_new(&c->ws, pd->ws, &ws_callbacks, 0, 0, c);
        else
                r = spdy_session_new(&c->spdy, true, &spdy_callbacks, &limits, c);
        if (r < 0) {
                conn_free(c);
                return;
        }
        ev_io_start(s->loop, &c->rd);
        if (s->config.creation_timeout_usec > 0)
                ev_timer_start(s->loop, &c->create_timer);
        conn_touch(c);
        if (c->ws) {
                c->in_recv = true; /* what start() does must not free c under us */
                r = conn_ws_open(c, pd);
                c->in_recv = false;
                if (r < 0) {
                        conn_free(c);
                        return;
                }
        }
        if (extra_in_size > 0 && !c->closing) {
                r = conn_recv(c, (const uint8_t *) extra_in, extra_in_size);
                if (r < 0)
                        c->closing = true;
        }
        conn_update(c);
}

/* --- HTTP ---------------------------------------------------------------------------------------- */

static const char *const exec_protocols[] = { "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                                              "channel.k8s.io" };
static const char *const pf_protocols[] = { "portforward.k8s.io" };

typedef struct Negotiation {
        const char *const *server;
        size_t n_server;
        size_t best; /* index into server; n_server: none */
        bool offered;
        bool upgrade_spdy;
        /* WebSocket (RFC 6455 section 4.2.1) */
        bool upgrade_ws, connection_upgrade;
        const char *ws_key, *ws_version;
        char ws_protocols[1024]; /* every Sec-WebSocket-Protocol, comma-separated */
        bool ws_protocols_truncated;
} Negotiation;

static enum MHD_Result header_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        Negotiation *ng = cls;

        if (!value)
                return MHD_YES;
        if (strcasecmp(key, "X-Stream-Protocol-Version") == 0) {
                for (const char *p = value; *p;) {
                        size_t n;
                        p += strspn(p, " \t,");
                        n = strcspn(p, " \t,");
                        if (n == 0)
                                break;
                        ng->offered = true;
                        for (size_t i = 0; i < ng->n_server && i < ng->best; i++)
                                if (strlen(ng->server[i]) == n && strncasecmp(ng->server[i], p, n) == 0)
                                        ng->best = i;
                        p += n;
                }
        } else if (strcasecmp(key, MHD_HTTP_HEADER_UPGRADE) == 0 && strcasestr(value, "spdy/3.1"))
                ng->upgrade_spdy = true;
        else if (strcasecmp(key, MHD_HTTP_HEADER_UPGRADE) == 0 && strcasestr(value, "websocket"))
                ng->upgrade_ws = true;
        else if (strcasecmp(key, MHD_HTTP_HEADER_CONNECTION) == 0 && strcasestr(value, "upgrade"))
                ng->connection_upgrade = true;
        else if (strcasecmp(key, "Sec-WebSocket-Key") == 0)
                ng->ws_key = value;
        else if (strcasecmp(key, "Sec-WebSocket-Version") == 0)
                ng->ws_version = value;
        else if (strcasecmp(key, "Sec-WebSocket-Protocol") == 0) {
                size_t used = strlen(ng->ws_protocols);
                int n = snprintf(ng->ws_protocols + used, sizeof ng->ws_protocols - used, "%s%s", used ? "," : "",
                                 value);
                if (n < 0 || (size_t) n >= sizeof ng->ws_protocols - used)
                        ng->ws_protocols_truncated = true;
        }
        return MHD_YES;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text, bool close,
                                  const char *const *accepted, size_t n_accepted) {
        struct MHD_Response *resp;
        enum MHD_Result r;

        resp = MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
        for (size_t i = 0; i < n_accepted; i++)
                (void) MHD_add_response_header(resp, "X-Accepted-Stream-Protocol-Versions", accepted[i]);
        if (close)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

/* kubelet's NewV4Options: every ?port=, each a comma-separated list of ports 1–65535. */
static enum MHD_Result port_arg_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        Pending *pd = cls;

        if (strcmp(key, "port") != 0)
                return MHD_YES;
        if (!value || !value[0])
                goto bad;
        for (const char *p = value;;) {
                size_t n = strcspn(p, ",");
                unsigned long v = 0;
                if (n == 0 || n > 5 || strspn(p, "0123456789") < n)
                        goto bad;
                for (size_t i = 0; i < n; i++)
                        v = v * 10 + (unsigned long) (p[i] - '0');
                if (v < 1 || v > 65535 || pd->n_ports >= WS_MAX_PORTS)
                        goto bad;
                pd->ports[pd->n_ports++] = (uint16_t) v;
                if (!p[n])
                        break;
                p += n + 1;
        }
        return MHD_YES;
bad:
        pd->n_ports = SIZE_MAX;
        return MHD_NO;
}

static enum MHD_Result reply_ws_error(StreamServer *s, Pending *pd, struct MHD_Connection *conn, unsigned status,
                                      const char *text) {
        request_done(s, &pd->req); /* the token was used */
        pd->have_req = false;
        if (status == MHD_HTTP_BAD_REQUEST && strstr(text, "Sec-WebSocket-Version")) {
                struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), (void *) text,
                                                                            MHD_RESPMEM_MUST_COPY);
                enum MHD_Result r;
                if (!resp)
                        return MHD_NO;
                (void) MHD_add_response_header(resp, "Sec-WebSocket-Version", "13");
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
                r = MHD_queue_response(conn, status, resp);
                MHD_destroy_response(resp);
                return r;
        }
        return reply_text(conn, status, text, true, NULL, 0);
}

/* The WebSocket handshake, as golang.org/x/net/websocket and kubelet's wsstream answer it. */
static enum MHD_Result access_ws(StreamServer *s, Pending *pd, struct MHD_Connection *conn, const char *method,
                                 const Negotiation *ng) {
        bool pf = pd->req.kind == STREAM_PORTFORWARD;
        char accept[WS_ACCEPT_LEN + 1], key[128];
        struct MHD_Response *resp;
        enum MHD_Result r;
        size_t n;

        if (strcmp(method, "GET") != 0)
                return reply_ws_error(s, pd, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "websocket: GET only\n");
        if (!ng->connection_upgrade)
                return reply_ws_error(s, pd, conn, MHD_HTTP_BAD_REQUEST, "websocket: Connection: Upgrade is missing\n");
        if (!ng->ws_version || strcmp(ng->ws_version, "13") != 0)
                return reply_ws_error(s, pd, conn, MHD_HTTP_BAD_REQUEST,
                                      "websocket: Sec-WebSocket-Version 13 is the only one supported\n");
        n = ng->ws_key ? strlen(ng->ws_key) : 0;
        while (n > 0 && (ng->ws_key[n - 1] == ' ' || ng->ws_key[n - 1] == '\t'))
                n--;
        if (n == 0 || n >= sizeof key)
                return reply_ws_error(s, pd, conn, MHD_HTTP_BAD_REQUEST, "websocket: bad Sec-WebSocket-Key\n");
        memcpy(key, ng->ws_key, n);
        key[n] = '\0';
        pd->ws = ng->ws_protocols_truncated ? NULL : ws_negotiate(ng->ws_protocols, pf);
        if (!pd->ws)
                return reply_ws_error(s, pd, conn, MHD_HTTP_FORBIDDEN,
                                      "unable to upgrade: requested protocol(s) are not supported\n");
        if (pf) {
                pd->n_ports = 0;
                (void) MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, port_arg_cb, pd);
                if (pd->n_ports == SIZE_MAX)
                        return reply_ws_error(s, pd, conn, MHD_HTTP_BAD_REQUEST,
                                              "query parameter \"port\": each must be a port between 1 and 65535\n");
                if (pd->n_ports == 0)
                        return reply_ws_error(s, pd, conn, MHD_HTTP_BAD_REQUEST,
                                              "query parameter \"port\" is required\n");
        }
        if (ws_accept_key(key, accept) < 0)
                return MHD_NO;
        pd->version = pd->ws->version;

        resp = MHD_create_response_for_upgrade(upgrade_cb, pd);
        if (!resp)
                return MHD_NO;
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
        (void) MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
        if (pd->ws->name[0])
                (void) MHD_add_response_header(resp, "Sec-WebSocket-Protocol", pd->ws->name);
        r = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        StreamServer *s = cls;
        Pending *pd = *con_cls;
        StreamKind kind = _STREAM_KIND_INVALID;
        const char *token = NULL;
        struct MHD_Response *resp;
        enum MHD_Result r;

        if (!pd) {
                /* The first call, with the headers: the token is taken now, whatever follows. */
                pd = calloc(1, sizeof *pd);
                if (!pd)
                        return MHD_NO;
                pd->server = s;
                *con_cls = pd;
                for (StreamKind k = 0; k < _STREAM_KIND_MAX; k++) {
                        size_t n = strlen(kind_names[k]);
                        if (url[0] == '/' && strncmp(url + 1, kind_names[k], n) == 0 && url[1 + n] == '/') {
                                kind = k;
                                token = url + 2 + n;
                        }
                }
                if (token && (strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0) &&
                    token_take(s, kind, token, &pd->req))
                        pd->have_req = true;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                *upload_data_size = 0; /* a body: ignored */
                return MHD_YES;
        }
        if (!pd->have_req)
                return reply_text(conn, MHD_HTTP_NOT_FOUND, "404 page not found\n", true, NULL, 0);

        Negotiation ng = {};
        if (pd->req.kind == STREAM_PORTFORWARD) {
                ng.server = pf_protocols;
                ng.n_server = ELEMENTSOF(pf_protocols);
        } else {
                ng.server = exec_protocols;
                ng.n_server = ELEMENTSOF(exec_protocols);
        }
        ng.best = ng.n_server;
        (void) MHD_get_connection_values(conn, MHD_HEADER_KIND, header_cb, &ng);
        if (ng.upgrade_ws)
                return access_ws(s, pd, conn, method, &ng);
        if (!ng.upgrade_spdy) {
                request_done(s, &pd->req);
                pd->have_req = false;
                return reply_text(conn, MHD_HTTP_BAD_REQUEST,
                                  "unable to upgrade: this server speaks SPDY/3.1 only (Upgrade: SPDY/3.1)\n", true, NULL,
                                  0);
        }
        if (ng.best == ng.n_server) {
                request_done(s, &pd->req);
                pd->have_req = false;
                return reply_text(conn, MHD_HTTP_FORBIDDEN,
                                  ng.offered ? "unable to upgrade: unable to negotiate protocol\n"
                                             : "unable to upgrade: X-Stream-Protocol-Version is required\n",
                                  true, ng.server, ng.n_server);
        }
        pd->version = pd->req.kind == STREAM_PORTFORWARD ? 0 : (int) (ng.n_server - ng.best);

        resp = MHD_create_response_for_upgrade(upgrade_cb, pd);
        if (!resp)
                return MHD_NO;
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "SPDY/3.1");
        (void) MHD_add_response_header(resp, "X-Stream-Protocol-Version", ng.server[ng.best]);
        r = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
        MHD_destroy_response(resp);
        return r;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        StreamServer *s = cls;
        Pending *pd = *con_cls;

        if (!pd)
                return;
        if (pd->have_req)
                request_done(s, &pd->req);
        free(pd);
        *con_cls = NULL;
}

_printf_(2, 0) static void mhd_logger(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        vsnprintf(buf, sizeof buf, fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        log_debug("streaming: libmicrohttpd: %s", buf);
}

/* --- the loop ------------------------------------------------------------------------------------ */

static void server_run(StreamServer *s) {
        MHD_UNSIGNED_LONG_LONG ms;

        if (s->in_mhd || !s->mhd)
                return;
        s->in_mhd = true;
        (void) MHD_run(s->mhd);
        s->in_mhd = false;
        ev_timer_stop(s->loop, &s->mhd_timer);
        if (MHD_get_timeout(s->mhd, &ms) == MHD_YES) {
                ev_timer_set(&s->mhd_timer, (double) ms / 1000., 0.);
                ev_timer_start(s->loop, &s->mhd_timer);
        }
}

static void mhd_io_cb(struct ev_loop *loop, ev_io *w, int revents) {
        server_run(container_of(w, StreamServer, mhd_io));
}

static void mhd_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        server_run(container_of(w, StreamServer, mhd_timer));
}

static int listen_on(const char *address, uint16_t port, const char *scheme, int *ret_fd, char *url, size_t url_size) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa = {};
        socklen_t len;
        char host[INET6_ADDRSTRLEN];
        int fd, one = 1;

        if (inet_pton(AF_INET, address, &sa.in.sin_addr) == 1) {
                sa.in.sin_family = AF_INET;
                sa.in.sin_port = htons(port);
                len = sizeof sa.in;
        } else if (inet_pton(AF_INET6, address, &sa.in6.sin6_addr) == 1) {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons(port);
                len = sizeof sa.in6;
        } else
                return -EINVAL;
        fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (sa.sa.sa_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, &sa.sa, len) < 0 || listen(fd, 128) < 0 || getsockname(fd, &sa.sa, &len) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (sa.sa.sa_family == AF_INET) {
                inet_ntop(AF_INET, &sa.in.sin_addr, host, sizeof host);
                snprintf(url, url_size, "%s://%s:%u", scheme, host, (unsigned) ntohs(sa.in.sin_port));
        } else {
                inet_ntop(AF_INET6, &sa.in6.sin6_addr, host, sizeof host);
                snprintf(url, url_size, "%s://[%s]:%u", scheme, host, (unsigned) ntohs(sa.in6.sin6_port));
        }
        *ret_fd = fd;
        return 0;
}

int stream_server_new(struct ev_loop *loop, const StreamServerConfig *config, const StreamHandler *handler,
                      StreamServer **ret) {
        StreamServer *s;
        const union MHD_DaemonInfo *info;
        unsigned timeout_sec;
        bool tls;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->loop = loop;
        s->config = *config;
        s->config.address = NULL;
        s->handler = *handler;
        s->listen_fd = -1;
        s->tokens = calloc(MAX_PENDING, sizeof *s->tokens);
        if (!s->tokens) {
                free(s);
                return -ENOMEM;
        }
        tls = config->tls_cert_pem && config->tls_key_pem;
        s->config.tls_cert_pem = s->config.tls_key_pem = NULL; /* read at the start: GnuTLS keeps its copy */
        r = listen_on(config->address, config->port, tls ? "https" : "http", &s->listen_fd, s->base_url,
                      sizeof s->base_url);
        if (r < 0) {
                stream_server_free(s);
                return r;
        }
        /* MHD counts whole seconds; a request line and headers must come within the creation timeout. */
        timeout_sec = (unsigned) MAX((config->creation_timeout_usec + USEC_PER_SEC - 1) / USEC_PER_SEC, 1ULL);
        /* With TLS, MHD hands the upgrade a socketpair and moves the bytes between it and the TLS
         * session itself, in MHD_run(): the connection code below is the same either way. */
        struct MHD_OptionItem tls_options[] = {
                { MHD_OPTION_HTTPS_MEM_CERT, 0, (void *) config->tls_cert_pem },
                { MHD_OPTION_HTTPS_MEM_KEY, 0, (void *) config->tls_key_pem },
                { MHD_OPTION_END, 0, NULL },
        };
        s->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0), 0,
                                  NULL, NULL, access_cb, s,
                                  /* first, so that MHD's own messages about the others come here */
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
                                  MHD_OPTION_ARRAY, tls ? tls_options : tls_options + 2,
                                  MHD_OPTION_LISTEN_SOCKET, (MHD_socket) s->listen_fd,
                                  MHD_OPTION_CONNECTION_LIMIT, (unsigned) config->max_connections,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) config->max_header_size,
                                  MHD_OPTION_CONNECTION_TIMEOUT, timeout_sec,
                                  MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
                                  MHD_OPTION_END);
        if (!s->mhd) {
                stream_server_free(s);
                return -EIO;
        }
        s->listen_fd = -1; /* MHD's now: MHD_stop_daemon() closes it */
        info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info || info->epoll_fd < 0) {
                stream_server_free(s);
                return -EIO;
        }
        ev_io_init(&s->mhd_io, mhd_io_cb, info->epoll_fd, EV_READ);
        ev_io_start(loop, &s->mhd_io);
        ev_timer_init(&s->mhd_timer, mhd_timer_cb, 0., 0.);
        server_run(s);
        *ret = s;
        return 0;
}

StreamServer *stream_server_free(StreamServer *s) {
        if (!s)
                return NULL;
        while (s->conns)
                conn_free(s->conns);
        ev_io_stop(s->loop, &s->mhd_io);
        ev_timer_stop(s->loop, &s->mhd_timer);
        if (s->mhd) {
                struct MHD_Daemon *d = s->mhd;
                s->mhd = NULL;
                MHD_stop_daemon(d); /* frees the pending requests through completed_cb */
        }
        for (size_t i = 0; i < s->n_tokens; i++)
                request_done(s, &s->tokens[i].req);
        free(s->tokens);
        safe_close(s->listen_fd);
        free(s);
        return NULL;
}

const char *stream_server_base_url(const StreamServer *s) {
        return s->base_url;
}

unsigned stream_server_n_connections(const StreamServer *s) {
        return s->n_conns;
}
