/* Unit tests of src/stream/spdy.c: every frame type through a client and a server session, any
 * split of the input, header compression across many frames, and hostile input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "spdy.h"

/* --- a recording peer --------------------------------------------------------------------------- */

typedef struct Peer {
        SpdySession *s;
        char log[65536];
        size_t log_len;
        uint8_t data[1 << 21];
        size_t data_len;
        bool echo_syn; /* answer SYN_STREAM with SYN_REPLY */
} Peer;

__attribute__((format(printf, 2, 3))) static void logf_(Peer *p, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(p->log + p->log_len, sizeof p->log - p->log_len, fmt, ap);
        va_end(ap);
        assert_true(n >= 0 && (size_t) n < sizeof p->log - p->log_len);
        p->log_len += (size_t) n;
}

static void log_headers(Peer *p, const SpdyHeader *h, size_t n) {
        for (size_t i = 0; i < n; i++) {
                logf_(p, " %.*s=", (int) h[i].name_len, h[i].name);
                for (size_t k = 0; k < h[i].value_len; k++)
                        logf_(p, "%c", h[i].value[k] ? h[i].value[k] : '|');
        }
        logf_(p, "\n");
}

static int cb_syn_stream(SpdySession *s, uint32_t id, uint32_t assoc, uint8_t prio, const SpdyHeader *h, size_t n,
                         bool fin, bool uni, void *userdata) {
        Peer *p = userdata;
        logf_(p, "syn_stream %u assoc=%u prio=%u fin=%d uni=%d", id, assoc, prio, fin, uni);
        log_headers(p, h, n);
        if (p->echo_syn)
                return spdy_session_submit_syn_reply(s, id, h, n, false);
        return 0;
}

static int cb_syn_reply(SpdySession *s, uint32_t id, const SpdyHeader *h, size_t n, bool fin, void *userdata) {
        Peer *p = userdata;
        logf_(p, "syn_reply %u fin=%d", id, fin);
        log_headers(p, h, n);
        return 0;
}

static int cb_headers(SpdySession *s, uint32_t id, const SpdyHeader *h, size_t n, bool fin, void *userdata) {
        Peer *p = userdata;
        logf_(p, "headers %u fin=%d", id, fin);
        log_headers(p, h, n);
        return 0;
}

static int cb_data(SpdySession *s, uint32_t id, const uint8_t *d, size_t len, bool fin, void *userdata) {
        Peer *p = userdata;
        assert_true(p->data_len + len <= sizeof p->data);
        if (len > 0)
                memcpy(p->data + p->data_len, d, len);
        p->data_len += len;
        if (fin)
                logf_(p, "data-fin %u total=%zu\n", id, p->data_len);
        return 0;
}

static int cb_rst(SpdySession *s, uint32_t id, uint32_t status, void *userdata) {
        logf_(userdata, "rst %u %s\n", id, spdy_rst_status_to_string(status));
        return 0;
}

static int cb_ping(SpdySession *s, uint32_t id, bool reply, void *userdata) {
        logf_(userdata, "ping %u reply=%d\n", id, reply);
        return 0;
}

static int cb_goaway(SpdySession *s, uint32_t last, uint32_t status, void *userdata) {
        logf_(userdata, "goaway last=%u status=%u\n", last, status);
        return 0;
}

static int cb_window(SpdySession *s, uint32_t id, uint32_t delta, void *userdata) {
        logf_(userdata, "window %u +%u\n", id, delta);
        return 0;
}

static int cb_settings(SpdySession *s, const SpdySetting *set, size_t n, bool clear, void *userdata) {
        logf_(userdata, "settings clear=%d", clear);
        for (size_t i = 0; i < n; i++)
                logf_(userdata, " %u:%u/%u", set[i].id, set[i].value, set[i].flags);
        logf_(userdata, "\n");
        return 0;
}

static void cb_close(SpdySession *s, uint32_t id, uint32_t status, void *userdata) {
        logf_(userdata, "close %u %u\n", id, status);
}

static const SpdyCallbacks callbacks = {
        .on_syn_stream = cb_syn_stream,
        .on_syn_reply = cb_syn_reply,
        .on_headers = cb_headers,
        .on_data = cb_data,
        .on_rst_stream = cb_rst,
        .on_ping = cb_ping,
        .on_goaway = cb_goaway,
        .on_window_update = cb_window,
        .on_settings = cb_settings,
        .on_stream_close = cb_close,
};

static Peer *peer_new(bool server, const SpdyLimits *limits) {
        Peer *p = calloc(1, sizeof *p);
        assert_non_null(p);
        assert_int_equal(spdy_session_new(&p->s, server, &callbacks, limits, p), 0);
        return p;
}

static void peer_free(Peer *p) {
        spdy_session_free(p->s);
        free(p);
}

