/* Fuzzes src/stream/spdy.c as the streaming server will use it: peer bytes into a session that
 * answers every SYN_STREAM and echoes DATA, FIN after FIN.
 *
 * The first input byte picks the side (bit 0: 1 = a client session, else a server one) and how the
 * rest is split (bits 1-7: chunks of that many bytes, 0 = all at once); the rest is the peer's
 * bytes. Checks: a failed session stays failed, a protocol failure leaves a GOAWAY PROTOCOL_ERROR
 * last in the queue, the stream table stays within its limit, and everything the session wrote parses
 * without a session error in a fresh session of the other side (our output is always valid SPDY).
 * Seeds: tests/fuzz/make-corpus-spdy, from traffic of Go's spdystream client. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "spdy.h"

static int on_syn_stream(SpdySession *s, uint32_t id, uint32_t assoc, uint8_t prio, const SpdyHeader *h, size_t n,
                         bool fin, bool unidirectional, void *userdata) {
        const SpdyHeader *t = spdy_header_find(h, n, "streamtype");

        if (t && t->value_len == 5 && memcmp(t->value, "error", 5) == 0) {
                (void) spdy_session_submit_rst_stream(s, id, SPDY_RST_REFUSED_STREAM);
                return 0;
        }
        (void) spdy_session_submit_syn_reply(s, id, h, n, false);
        if (fin)
                (void) spdy_session_submit_data(s, id, NULL, 0, true);
        (void) spdy_stream_set_user_data(s, id, s);
        return 0;
}

static int on_syn_reply(SpdySession *s, uint32_t id, const SpdyHeader *h, size_t n, bool fin, void *userdata) {
        (void) spdy_session_submit_headers(s, id, h, n, false);
        return 0;
}

static int on_data(SpdySession *s, uint32_t id, const uint8_t *data, size_t len, bool fin, void *userdata) {
        if (spdy_stream_get_user_data(s, id) != s && spdy_stream_get_user_data(s, id) != NULL)
                abort();
        (void) spdy_session_submit_data(s, id, data, len, fin);
        return 0;
}

static int on_ping(SpdySession *s, uint32_t id, bool reply, void *userdata) {
        /* A pong that answers nothing we sent may come; a ping of ours gets the next one. */
        if (!reply && (id & 0xff) == 0x42)
                (void) spdy_session_submit_ping(s, NULL);
        return 0;
}

static bool goaway_ok_sent;

static int on_goaway(SpdySession *s, uint32_t last, uint32_t status, void *userdata) {
        if (spdy_session_submit_goaway(s, SPDY_GOAWAY_OK) == 0)
                goaway_ok_sent = true;
        return 0;
}

static int on_settings(SpdySession *s, const SpdySetting *set, size_t n, bool clear, void *userdata) {
        for (size_t i = 0; i < n; i++)
                if (set[i].id > 0xffffff)
                        abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const SpdyCallbacks cb = {
                .on_syn_stream = on_syn_stream,
                .on_syn_reply = on_syn_reply,
                .on_data = on_data,
                .on_ping = on_ping,
                .on_goaway = on_goaway,
                .on_settings = on_settings,
        };
        /* Small limits, so that the fuzzer reaches them. */
        const SpdyLimits limits = {
                .max_control_frame = 8192,
                .max_data_frame = 4096,
                .max_header_block = 16384,
                .max_headers = 16,
                .max_streams = 8,
                .max_output = 1 << 20,
        };
        const SpdyLimits unlimited = { .max_output = SIZE_MAX, .max_streams = SIZE_MAX };
        SpdySession *s, *check;
        const uint8_t *out;
        size_t step, n;
        bool client;
        int r = 0;

        if (size < 1)
                return 0;
        client = data[0] & 1;
        step = data[0] >> 1;
        data++;
        size--;

        goaway_ok_sent = false;
        if (spdy_session_new(&s, !client, &cb, &limits, NULL) < 0)
                abort();
        for (size_t off = 0; off < size && r >= 0;) {
                size_t k = step == 0 ? size - off : step < size - off ? step : size - off;
                r = spdy_session_recv(s, data + off, k);
                off += k;
                if (spdy_session_n_streams(s) > limits.max_streams)
                        abort();
        }
        if (r < 0) {
                if (spdy_session_recv(s, (const uint8_t *) "", 0) != r || spdy_session_want_read(s))
                        abort();
                if (r != -EPROTO && r != -ENOBUFS && r != -ENOMEM)
                        abort();
        }

        /* What we wrote is SPDY: a fresh session of the other side takes it all. */
        if (spdy_session_new(&check, client, NULL, &unlimited, NULL) < 0)
                abort();
        n = spdy_session_peek_output(s, &out);
        if (n > 0 && spdy_session_recv(check, out, n) < 0)
                abort();
        if (r == -EPROTO && !goaway_ok_sent) {
                /* The last frame is our GOAWAY with PROTOCOL_ERROR (unless one with OK went first). */
                if (n < 16 || out[n - 16] != 0x80 || out[n - 13] != 7 || out[n - 1] != 1)
                        abort();
        }
        spdy_session_free(check);
        spdy_session_free(s);
        return 0;
}
