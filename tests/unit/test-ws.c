/* Unit tests of src/stream/ws.c: the RFC 6455 accept key, the subprotocol choice, base64, channel
 * decoding, and a session fed masked client frames in any split. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "ws.h"

static void test_accept_key(void **state) {
        char out[WS_ACCEPT_LEN + 1];

        /* RFC 6455 section 1.3 */
        assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
        assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_negotiate(void **state) {
        const WsProtocol *p;

        p = ws_negotiate(NULL, false);
        assert_non_null(p);
        assert_string_equal(p->name, "");
        assert_int_equal(p->version, 1);
        /* the client's first offer the server knows, as kubelet's handshake takes it */
        p = ws_negotiate("v5.channel.k8s.io, v4.channel.k8s.io", false);
        assert_string_equal(p->name, "v5.channel.k8s.io");
        assert_int_equal(p->version, 5);
        p = ws_negotiate("base64.channel.k8s.io,v5.channel.k8s.io", false);
        assert_string_equal(p->name, "base64.channel.k8s.io");
        assert_true(p->base64);
        p = ws_negotiate(" v9.channel.k8s.io ,\tv4.base64.channel.k8s.io\t", false);
        assert_string_equal(p->name, "v4.base64.channel.k8s.io");
        assert_int_equal(p->version, 4);
        assert_null(ws_negotiate("v9.channel.k8s.io", false));
        assert_null(ws_negotiate("V4.CHANNEL.K8S.IO", false)); /* exact, as Go compares */
        assert_null(ws_negotiate("v4.channel.k8s.io.x", false));
        /* port-forward knows no v5 and no pre-v4 names */
        assert_null(ws_negotiate("v5.channel.k8s.io,channel.k8s.io", true));
        p = ws_negotiate("v5.channel.k8s.io,v4.channel.k8s.io", true);
        assert_string_equal(p->name, "v4.channel.k8s.io");
        p = ws_negotiate(",,", true);
        assert_string_equal(p->name, "");
}