static void peer_clear(Peer *p) {
        p->log_len = 0;
        p->log[0] = '\0';
        p->data_len = 0;
}

/* Moves everything from's session queued into to's, step bytes at a time (0: all at once). */
static int pump(Peer *from, Peer *to, size_t step) {
        const uint8_t *out;
        size_t n;
        int r = 0;

        while ((n = spdy_session_peek_output(from->s, &out)) > 0) {
                size_t k = step == 0 || step > n ? n : step;
                uint8_t chunk[k];
                memcpy(chunk, out, k); /* the queue may move while to's callbacks submit */
                spdy_session_consume_output(from->s, k);
                r = spdy_session_recv(to->s, chunk, k);
                if (r < 0)
                        return r;
        }
        return r;
}

#define H(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

/* --- round trips -------------------------------------------------------------------------------- */

static void roundtrip(size_t step) {
        Peer *c = peer_new(false, NULL), *srv = peer_new(true, NULL);
        const SpdyHeader req[] = { H("streamtype", "stdin"), H("x-multi", "one\0two"), H("empty", "") };
        const SpdyHeader rep[] = { H("x-reply", "yes") };
        const SpdySetting set[] = { { 0, SPDY_SETTINGS_MAX_CONCURRENT_STREAMS, 100 },
                                    { 1, SPDY_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20 } };
        static uint8_t big[300000];
        uint32_t id, id2, sid, ping;

        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (uint8_t) (i * 7 + i / 251);

        /* SYN_STREAM client -> server, with FIN on a second one. */
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 3, req, 3, 0, &id), 0);
        assert_int_equal(id, 1);
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 1, 7, rep, 1, SPDY_FLAG_FIN, &id2), 0);
        assert_int_equal(id2, 3);
        assert_int_equal(pump(c, srv, step), 0);
        assert_string_equal(srv->log, "syn_stream 1 assoc=0 prio=3 fin=0 uni=0 streamtype=stdin x-multi=one|two empty=\n"
                                      "syn_stream 3 assoc=1 prio=7 fin=1 uni=0 x-reply=yes\n");
        peer_clear(srv);

        /* SYN_REPLY, HEADERS, DATA back; the reply with FIN closes stream 3 on both sides. */
        assert_int_equal(spdy_session_submit_syn_reply(srv->s, 1, rep, 1, false), 0);
        assert_int_equal(spdy_session_submit_headers(srv->s, 1, req, 1, false), 0);
        assert_int_equal(spdy_session_submit_data(srv->s, 1, "hello", 5, false), 0);
        assert_int_equal(spdy_session_submit_syn_reply(srv->s, 3, NULL, 0, true), 0);
        assert_string_equal(srv->log, "close 3 0\n");
        assert_int_equal(pump(srv, c, step), 0);
        assert_string_equal(c->log, "syn_reply 1 fin=0 x-reply=yes\nheaders 1 fin=0 streamtype=stdin\n"
                                    "syn_reply 3 fin=1\nclose 3 0\n");
        assert_int_equal(c->data_len, 5);
        assert_memory_equal(c->data, "hello", 5);
        peer_clear(c);
        peer_clear(srv);

        /* Big DATA with FIN client -> server, then FIN back: the stream closes on both sides. */
        assert_int_equal(spdy_session_submit_data(c->s, 1, big, sizeof big, true), 0);
        assert_int_equal(spdy_session_submit_data(c->s, 1, "x", 1, false), -EPIPE);
        assert_int_equal(pump(c, srv, step), 0);
        assert_string_equal(srv->log, "data-fin 1 total=300000\n");
        assert_memory_equal(srv->data, big, sizeof big);
        assert_int_equal(spdy_session_submit_data(srv->s, 1, NULL, 0, true), 0);
        assert_int_equal(pump(srv, c, step), 0);
        assert_string_equal(c->log, "data-fin 1 total=0\nclose 1 0\n");
        assert_int_equal(spdy_session_n_streams(c->s), 0);
        assert_int_equal(spdy_session_n_streams(srv->s), 0);
        peer_clear(c);
        peer_clear(srv);

        /* A server stream, reset by the client. */
        assert_int_equal(spdy_session_submit_syn_stream(srv->s, 0, 0, rep, 1, 0, &sid), 0);
        assert_int_equal(sid, 2);
        assert_int_equal(pump(srv, c, step), 0);
        assert_int_equal(spdy_session_submit_rst_stream(c->s, sid, SPDY_RST_CANCEL), 0);
        assert_int_equal(pump(c, srv, step), 0);
        assert_string_equal(c->log, "syn_stream 2 assoc=0 prio=0 fin=0 uni=0 x-reply=yes\nclose 2 5\n");
        assert_string_equal(srv->log, "rst 2 CANCEL\nclose 2 5\n");
        peer_clear(c);
        peer_clear(srv);

        /* PING both ways: answered by the session itself. */
        assert_int_equal(spdy_session_submit_ping(c->s, &ping), 0);
        assert_int_equal(ping, 1);
        assert_int_equal(pump(c, srv, step), 0);
        assert_int_equal(pump(srv, c, step), 0);
        assert_int_equal(spdy_session_submit_ping(srv->s, &ping), 0);
        assert_int_equal(ping, 2);
        assert_int_equal(pump(srv, c, step), 0);
        assert_int_equal(pump(c, srv, step), 0);
        assert_string_equal(srv->log, "ping 1 reply=0\nping 2 reply=1\n");
        assert_string_equal(c->log, "ping 1 reply=1\nping 2 reply=0\n");
        peer_clear(c);
        peer_clear(srv);

        /* WINDOW_UPDATE (stream and session), SETTINGS, GOAWAY. */
        assert_int_equal(spdy_session_submit_window_update(c->s, 0, 65536), 0);
        assert_int_equal(spdy_session_submit_window_update(c->s, 5, 1), 0);
        assert_int_equal(spdy_session_submit_settings(c->s, SPDY_FLAG_SETTINGS_CLEAR, set, 2), 0);
        assert_int_equal(spdy_session_submit_settings(c->s, 0, NULL, 0), 0);
        assert_int_equal(spdy_session_submit_goaway(c->s, SPDY_GOAWAY_OK), 0);
        assert_int_equal(pump(c, srv, step), 0);
        assert_string_equal(srv->log, "window 0 +65536\nwindow 5 +1\nsettings clear=1 4:100/0 7:1048576/1\n"
                                      "settings clear=0\ngoaway last=2 status=0\n");
        assert_false(spdy_session_want_read(srv->s));
        assert_int_equal(spdy_session_submit_syn_stream(srv->s, 0, 0, NULL, 0, 0, NULL), -ESHUTDOWN);
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, NULL, 0, 0, NULL), -ESHUTDOWN);

        peer_free(c);
        peer_free(srv);
}

