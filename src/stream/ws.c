/* WebSocket sessions of Kubernetes channel messages over libwslay's event API (see the header). */
#include "ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <wslay/wslay.h>

#include "buffer.h"
#include "macro.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* --- the handshake ------------------------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ws_base64_encode(const uint8_t *in, size_t len, char *out) {
        size_t n = 0;

        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t) in[i] << 16;
                size_t k = MIN(len - i, (size_t) 3);
                if (k > 1)
                        v |= (uint32_t) in[i + 1] << 8;
                if (k > 2)
                        v |= in[i + 2];
                out[n++] = b64[(v >> 18) & 63];
                out[n++] = b64[(v >> 12) & 63];
                out[n++] = k > 1 ? b64[(v >> 6) & 63] : '=';
                out[n++] = k > 2 ? b64[v & 63] : '=';
        }
        return n;
}

static int b64_value(uint8_t c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int ws_base64_decode(const char *in, size_t len, uint8_t *out, size_t *ret_len) {
        size_t n = 0;

        /* Go's base64.StdEncoding, which kubelet decodes with: padded groups of four; CR and LF skipped. */
        uint32_t v = 0;
        unsigned k = 0, pad = 0;
        for (size_t i = 0; i < len; i++) {
                uint8_t c = (uint8_t) in[i];
                if (c == '\r' || c == '\n')
                        continue;
                if (c == '=') {
                        if (k < 2 || pad >= 2)
                                return -EINVAL;
                        pad++;
                        k++;
                } else {
                        int d = b64_value(c);
                        if (d < 0 || pad > 0)
                                return -EINVAL;
                        v = (v << 6) | (uint32_t) d;
                        k++;
                }
                if (k == 4) {
                        v <<= 6 * pad;
                        out[n++] = (uint8_t) (v >> 16);
                        if (pad < 2)
                                out[n++] = (uint8_t) (v >> 8);
                        if (pad < 1)
                                out[n++] = (uint8_t) v;
                        if (pad > 0) {
                                /* nothing may follow the padding but line breaks */
                                for (i++; i < len; i++)
                                        if (in[i] != '\r' && in[i] != '\n')
                                                return -EINVAL;
                                *ret_len = n;
                                return 0;
                        }
                        v = 0;
                        k = 0;
                }
        }
        if (k != 0)
                return -EINVAL;
        *ret_len = n;
        return 0;
}

int ws_accept_key(const char *key, char ret[static WS_ACCEPT_LEN + 1]) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int ok;

        if (!ctx)
                return -ENOMEM;
        ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) && EVP_DigestUpdate(ctx, key, strlen(key)) &&
             EVP_DigestUpdate(ctx, WS_GUID, strlen(WS_GUID)) && EVP_DigestFinal_ex(ctx, md, &md_len);
        EVP_MD_CTX_free(ctx);
        if (!ok || md_len != 20)
                return -EIO;
        ret[ws_base64_encode(md, md_len, ret)] = '\0';
        return 0;
}

static const WsProtocol exec_protocols[] = {
        { "", 1, false },
        { "channel.k8s.io", 1, false },
        { "base64.channel.k8s.io", 1, true },
        { "v4.channel.k8s.io", 4, false },
        { "v4.base64.channel.k8s.io", 4, true },
        { "v5.channel.k8s.io", 5, false },
};

static const WsProtocol pf_protocols[] = {
        { "", 1, false },
        { "v4.channel.k8s.io", 4, false },
        { "v4.base64.channel.k8s.io", 4, true },
};

const WsProtocol *ws_negotiate(const char *offered, bool portforward) {
        const WsProtocol *table = portforward ? pf_protocols : exec_protocols;
        size_t n_table = portforward ? ELEMENTSOF(pf_protocols) : ELEMENTSOF(exec_protocols);
        bool any = false;

        /* golang.org/x/net/websocket splits the header on commas and trims blanks; kubelet's handshake
         * then takes the first of the client's it knows (exact, case-sensitive match). */
        for (const char *p = offered ?: ""; *p;) {
                size_t n;
                p += strspn(p, " \t,");
                n = strcspn(p, ",");
                while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                        n--;
                if (n == 0)
                        break;
                any = true;
                for (size_t i = 1; i < n_table; i++)
                        if (strlen(table[i].name) == n && memcmp(table[i].name, p, n) == 0)
                                return &table[i];
                p += n;
        }
        return any ? NULL : &table[0];
}