static void test_base64(void **state) {
        static const char *const vec[][2] = {
                { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
                { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
        };
        char enc[64];
        uint8_t dec[64];
        size_t n;

        for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
                n = ws_base64_encode((const uint8_t *) vec[i][0], strlen(vec[i][0]), enc);
                assert_int_equal(n, strlen(vec[i][1]));
                assert_memory_equal(enc, vec[i][1], n);
                assert_int_equal(ws_base64_decode(vec[i][1], strlen(vec[i][1]), dec, &n), 0);
                assert_int_equal(n, strlen(vec[i][0]));
                assert_memory_equal(dec, vec[i][0], n);
        }
        uint8_t all[256];
        char big[400];
        for (int i = 0; i < 256; i++)
                all[i] = (uint8_t) i;
        n = ws_base64_encode(all, sizeof all, big);
        uint8_t back[256];
        assert_int_equal(ws_base64_decode(big, n, back, &n), 0);
        assert_int_equal(n, 256);
        assert_memory_equal(back, all, 256);
        assert_int_equal(ws_base64_decode("Zm9v\r\nYmFy", 10, dec, &n), 0);
        assert_int_equal(n, 6);
        const char *bad[] = { "Zg", "Zg=", "Z===", "Zm9", "Zg==Zg==", "Zm9v!", "=Zm9", "Zg=a" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(ws_base64_decode(bad[i], strlen(bad[i]), dec, &n), -EINVAL);
}

static void test_channel_decode(void **state) {
        uint8_t out[16], ch;
        size_t n;

        assert_true(ws_channel_decode(false, false, (const uint8_t *) "\x01hi", 3, &ch, out, &n));
        assert_int_equal(ch, 1);
        assert_int_equal(n, 2);
        assert_memory_equal(out, "hi", 2);
        assert_true(ws_channel_decode(false, false, (const uint8_t *) "\x04", 1, &ch, out, &n));
        assert_int_equal(ch, 4);
        assert_int_equal(n, 0);
        assert_false(ws_channel_decode(false, false, (const uint8_t *) "", 0, &ch, out, &n));
        assert_true(ws_channel_decode(true, true, (const uint8_t *) "0aGk=", 5, &ch, out, &n));
        assert_int_equal(ch, 0);
        assert_int_equal(n, 2);
        assert_memory_equal(out, "hi", 2);
        assert_false(ws_channel_decode(true, true, (const uint8_t *) "xaGk=", 5, &ch, out, &n));
        assert_false(ws_channel_decode(true, true, (const uint8_t *) "0aGk", 4, &ch, out, &n));
}

/* --- a session ------------------------------------------------------------------------------------ */

typedef struct Rec {
        char log[4096];
        size_t len;
} Rec;

static int on_message(WsSession *s, uint8_t channel, const uint8_t *data, size_t len, void *userdata) {
        Rec *r = userdata;
        r->len += (size_t) snprintf(r->log + r->len, sizeof r->log - r->len, "msg %u %zu:%.*s\n", channel, len,
                                    (int) MIN(len, (size_t) 40), (const char *) data);
        return 0;
}

static int on_channel_close(WsSession *s, uint8_t channel, void *userdata) {
        Rec *r = userdata;
        r->len += (size_t) snprintf(r->log + r->len, sizeof r->log - r->len, "close %u\n", channel);
        return 0;
}

static const WsCallbacks cbs = { .on_message = on_message, .on_channel_close = on_channel_close };

/* A masked client frame. */
static size_t client_frame(uint8_t *out, uint8_t opcode, const void *payload, size_t len) {
        static const uint8_t mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
        size_t n = 0;

        out[n++] = (uint8_t) (0x80 | opcode);
        if (len < 126)
                out[n++] = (uint8_t) (0x80 | len);
        else {
                out[n++] = 0x80 | 126;
                out[n++] = (uint8_t) (len >> 8);
                out[n++] = (uint8_t) len;
        }
        memcpy(out + n, mask, 4);
        n += 4;
        for (size_t i = 0; i < len; i++)
                out[n++] = ((const uint8_t *) payload)[i] ^ mask[i % 4];
        return n;
}

static const WsProtocol *proto(const char *name) {
        const WsProtocol *p = ws_negotiate(name, false);
        assert_non_null(p);
        return p;
}

static void test_session_messages_any_split(void **state) {
        uint8_t in[2048];
        size_t n = 0;
        uint8_t big[300];

        memset(big, 'x', sizeof big);
        big[0] = 0; /* stdin */
        n += client_frame(in + n, 0x2, "\x00hello", 6);
        n += client_frame(in + n, 0x9, "pp", 2); /* ping: answered by wslay */
        n += client_frame(in + n, 0x2, big, sizeof big);
        n += client_frame(in + n, 0x2, "\xff\x00", 2); /* v5 close of stdin */
        n += client_frame(in + n, 0x2, "", 0);         /* dropped */
        for (size_t step = 1; step <= n; step = step < 8 ? step + 1 : step * 3) {
                WsSession *s;
                Rec r = {};
                const uint8_t *out;
                assert_int_equal(ws_session_new(&s, proto("v5.channel.k8s.io"), &cbs, 0, 0, &r), 0);
                for (size_t i = 0; i < n; i += step)
                        assert_int_equal(ws_session_recv(s, in + i, MIN(step, n - i)), 0);
                assert_string_equal(r.log, "msg 0 5:hello\nmsg 0 299:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
                                           "close 0\n");
                /* the pong */
                assert_int_equal(ws_session_peek_output(s, &out), 4);
                assert_memory_equal(out, "\x8a\x02pp", 4);
                ws_session_consume_output(s, 4);
                assert_true(ws_session_want_read(s));
                ws_session_free(s);
        }
}

static void test_session_submit_and_close(void **state) {
        WsSession *s;
        Rec r = {};
        const uint8_t *out;
        uint8_t in[64];
        size_t n;

        assert_int_equal(ws_session_new(&s, proto("v4.channel.k8s.io"), &cbs, 0, 64, &r), 0);
        assert_int_equal(ws_session_submit(s, 1, "out", 3), 0);
        assert_int_equal(ws_session_submit(s, 2, NULL, 0), 0);
        assert_int_equal(ws_session_peek_output(s, &out), 6 + 3);
        assert_memory_equal(out, "\x82\x04\x01out\x82\x01\x02", 9);
        ws_session_consume_output(s, 9);
        /* the output cap */
        uint8_t big[100] = {};
        assert_int_equal(ws_session_submit(s, 1, big, sizeof big), -ENOBUFS);
        assert_int_equal(ws_session_queued(s), 0);
        /* v4 has no close signal: [255, 0] is a message on channel 255 */
        n = client_frame(in, 0x2, "\xff\x00", 2);
        assert_int_equal(ws_session_recv(s, in, n), 0);
        assert_string_equal(r.log, "msg 255 1:\n");
        /* the peer's close: answered, and nothing is read after it */
        n = client_frame(in, 0x8, "\x03\xe8", 2);
        assert_int_equal(ws_session_recv(s, in, n), 0);
        assert_false(ws_session_want_read(s));
        assert_int_equal(ws_session_peek_output(s, &out), 4);
        assert_memory_equal(out, "\x88\x02\x03\xe8", 4);
        assert_int_equal(ws_session_submit(s, 1, "x", 1), -EPIPE);
        ws_session_free(s);

        /* our close first */
        assert_int_equal(ws_session_new(&s, proto("v4.channel.k8s.io"), &cbs, 0, 0, &r), 0);
        assert_false(ws_session_close_sent(s));
        assert_int_equal(ws_session_submit_close(s, 1000, NULL), 0);
        assert_true(ws_session_close_sent(s));
        assert_true(ws_session_want_read(s));
        assert_int_equal(ws_session_peek_output(s, &out), 4);
        assert_memory_equal(out, "\x88\x02\x03\xe8", 4);
        assert_int_equal(ws_session_submit(s, 1, "x", 1), -EPIPE);
        ws_session_free(s);
}

static void test_session_base64(void **state) {
        WsSession *s;
        Rec r = {};
        const uint8_t *out;
        uint8_t in[64];
        size_t n;

        assert_int_equal(ws_session_new(&s, proto("base64.channel.k8s.io"), &cbs, 0, 0, &r), 0);
        assert_int_equal(ws_session_submit(s, 1, "hi!", 3), 0);
        assert_int_equal(ws_session_peek_output(s, &out), 7);
        assert_memory_equal(out, "\x81\x05" "1aGkh", 7);
        n = client_frame(in, 0x1, "0aGk=", 5);
        n += client_frame(in + n, 0x1, "0!!!", 4); /* bad base64: dropped */
        n += client_frame(in + n, 0x1, "4eyJXaWR0aCI6MX0=", 17);
        assert_int_equal(ws_session_recv(s, in, n), 0);
        assert_string_equal(r.log, "msg 0 2:hi\nmsg 4 11:{\"Width\":1}\n");
        ws_session_free(s);
}

static void test_session_hostile(void **state) {
        WsSession *s;
        Rec r = {};
        uint8_t in[64];
        size_t n;

        /* unmasked client frame: a protocol error, a close queued */
        assert_int_equal(ws_session_new(&s, proto("v4.channel.k8s.io"), &cbs, 0, 0, &r), 0);
        in[0] = 0x82;
        in[1] = 0x01;
        in[2] = 0x01;
        assert_int_equal(ws_session_recv(s, in, 3), -EPROTO);
        assert_false(ws_session_want_read(s));
        assert_true(ws_session_close_sent(s));
        ws_session_free(s);
        /* a message over the limit */
        assert_int_equal(ws_session_new(&s, proto("v4.channel.k8s.io"), &cbs, 16, 0, &r), 0);
        uint8_t big[32] = { 1 };
        n = client_frame(in, 0x2, big, sizeof big);
        assert_int_equal(ws_session_recv(s, in, n), -EPROTO);
        assert_false(ws_session_want_read(s));
        assert_string_equal(r.log, "");
        const uint8_t *out;
        assert_int_equal(ws_session_peek_output(s, &out), 4);
        assert_memory_equal(out, "\x88\x02\x03\xf1", 4); /* 1009 message too big */
        ws_session_free(s);
        /* pings from a client that never reads: their pongs may not pile up past the output limit */
        assert_int_equal(ws_session_new(&s, proto("v4.channel.k8s.io"), &cbs, 0, 64, &r), 0);
        n = client_frame(in, 0x9, "pp", 2);
        int got = 0;
        for (int i = 0; i < 100 && got == 0; i++)
                got = ws_session_recv(s, in, n);
        assert_int_equal(got, -ENOBUFS);
        assert_true(ws_session_peek_output(s, &out) <= 64 + 4);
        ws_session_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_accept_key),
                cmocka_unit_test(test_negotiate),
                cmocka_unit_test(test_base64),
                cmocka_unit_test(test_channel_decode),
                cmocka_unit_test(test_session_messages_any_split),
                cmocka_unit_test(test_session_submit_and_close),
                cmocka_unit_test(test_session_base64),
                cmocka_unit_test(test_session_hostile),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