static void test_roundtrip(void **state) {
        roundtrip(0);
}

static void test_roundtrip_byte_at_a_time(void **state) {
        roundtrip(1);
}

static void test_roundtrip_odd_splits(void **state) {
        roundtrip(7);
        roundtrip(4097);
}

static void test_header_compression_many_frames(void **state) {
        Peer *c = peer_new(false, NULL), *srv = peer_new(true, NULL);
        size_t wire = 0, raw = 0;
        char want[512];

        srv->echo_syn = true;
        for (unsigned i = 0; i < 2000; i++) {
                char port[16], rid[16];
                int pl = snprintf(port, sizeof port, "%u", 8000 + i % 50), rl = snprintf(rid, sizeof rid, "%u", i);
                const SpdyHeader h[] = {
                        H("streamtype", "data"),
                        { "port", 4, port, (size_t) pl },
                        { "requestid", 9, rid, (size_t) rl },
                        H("x-stream-protocol-version", "portforward.k8s.io"),
                };
                const uint8_t *out;
                uint32_t id;

                assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, h, 4, SPDY_FLAG_FIN, &id), 0);
                assert_int_equal(id, 2 * i + 1);
                raw += 18 + 4 + 8 * 4 + 10 + 4 + 9 + 25 + 18 + 4 + (size_t) pl + (size_t) rl;
                wire += spdy_session_peek_output(c->s, &out);
                peer_clear(srv);
                peer_clear(c);
                assert_int_equal(pump(c, srv, i % 3 == 0 ? 1 : 0), 0);
                snprintf(want, sizeof want,
                         "syn_stream %u assoc=0 prio=0 fin=1 uni=0 streamtype=data port=%s requestid=%s "
                         "x-stream-protocol-version=portforward.k8s.io\n", id, port, rid);
                assert_string_equal(srv->log, want);
                assert_int_equal(spdy_session_submit_rst_stream(srv->s, id, SPDY_RST_CANCEL), 0);
                assert_int_equal(pump(srv, c, 0), 0);
                snprintf(want, sizeof want, "syn_reply %u fin=0 streamtype=data port=%s requestid=%s "
                         "x-stream-protocol-version=portforward.k8s.io\nrst %u CANCEL\nclose %u 5\n", id, port, rid, id, id);
                assert_string_equal(c->log, want);
        }
        /* One zlib stream per direction for the session: repeated headers cost a few bytes. */
        assert_true(wire * 3 < raw);
        assert_int_equal(spdy_session_n_streams(c->s), 0);
        assert_int_equal(spdy_session_n_streams(srv->s), 0);
        peer_free(c);
        peer_free(srv);
}

/* --- hostile input ------------------------------------------------------------------------------ */

/* A peer's compressor, to write what our submit functions refuse to. */
typedef struct RawPeer {
        z_stream z;
        uint8_t buf[1 << 20];
        size_t len;
} RawPeer;