bool ws_channel_decode(bool base64, bool text, const uint8_t *msg, size_t len, uint8_t *ret_channel, uint8_t *out,
                       size_t *ret_len) {
        if (len == 0)
                return false;
        if (!base64) {
                *ret_channel = msg[0];
                memcpy(out, msg + 1, len - 1);
                *ret_len = len - 1;
                return true;
        }
        /* kubelet subtracts '0' from whatever came: only digits name a channel here. */
        if (msg[0] < '0' || msg[0] > '9')
                return false;
        *ret_channel = (uint8_t) (msg[0] - '0');
        return ws_base64_decode((const char *) msg + 1, len - 1, out, ret_len) >= 0;
}

/* --- the session --------------------------------------------------------------------------------- */

struct WsSession {
        wslay_event_context_ptr ctx;
        const WsProtocol *proto;
        WsCallbacks callbacks;
        void *userdata;
        size_t max_output;
        const uint8_t *in; /* what ws_session_recv() was given and wslay has not read yet */
        size_t in_len;
        Buffer out;
        int error; /* a callback's, or -ENOMEM */
        bool close_sent;
        uint8_t *scratch; /* a decoded message */
        size_t scratch_size;
};

static ssize_t recv_callback(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *userdata) {
        WsSession *s = userdata;
        size_t n = MIN(len, s->in_len);

        if (n == 0) {
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
        }
        memcpy(buf, s->in, n);
        s->in += n;
        s->in_len -= n;
        return (ssize_t) n;
}

static ssize_t send_callback(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *userdata) {
        WsSession *s = userdata;

        if (buffer_append(&s->out, data, len) < 0) {
                s->error = -ENOMEM;
                wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
                return -1;
        }
        return (ssize_t) len;
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *userdata) {
        WsSession *s = userdata;
        uint8_t channel;
        size_t len;
        int r = 0;

        if (s->error < 0 || (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME))
                return; /* control frames: wslay answers pings and closes itself */
        if (s->proto->version >= 5 && arg->opcode == WSLAY_BINARY_FRAME && arg->msg_length >= 1 &&
            arg->msg[0] == WS_CLOSE_CHANNEL) {
                if (arg->msg_length == 2 && s->callbacks.on_channel_close)
                        r = s->callbacks.on_channel_close(s, arg->msg[1], s->userdata);
                goto out;
        }
        if (arg->msg_length > s->scratch_size) {
                uint8_t *p = realloc(s->scratch, arg->msg_length);
                if (!p) {
                        r = -ENOMEM;
                        goto out;
                }
                s->scratch = p;
                s->scratch_size = arg->msg_length;
        }
        if (!ws_channel_decode(s->proto->base64, arg->opcode == WSLAY_TEXT_FRAME, arg->msg, arg->msg_length, &channel,
                               s->scratch, &len))
                return;
        if (s->callbacks.on_message)
                r = s->callbacks.on_message(s, channel, s->scratch, len, s->userdata);
out:
        if (r < 0 && s->error == 0) {
                s->error = r;
                wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        }
}

int ws_session_new(WsSession **ret, const WsProtocol *proto, const WsCallbacks *callbacks, size_t max_message,
                   size_t max_output, void *userdata) {
        static const struct wslay_event_callbacks wcb = {
                .recv_callback = recv_callback,
                .send_callback = send_callback,
                .on_msg_recv_callback = on_msg_recv,
        };
        WsSession *s = calloc(1, sizeof *s);

        if (!s)
                return -ENOMEM;
        s->proto = proto;
        s->callbacks = *callbacks;
        s->userdata = userdata;
        s->max_output = max_output ?: WS_DEFAULT_MAX_OUTPUT;
        if (wslay_event_context_server_init(&s->ctx, &wcb, s) != 0) {
                free(s);
                return -ENOMEM;
        }
        wslay_event_config_set_max_recv_msg_length(s->ctx, max_message ?: WS_DEFAULT_MAX_MESSAGE);
        *ret = s;
        return 0;
}

