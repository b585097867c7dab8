/* WebSocket (RFC 6455) for the streaming server: the handshake's pure parts (the accept key, the
 * subprotocol choice) and a session of Kubernetes channel messages over libwslay, without I/O.
 *
 * The shape is spdy.h's: the session owns no fd and no watcher. The connection feeds what it read to
 * ws_session_recv(), gets whole messages back through the callbacks, queues messages with
 * ws_session_submit() (frames are in the output queue on return), writes what
 * ws_session_peek_output() shows and ws_session_consume_output() what the socket took.
 *
 * The channel protocols are kubelet's (k8s.io/apimachinery wsstream, remotecommand, portforward):
 * each data message starts with its channel, one byte in binary frames, or one ASCII digit in the
 * text frames of the base64 protocols, whose payload is then standard base64. v5.channel.k8s.io adds
 * the close signal: a binary message [255, channel] half-closes that channel. A message of the
 * peer's that is empty, names no channel or does not decode is dropped, as kubelet drops it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 */
#define WS_CLOSE_CHANNEL 255
#define WS_DEFAULT_MAX_MESSAGE (4u * 1024 * 1024)
#define WS_DEFAULT_MAX_OUTPUT (32u * 1024 * 1024)

typedef struct WsProtocol {
        const char *name; /* "" when the client offered none */
        int version;      /* 1 (channel.k8s.io and base64), 4 or 5 */
        bool base64;
} WsProtocol;

/* Sec-WebSocket-Accept for key (the client's Sec-WebSocket-Key, surrounding blanks trimmed by the
 * caller): base64(SHA-1(key + the RFC 6455 GUID)). */
int ws_accept_key(const char *key, char ret[static WS_ACCEPT_LEN + 1]);

/* The subprotocol for what the client offered (the values of every Sec-WebSocket-Protocol header,
 * comma-separated), as kubelet chooses: the client's first offer the server knows, or "" (binary
 * channels, v1) when the client offered nothing. portforward: the port-forward list ("",
 * v4.channel.k8s.io, v4.base64.channel.k8s.io), otherwise the exec/attach one (also
 * channel.k8s.io, base64.channel.k8s.io and v5.channel.k8s.io). NULL: nothing in common. */
const WsProtocol *ws_negotiate(const char *offered, bool portforward);

/* Standard base64 with padding. encode writes 4*ceil(len/3) bytes and returns that; decode returns
 * the decoded length (at most 3*len/4) or -EINVAL. */
size_t ws_base64_encode(const uint8_t *in, size_t len, char *out);
int ws_base64_decode(const char *in, size_t len, uint8_t *out, size_t *ret_len);

/* One message from the peer: the channel (its first byte or digit) and the rest (decoded). false:
 * not a channel message (empty, a bad digit, bad base64), to be dropped. out must hold len bytes. */
bool ws_channel_decode(bool base64, bool text, const uint8_t *msg, size_t len, uint8_t *ret_channel, uint8_t *out,
                       size_t *ret_len);

typedef struct WsSession WsSession;

typedef struct WsCallbacks {
        /* A data message on channel. A negative return makes ws_session_recv() fail with it. */
        int (*on_message)(WsSession *s, uint8_t channel, const uint8_t *data, size_t len, void *userdata);
        /* v5: the peer closed its side of channel. */
        int (*on_channel_close)(WsSession *s, uint8_t channel, void *userdata);
} WsCallbacks;

/* max_message, max_output: 0 for the defaults above. */
int ws_session_new(WsSession **ret, const WsProtocol *proto, const WsCallbacks *callbacks, size_t max_message,
                   size_t max_output, void *userdata);
WsSession *ws_session_free(WsSession *s);

/* Consumes all of buf, or fails: -EPROTO (the peer broke the framing; a close frame is queued:
 * drain, then close), -ENOMEM, or a callback's error. */
int ws_session_recv(WsSession *s, const uint8_t *buf, size_t len);

size_t ws_session_peek_output(WsSession *s, const uint8_t **ret);
void ws_session_consume_output(WsSession *s, size_t n);
size_t ws_session_queued(const WsSession *s);
static inline bool ws_session_want_write(const WsSession *s) {
        return ws_session_queued(s) > 0;
}
/* False once the peer's close frame came (it is answered), or the session failed. */
bool ws_session_want_read(const WsSession *s);
/* Our close frame is queued. */
bool ws_session_close_sent(const WsSession *s);

/* A message on channel, framed as the protocol says (binary, or text with base64). -ENOBUFS past
 * max_output (nothing queued), -EPIPE after our close, -ENOMEM. */
int ws_session_submit(WsSession *s, uint8_t channel, const void *data, size_t len);
/* The close frame (1000 normal closure, ...); nothing may follow it. */
int ws_session_submit_close(WsSession *s, uint16_t status, const char *reason);
