/* Fuzzes src/stream/ws.c as the streaming server uses it: a client's bytes into a session that
 * echoes every channel message, and the pure parts on the same input (the subprotocol choice,
 * base64, channel decoding).
 *
 * The first input byte picks the protocol (bits 0-2, an index into the names below) and how the
 * rest is split (bits 3-7: chunks of that many bytes, 0 = all at once). Checks: a failed session
 * stays failed and a session that stopped reading reads no more; a base64 decode fits its bound
 * and decodes the same after a round trip; ws_negotiate() answers only names it knows. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ws.h"

static const char *const names[] = {
        "v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
        "base64.channel.k8s.io", "", "v5.channel.k8s.io", "v4.channel.k8s.io",
};

static int on_message(WsSession *s, uint8_t channel, const uint8_t *data, size_t len, void *userdata) {
        (void) ws_session_submit(s, channel, data, len);
        return 0;
}

static int on_channel_close(WsSession *s, uint8_t channel, void *userdata) {
        if (channel == 3)
                (void) ws_session_submit_close(s, 1000, "bye");
        return 0;
}

static void check_pure(const uint8_t *data, size_t size) {
        size_t n = size > 4096 ? 4096 : size, len, len2;
        char *str = malloc(n + 1), *enc;
        uint8_t *dec, *dec2, ch;

        if (!str)
                return;
        memcpy(str, data, n);
        str[n] = '\0';
        for (int pf = 0; pf < 2; pf++) {
                const WsProtocol *p = ws_negotiate(str, pf);
                if (p && !p->name)
                        abort();
        }
        dec = malloc(n + 1);
        enc = malloc(n * 2 + 8);
        dec2 = malloc(n + 1);
        if (dec && enc && dec2 && ws_base64_decode(str, n, dec, &len) == 0) {
                if (len > n / 4 * 3)
                        abort();
                size_t e = ws_base64_encode(dec, len, enc);
                if (ws_base64_decode(enc, e, dec2, &len2) != 0 || len2 != len || memcmp(dec, dec2, len) != 0)
                        abort();
        }
        if (dec && ws_channel_decode(true, true, data, n, &ch, dec, &len) && (ch > 9 || len > n))
                abort();
        free(str);
        free(dec);
        free(enc);
        free(dec2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const WsCallbacks cbs = { .on_message = on_message, .on_channel_close = on_channel_close };
        WsSession *s;
        const uint8_t *out;
        size_t chunk;
        int failed = 0;

        if (size < 1)
                return 0;
        check_pure(data + 1, size - 1);
        const WsProtocol *p = ws_negotiate(names[data[0] & 7], false);
        if (!p || ws_session_new(&s, p, &cbs, 64 * 1024, 256 * 1024, NULL) < 0)
                return 0;
        chunk = data[0] >> 3;
        data++;
        size--;
        while (size > 0) {
                size_t n = chunk ? (chunk < size ? chunk : size) : size;
                bool reading = ws_session_want_read(s);
                int r = ws_session_recv(s, data, n);
                if (failed < 0 && r != failed)
                        abort();
                if (!reading && ws_session_want_read(s))
                        abort();
                if (r < 0 && r != -EPROTO && r != -ENOMEM && r != -ENOBUFS && r != -EIO)
                        abort();
                if (r < 0)
                        failed = r;
                /* a slow reader: half of what is queued */
                size_t q = ws_session_peek_output(s, &out);
                ws_session_consume_output(s, q / 2);
                data += n;
                size -= n;
        }
        ws_session_free(s);
        return 0;
}