WsSession *ws_session_free(WsSession *s) {
        if (!s)
                return NULL;
        wslay_event_context_free(s->ctx);
        buffer_free(&s->out);
        free(s->scratch);
        free(s);
        return NULL;
}

/* Moves what wslay queued (our messages, its pongs and close replies) into the output buffer. */
static int flush(WsSession *s) {
        if (wslay_event_want_write(s->ctx) && wslay_event_send(s->ctx) < 0)
                return s->error ?: -EIO;
        return 0;
}

int ws_session_recv(WsSession *s, const uint8_t *buf, size_t len) {
        int r;

        if (s->error < 0)
                return s->error;
        s->in = buf;
        s->in_len = len;
        while (s->in_len > 0 && wslay_event_get_read_enabled(s->ctx)) {
                r = wslay_event_recv(s->ctx);
                if (r < 0) {
                        if (s->error == 0)
                                s->error = r == WSLAY_ERR_NOMEM ? -ENOMEM : -EPROTO;
                        break;
                }
        }
        s->in = NULL;
        s->in_len = 0;
        r = flush(s);
        if (s->error < 0)
                return s->error;
        if (r < 0)
                return s->error = r;
        /* wslay answers every ping with a pong on its own, past our submit limit: a client that pings
         * and never reads would grow the queue without end. Past the limit, it is dropped. */
        if (buffer_len(&s->out) > s->max_output)
                return s->error = -ENOBUFS;
        /* A framing error of the peer: wslay queued its close (1002, 1009...) and reads no more. */
        if (!wslay_event_get_read_enabled(s->ctx) && !wslay_event_get_close_received(s->ctx))
                return -EPROTO;
        return 0;
}

size_t ws_session_peek_output(WsSession *s, const uint8_t **ret) {
        *ret = buffer_peek(&s->out);
        return buffer_len(&s->out);
}

void ws_session_consume_output(WsSession *s, size_t n) {
        buffer_consume(&s->out, n);
}

size_t ws_session_queued(const WsSession *s) {
        return buffer_len(&s->out);
}

bool ws_session_want_read(const WsSession *s) {
        return s->error == 0 && wslay_event_get_read_enabled(s->ctx);
}

bool ws_session_close_sent(const WsSession *s) {
        return s->close_sent || wslay_event_get_close_sent(s->ctx);
}

int ws_session_submit(WsSession *s, uint8_t channel, const void *data, size_t len) {
        _cleanup_free_ uint8_t *msg = NULL;
        size_t n;

        if (s->error < 0)
                return s->error;
        if (ws_session_close_sent(s) || wslay_event_get_close_received(s->ctx))
                return -EPIPE;
        n = s->proto->base64 ? 1 + (len + 2) / 3 * 4 : 1 + len;
        if (buffer_len(&s->out) + n > s->max_output)
                return -ENOBUFS;
        msg = malloc(n);
        if (!msg)
                return -ENOMEM;
        if (s->proto->base64) {
                msg[0] = (uint8_t) ('0' + channel);
                (void) ws_base64_encode(data, len, (char *) msg + 1);
        } else {
                msg[0] = channel;
                if (len > 0)
                        memcpy(msg + 1, data, len);
        }
        struct wslay_event_msg m = {
                .opcode = s->proto->base64 ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
                .msg = msg,
                .msg_length = n,
        };
        if (wslay_event_queue_msg(s->ctx, &m) != 0)
                return -ENOMEM;
        return flush(s);
}

int ws_session_submit_close(WsSession *s, uint16_t status, const char *reason) {
        if (s->error < 0)
                return s->error;
        if (ws_session_close_sent(s))
                return 0;
        if (wslay_event_queue_close(s->ctx, status, (const uint8_t *) reason, reason ? strlen(reason) : 0) != 0)
                return -EPIPE;
        s->close_sent = true;
        return flush(s);
}