static const uint8_t *spdy_dict(size_t *len);

static RawPeer *raw_new(void) {
        RawPeer *r = calloc(1, sizeof *r);
        size_t dl;
        const uint8_t *d = spdy_dict(&dl);
        assert_int_equal(deflateInit(&r->z, Z_BEST_COMPRESSION), Z_OK);
        assert_int_equal(deflateSetDictionary(&r->z, d, (uInt) dl), Z_OK);
        return r;
}

static void raw_free(RawPeer *r) {
        deflateEnd(&r->z);
        free(r);
}

static void put32(uint8_t *p, uint32_t v) {
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
}

static uint32_t get32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void raw_control(RawPeer *r, uint16_t version, uint16_t type, uint8_t flags, const void *payload, uint32_t len) {
        uint8_t *p = r->buf + r->len;
        p[0] = 0x80 | version >> 8;
        p[1] = (uint8_t) version;
        p[2] = type >> 8;
        p[3] = (uint8_t) type;
        put32(p + 4, (uint32_t) flags << 24 | len);
        memcpy(p + 8, payload, len);
        r->len += 8 + len;
}

/* A SYN_STREAM (or SYN_REPLY/HEADERS with prefix 4) whose block is block[0..len), compressed with
 * flush (Z_SYNC_FLUSH as everyone does; Z_FINISH ends the stream). */
static void raw_block_frame(RawPeer *r, uint16_t type, uint32_t id, const void *block, size_t len, int flush) {
        uint8_t frame[65536 + 16];
        size_t prefix = type == SPDY_SYN_STREAM ? 10 : 4;
        memset(frame, 0, prefix);
        put32(frame, id);
        r->z.next_in = (uint8_t *) block;
        r->z.avail_in = (uInt) len;
        r->z.next_out = frame + prefix;
        r->z.avail_out = sizeof frame - prefix;
        assert_true(deflate(&r->z, flush) >= Z_OK);
        assert_int_equal(r->z.avail_in, 0);
        raw_control(r, 3, type, 0, frame, (uint32_t) (sizeof frame - r->z.avail_out));
}

/* A header block in the clear: count, then name/value pairs given as "name", "value", ..., NULL. */
static size_t block(uint8_t *out, uint32_t count, ...) {
        va_list ap;
        const char *s;
        size_t n = 4;
        put32(out, count);
        va_start(ap, count);
        while ((s = va_arg(ap, const char *))) {
                put32(out + n, (uint32_t) strlen(s));
                memcpy(out + n + 4, s, strlen(s));
                n += 4 + strlen(s);
        }
        va_end(ap);
        return n;
}

static void raw_data(RawPeer *r, uint32_t id, uint8_t flags, const void *d, uint32_t len) {
        put32(r->buf + r->len, id);
        put32(r->buf + r->len + 4, (uint32_t) flags << 24 | len);
        memcpy(r->buf + r->len + 8, d, len);
        r->len += 8 + len;
}

static int raw_send(RawPeer *r, Peer *to) {
        int ret = spdy_session_recv(to->s, r->buf, r->len);
        r->len = 0;
        return ret;
}

/* The payload of the first control frame of this type in p's output, or NULL. */
static const uint8_t *find_control(Peer *p, uint16_t type) {
        const uint8_t *out, *end;
        size_t n = spdy_session_peek_output(p->s, &out);
        end = out + n;
        while (end - out >= 8) {
                uint32_t len = get32(out + 4) & 0xffffff;
                if ((out[0] & 0x80) && (uint16_t) (out[2] << 8 | out[3]) == type)
                        return out + 8;
                out += 8 + len;
        }
        return NULL;
}

static void assert_goaway(Peer *p, uint32_t status) {
        const uint8_t *g = find_control(p, SPDY_GOAWAY);
        assert_non_null(g);
        assert_int_equal(get32(g + 4), status);
}

static void assert_rst(Peer *p, uint32_t id, uint32_t status) {
        const uint8_t *g = find_control(p, SPDY_RST_STREAM);
        assert_non_null(g);
        assert_int_equal(get32(g), id);
        assert_int_equal(get32(g + 4), status);
}

/* The session still works: a ping gets its answer. */
static void assert_alive(RawPeer *r, Peer *srv) {
        uint8_t id[4] = { 0, 0, 0, 99 };
        const uint8_t *out;
        spdy_session_consume_output(srv->s, spdy_session_peek_output(srv->s, &out));
        raw_control(r, 3, SPDY_PING, 0, id, 4);
        assert_int_equal(raw_send(r, srv), 0);
        assert_non_null(find_control(srv, SPDY_PING));
}

static void test_bad_version(void **state) {
        Peer *srv = peer_new(true, NULL);
        RawPeer *r = raw_new();
        uint8_t id[4] = { 0, 0, 0, 1 };

        raw_control(r, 2, SPDY_PING, 0, id, 4);
        assert_int_equal(raw_send(r, srv), -EPROTO);
        assert_goaway(srv, SPDY_GOAWAY_PROTOCOL_ERROR);
        assert_false(spdy_session_want_read(srv->s));
        /* Failed for good. */
        raw_control(r, 3, SPDY_PING, 0, id, 4);
        assert_int_equal(raw_send(r, srv), -EPROTO);
        assert_int_equal(spdy_session_submit_ping(srv->s, NULL), -EPROTO);
        assert_string_equal(srv->log, "");
        raw_free(r);
        peer_free(srv);
}

static void test_unknown_control_types_skipped(void **state) {
        Peer *srv = peer_new(true, NULL);
        RawPeer *r = raw_new();
        static uint8_t junk[100000];

        memset(junk, 0xa5, sizeof junk);
        raw_control(r, 3, 5, 0, junk, 4);               /* SPDY/2's NOOP */
        raw_control(r, 3, 10, 0, junk, 1000);           /* SPDY/3's CREDENTIAL */
        raw_control(r, 3, 0xffff, 0xff, junk, sizeof junk); /* past max_control_frame: skipped anyway */
        assert_int_equal(raw_send(r, srv), 0);
        assert_int_equal(spdy_session_queued(srv->s), 0);
        assert_alive(r, srv);
        raw_free(r);
        peer_free(srv);
}

static void test_oversize(void **state) {
        const SpdyLimits lim = { .max_data_frame = 1024, .max_control_frame = 4096 };
        Peer *srv = peer_new(true, &lim);
        RawPeer *r = raw_new();
        static uint8_t big[8192];
        uint8_t b[64];
        size_t n;

        /* DATA past the limit: a stream error, the payload skipped. */
        n = block(b, 0, NULL);
        raw_block_frame(r, SPDY_SYN_STREAM, 1, b, n, Z_SYNC_FLUSH);
        raw_data(r, 1, 0, big, 1025);
        assert_int_equal(raw_send(r, srv), 0);
        assert_rst(srv, 1, SPDY_RST_FRAME_TOO_LARGE);
        assert_string_equal(srv->log, "syn_stream 1 assoc=0 prio=0 fin=0 uni=0\nclose 1 11\n");
        assert_alive(r, srv);

        /* A control frame past the limit: refused at its header, before the payload comes. */
        raw_control(r, 3, SPDY_SETTINGS, 0, big, 4097);
        assert_int_equal(spdy_session_recv(srv->s, r->buf, 8), -EPROTO);
        assert_goaway(srv, SPDY_GOAWAY_PROTOCOL_ERROR);
        raw_free(r);
        peer_free(srv);
}

static void test_zlib_bomb(void **state) {
        Peer *c = peer_new(false, NULL), *srv = peer_new(true, NULL);
        size_t big = 8 << 20;
        char *v = malloc(big);
        const uint8_t *out;

        /* 8 MiB of one byte compresses to about 8 KiB: a frame under every frame limit. */
        memset(v, 'a', big);
        const SpdyHeader h[] = { { "bomb", 4, v, big - 64 } };
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, h, 1, 0, NULL), 0);
        assert_true(spdy_session_peek_output(c->s, &out) < SPDY_DEFAULT_MAX_CONTROL_FRAME);
        assert_int_equal(pump(c, srv, 0), -EPROTO);
        assert_goaway(srv, SPDY_GOAWAY_PROTOCOL_ERROR);
        assert_string_equal(srv->log, "");
        free(v);
        peer_free(c);
        peer_free(srv);
}

static void test_truncated(void **state) {
        Peer *c = peer_new(false, NULL), *srv = peer_new(true, NULL);
        const SpdyHeader h[] = { H("streamtype", "stdout"), H("x", "a long enough value to be cut") };
        uint8_t frame[512];
        const uint8_t *out;
        size_t n;

        /* A frame that stops short just waits for the rest. */
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, h, 2, 0, NULL), 0);
        n = spdy_session_peek_output(c->s, &out);
        assert_true(n < sizeof frame);
        memcpy(frame, out, n);
        assert_int_equal(spdy_session_recv(srv->s, frame, n - 3), 0);
        assert_string_equal(srv->log, "");
        assert_int_equal(spdy_session_queued(srv->s), 0);

        /* A header block cut inside, in a frame whose length says so: a session error. */
        peer_free(srv);
        srv = peer_new(true, NULL);
        put32(frame + 4, (uint32_t) (n - 8 - 10));
        assert_int_equal(spdy_session_recv(srv->s, frame, n - 10), -EPROTO);
        assert_goaway(srv, SPDY_GOAWAY_PROTOCOL_ERROR);
        assert_string_equal(srv->log, "");

        /* Control frames shorter than their fixed fields. */
        for (uint16_t type = 1; type <= 9; type++) {
                uint8_t zero[16] = {};
                if (type == 5)
                        continue;
                RawPeer *r = raw_new();
                peer_free(srv);
                srv = peer_new(true, NULL);
                raw_control(r, 3, type, 0, zero, type == SPDY_SYN_STREAM ? 9 : 3);
                assert_int_equal(raw_send(r, srv), -EPROTO);
                raw_free(r);
        }
        peer_free(c);
        peer_free(srv);
}

static void test_bad_stream_ids(void **state) {
        uint8_t b[64];
        size_t n = block(b, 0, NULL);
        const uint32_t bad[] = { 0, 2 /* even: the server's */ };

        for (size_t i = 0; i < 2; i++) {
                Peer *srv = peer_new(true, NULL);
                RawPeer *r = raw_new();
                raw_block_frame(r, SPDY_SYN_STREAM, bad[i], b, n, Z_SYNC_FLUSH);
                assert_int_equal(raw_send(r, srv), -EPROTO);
                assert_goaway(srv, SPDY_GOAWAY_PROTOCOL_ERROR);
                raw_free(r);
                peer_free(srv);
        }

        /* Ids that do not increase. */
        Peer *srv = peer_new(true, NULL);
        RawPeer *r = raw_new();
        raw_block_frame(r, SPDY_SYN_STREAM, 5, b, n, Z_SYNC_FLUSH);
        raw_block_frame(r, SPDY_SYN_STREAM, 3, b, n, Z_SYNC_FLUSH);
        assert_int_equal(raw_send(r, srv), -EPROTO);
        assert_string_equal(srv->log, "syn_stream 5 assoc=0 prio=0 fin=0 uni=0\n");
        /* GOAWAY names the last good stream. */
        assert_int_equal(get32(find_control(srv, SPDY_GOAWAY)), 5);
        raw_free(r);
        peer_free(srv);

        /* DATA on a stream never opened: RST INVALID_STREAM; on stream 0: a session error. */
        srv = peer_new(true, NULL);
        r = raw_new();
        raw_data(r, 7, 0, "abc", 3);
        assert_int_equal(raw_send(r, srv), 0);
        assert_rst(srv, 7, SPDY_RST_INVALID_STREAM);
        /* DATA after the peer's FIN: STREAM_ALREADY_CLOSED. */
        srv->echo_syn = true;
        raw_block_frame(r, SPDY_SYN_STREAM, 9, b, n, Z_SYNC_FLUSH);
        raw_data(r, 9, SPDY_FLAG_FIN, "x", 1);
        assert_alive(r, srv);
        raw_data(r, 9, 0, "y", 1);
        assert_int_equal(raw_send(r, srv), 0);
        assert_rst(srv, 9, SPDY_RST_STREAM_ALREADY_CLOSED);
        /* SYN_REPLY for a stream the peer opened itself: PROTOCOL_ERROR. */
        raw_block_frame(r, SPDY_SYN_STREAM, 11, b, n, Z_SYNC_FLUSH);
        assert_alive(r, srv);
        raw_block_frame(r, SPDY_SYN_REPLY, 11, b, n, Z_SYNC_FLUSH);
        assert_int_equal(raw_send(r, srv), 0);
        assert_rst(srv, 11, SPDY_RST_PROTOCOL_ERROR);
        raw_data(r, 0, 0, "abc", 3);
        assert_int_equal(raw_send(r, srv), -EPROTO);
        raw_free(r);
        peer_free(srv);
}

static void test_bad_headers(void **state) {
        Peer *srv = peer_new(true, NULL);
        RawPeer *r = raw_new();
        uint8_t b[256];
        struct {
                uint32_t count;
                const char *name, *value, *name2, *value2;
        } cases[] = {
                { 1, "StreamType", "stdin" }, /* not lowercase */
                { 1, "", "x" },               /* empty name */
                { 2, "a", "1", "a", "2" },    /* duplicate */
                { 1, "a", "x\0" },            /* (strlen: a plain value; see below) */
        };
        uint32_t id = 1;

        for (size_t i = 0; i < 3; i++, id += 2) {
                size_t n = block(b, cases[i].count, cases[i].name, cases[i].value, cases[i].name2, cases[i].value2, NULL);
                raw_block_frame(r, SPDY_SYN_STREAM, id, b, n, Z_SYNC_FLUSH);
                assert_int_equal(raw_send(r, srv), 0);
                assert_rst(srv, id, SPDY_RST_PROTOCOL_ERROR);
                assert_alive(r, srv); /* the compression context is intact */
        }
        /* Values with an empty part: leading, trailing, double NUL. */
        const char *values[] = { "\0a", "a\0", "a\0\0b" };
        const size_t lens[] = { 2, 2, 4 };
        for (size_t i = 0; i < 3; i++, id += 2) {
                size_t n = block(b, 1, "v", "", NULL);
                put32(b + n - 4, (uint32_t) lens[i]);
                memcpy(b + n, values[i], lens[i]);
                raw_block_frame(r, SPDY_SYN_STREAM, id, b, n + lens[i], Z_SYNC_FLUSH);
                assert_int_equal(raw_send(r, srv), 0);
                assert_rst(srv, id, SPDY_RST_PROTOCOL_ERROR);
                assert_alive(r, srv);
        }
        /* More pairs than max_headers: refused; a count the block cannot hold: a session error. */
        {
                static uint8_t many[65536];
                size_t n = 4;
                put32(many, 200);
                for (int i = 0; i < 200; i++) {
                        char name[8];
                        int l = snprintf(name, sizeof name, "h%d", i);
                        put32(many + n, (uint32_t) l);
                        memcpy(many + n + 4, name, (size_t) l);
                        put32(many + n + 4 + (size_t) l, 0);
                        n += 8 + (size_t) l;
                }
                raw_block_frame(r, SPDY_SYN_STREAM, id, many, n, Z_SYNC_FLUSH);
                assert_int_equal(raw_send(r, srv), 0);
                assert_rst(srv, id, SPDY_RST_PROTOCOL_ERROR);
                id += 2;
                assert_alive(r, srv);
        }
        assert_int_equal(spdy_session_n_streams(srv->s), 0);
        size_t n = block(b, 1000, "a", "b", NULL);
        raw_block_frame(r, SPDY_SYN_STREAM, id, b, n, Z_SYNC_FLUSH);
        assert_int_equal(raw_send(r, srv), -EPROTO);
        raw_free(r);
        peer_free(srv);

        /* A block that ends the zlib stream: the session could not go on. */
        srv = peer_new(true, NULL);
        r = raw_new();
        n = block(b, 0, NULL);
        raw_block_frame(r, SPDY_SYN_STREAM, 1, b, n, Z_FINISH);
        assert_int_equal(raw_send(r, srv), -EPROTO);
        raw_free(r);
        peer_free(srv);

        /* Garbage for a header block. */
        srv = peer_new(true, NULL);
        r = raw_new();
        memcpy(b, "\0\0\0\1\0\0\0\0\0\0garbage!", 18);
        raw_control(r, 3, SPDY_SYN_STREAM, 0, b, 18);
        assert_int_equal(raw_send(r, srv), -EPROTO);
        raw_free(r);
        peer_free(srv);
}

static void test_submit_checks(void **state) {
        Peer *c = peer_new(false, NULL), *srv = peer_new(true, NULL);
        const SpdyHeader upper[] = { H("StreamType", "stdin") }, empty[] = { { "", 0, "x", 1 } };
        uint32_t id;

        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, upper, 1, 0, NULL), -EINVAL);
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, empty, 1, 0, NULL), -EINVAL);
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 8, NULL, 0, 0, NULL), -EINVAL);
        assert_int_equal(spdy_session_queued(c->s), 0); /* nothing went to deflate */
        assert_int_equal(spdy_session_submit_data(c->s, 1, "x", 1, false), -ENOENT);
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, NULL, 0, 0, &id), 0);
        assert_int_equal(spdy_session_submit_syn_reply(c->s, id, NULL, 0, false), -EPROTO); /* our own */
        assert_int_equal(pump(c, srv, 0), 0);
        /* The server may not send before its SYN_REPLY, nor reply twice. */
        assert_int_equal(spdy_session_submit_data(srv->s, id, "x", 1, false), -EPROTO);
        assert_int_equal(spdy_session_submit_headers(srv->s, id, NULL, 0, false), -EPROTO);
        assert_int_equal(spdy_session_submit_syn_reply(srv->s, id, NULL, 0, false), 0);
        assert_int_equal(spdy_session_submit_syn_reply(srv->s, id, NULL, 0, false), -EPROTO);
        assert_int_equal(spdy_session_submit_data(srv->s, id, NULL, 0, true), 0);
        assert_int_equal(spdy_session_submit_headers(srv->s, id, NULL, 0, false), -EPIPE);
        assert_int_equal(spdy_session_submit_rst_stream(srv->s, 0, 1), -EINVAL);
        assert_int_equal(spdy_session_submit_window_update(srv->s, 1, 0), -EINVAL);
        /* A unidirectional stream: the recipient may not send on it. */
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, NULL, 0, SPDY_FLAG_UNIDIRECTIONAL, &id), 0);
        assert_int_equal(pump(c, srv, 0), 0);
        assert_int_equal(spdy_session_submit_syn_reply(srv->s, id, NULL, 0, false), -EPIPE);
        assert_int_equal(spdy_stream_set_user_data(srv->s, id, srv), 0);
        assert_ptr_equal(spdy_stream_get_user_data(srv->s, id), srv);
        assert_int_equal(spdy_stream_set_user_data(srv->s, 99, srv), -ENOENT);
        peer_free(c);
        peer_free(srv);
}

static void test_limits(void **state) {
        const SpdyLimits lim = { .max_output = 1024, .max_streams = 2 };
        Peer *c = peer_new(false, NULL), *srv = peer_new(true, &lim);
        static uint8_t big[2000];
        uint32_t id;

        /* Past max_streams: REFUSED_STREAM. */
        for (int i = 0; i < 3; i++)
                assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, NULL, 0, 0, NULL), 0);
        assert_int_equal(pump(c, srv, 0), 0);
        assert_int_equal(spdy_session_n_streams(srv->s), 2);
        assert_rst(srv, 5, SPDY_RST_REFUSED_STREAM);
        assert_int_equal(spdy_session_submit_syn_stream(srv->s, 0, 0, NULL, 0, 0, &id), -EMFILE);

        /* Past max_output: a submit fails and queues nothing. */
        assert_int_equal(spdy_session_submit_syn_reply(srv->s, 1, NULL, 0, false), 0);
        size_t q = spdy_session_queued(srv->s);
        assert_int_equal(spdy_session_submit_data(srv->s, 1, big, sizeof big, false), -ENOBUFS);
        assert_int_equal(spdy_session_queued(srv->s), q);
        assert_int_equal(spdy_session_submit_data(srv->s, 1, big, 100, false), 0);

        /* A peer that pings and never reads: the answers stop at the cap and the session fails. */
        int r = 0;
        for (int i = 0; i < 200 && r == 0; i++) {
                assert_int_equal(spdy_session_submit_ping(c->s, NULL), 0);
                r = pump(c, srv, 0);
        }
        assert_int_equal(r, -ENOBUFS);
        assert_true(spdy_session_queued(srv->s) <= 1024);
        peer_free(c);
        peer_free(srv);
}

static void test_goaway_refuses(void **state) {
        Peer *c = peer_new(false, NULL), *srv = peer_new(true, NULL);
        uint32_t a, b;

        srv->echo_syn = true;
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, NULL, 0, 0, &a), 0);
        assert_int_equal(pump(c, srv, 0), 0);
        assert_int_equal(spdy_session_submit_goaway(srv->s, SPDY_GOAWAY_OK), 0);
        /* The client's next stream crosses the GOAWAY: ignored by the server, refused at the client. */
        assert_int_equal(spdy_session_submit_syn_stream(c->s, 0, 0, NULL, 0, 0, &b), 0);
        assert_int_equal(pump(c, srv, 0), 0);
        assert_int_equal(spdy_session_n_streams(srv->s), 1);
        peer_clear(c);
        assert_int_equal(pump(srv, c, 0), 0);
        assert_string_equal(c->log, "syn_reply 1 fin=0\ngoaway last=1 status=0\nclose 3 3\n");
        assert_int_equal(spdy_session_n_streams(c->s), 1);
        assert_true(spdy_session_want_read(c->s));
        peer_free(c);
        peer_free(srv);
}

/* The SPDY/3 dictionary for the test's own compressor, rebuilt from the draft's description (the
 * length-prefixed words, then the status lines, dates and types) rather than copied from
 * src/stream/spdy.c: zlib checks the dictionary's Adler-32 id, so a wrong byte fails every test
 * that uses a RawPeer. */
static const uint8_t *spdy_dict(size_t *len) {
        static uint8_t d[1423];
        static bool done;
        if (!done) {
                static const char *const words[] = {
                        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
                        "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
                        "cache-control", "connection", "content-base", "content-encoding", "content-language",
                        "content-length", "content-location", "content-md5", "content-range", "content-type",
                        "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
                        "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
                        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
                        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
                        "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
                        "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
                };
                static const char tail[] =
                        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
                        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
                        "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
                        "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
                        "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/"
                        "xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,"
                        "sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
                size_t n = 0;
                for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
                        put32(d + n, (uint32_t) strlen(words[i]));
                        memcpy(d + n + 4, words[i], strlen(words[i]));
                        n += 4 + strlen(words[i]);
                }
                assert_int_equal(n + sizeof tail - 1, sizeof d);
                memcpy(d + n, tail, sizeof tail - 1);
                done = true;
        }
        *len = sizeof d;
        return d;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_roundtrip_byte_at_a_time),
                cmocka_unit_test(test_roundtrip_odd_splits),
                cmocka_unit_test(test_header_compression_many_frames),
                cmocka_unit_test(test_bad_version),
                cmocka_unit_test(test_unknown_control_types_skipped),
                cmocka_unit_test(test_oversize),
                cmocka_unit_test(test_zlib_bomb),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_bad_stream_ids),
                cmocka_unit_test(test_bad_headers),
                cmocka_unit_test(test_submit_checks),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_goaway_refuses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
