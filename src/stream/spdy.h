/* SPDY/3.1 framing without I/O: bytes in through spdy_session_recv(), frames out of a bounded queue.
 *
 * The shape is nghttp2's and wslay's: the session owns no fd and no watcher. The connection that
 * owns the socket feeds whatever it read to spdy_session_recv() (any split, down to one byte at a
 * time), gets the frames back through the callbacks, queues frames with the spdy_session_submit_*()
 * calls (callbacks may call them too), and writes what spdy_session_peek_output() shows, then
 * spdy_session_consume_output() what the socket took. It arms its write watcher only while
 * spdy_session_want_write() is true, and applies back-pressure with spdy_session_queued(): stop
 * reading the producer (a container's pipe, a port-forward socket) above a high-water mark of the
 * caller's choice. The queue has a hard cap (SpdyLimits.max_output): a submit past it fails with
 * -ENOBUFS and queues nothing; an automatic reply (PING, RST_STREAM) past it makes the session
 * fail, since a peer that keeps sending but never reads must not make us buffer without bound.
 *
 * Header blocks: each direction has one zlib stream for the whole session with the SPDY/3
 * dictionary, as SPDY/3 requires (our deflate for everything we send, our inflate for everything
 * received); every received header block is inflated, even on a frame that is then refused, so that
 * the two ends never lose sync. Names and values are byte strings with lengths; a value holding
 * several values separates them with NUL, as SPDY says (spdystream joins http.Header values so).
 *
 * Flow control: none is enforced, on purpose. The only client of the streaming server is client-go
 * (kubelet, the apiserver's proxy, kubectl, crictl), which uses moby/docker spdystream; its
 * connection.go never sends WINDOW_UPDATE or SETTINGS, and drops any it receives as an "unhandled
 * frame type" (it writes each Stream.Write() as one DATA frame of up to 16 MiB whatever the window).
 * A receiver that enforced the 64 KiB initial SPDY/3.1 windows would RST its streams; a sender that
 * waited for the peer's window would stall after 64 KiB forever. So: DATA is never held back for a
 * window and never refused for overrunning one; WINDOW_UPDATE and SETTINGS are parsed, validated and
 * handed to the callbacks (on_window_update, on_settings), and can be sent with the submit calls.
 * Back-pressure comes from TCP instead: when the caller stops calling spdy_session_recv() (its output
 * queue is full, or a consumer is slow), the peer's writes block in its kernel, which is also how
 * spdystream's blocking frame handlers push back on us.
 *
 * Errors. spdy_session_recv() returns a negative errno when the session cannot go on: -EPROTO for a
 * session error of the peer (a GOAWAY with PROTOCOL_ERROR is queued; drain the output, then close),
 * -ENOBUFS (see above), -ENOMEM, or what a callback returned. Once failed, a session refuses
 * everything with the same error. Stream errors of the peer (a bad header name, DATA for a stream
 * that is not open, ...) queue a RST_STREAM, end that stream (on_stream_close) and go on.
 *
 * Limits against a hostile peer are in SpdyLimits; zeros mean the defaults below. Stricter than
 * SPDY/3.1 where it costs no client anything: a SYN_STREAM id that does not increase, is 0 or has
 * the wrong parity, and any control frame whose version is not 3, are session errors; control frame
 * types SPDY does not define (NOOP, CREDENTIAL, anything else) are skipped unread, as SPDY says.
 *
 * Not thread-safe; callbacks must not call spdy_session_recv() or free the session. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPDY_VERSION 3
#define SPDY_FRAME_HEADER_SIZE 8
#define SPDY_MAX_LENGTH 0xffffffu /* the 24-bit length field */
#define SPDY_MAX_STREAM_ID 0x7fffffffu

/* Defaults for a SpdyLimits field left 0. */
#define SPDY_DEFAULT_MAX_CONTROL_FRAME (64u * 1024)     /* a control frame's payload */
#define SPDY_DEFAULT_MAX_DATA_FRAME SPDY_MAX_LENGTH     /* a DATA frame's payload (16 MiB - 1) */
#define SPDY_DEFAULT_MAX_HEADER_BLOCK (256u * 1024)     /* one header block, inflated */
#define SPDY_DEFAULT_MAX_HEADERS 128u                   /* name/value pairs in one block */
#define SPDY_DEFAULT_MAX_STREAMS 1024u                  /* open streams, both directions */
#define SPDY_DEFAULT_MAX_OUTPUT (32u * 1024 * 1024)     /* bytes queued for the peer */

typedef enum SpdyFrameType {
        SPDY_SYN_STREAM = 1,
        SPDY_SYN_REPLY = 2,
        SPDY_RST_STREAM = 3,
        SPDY_SETTINGS = 4,
        SPDY_PING = 6,
        SPDY_GOAWAY = 7,
        SPDY_HEADERS = 8,
        SPDY_WINDOW_UPDATE = 9,
} SpdyFrameType;

/* Control frame flags, and DATA's. */
#define SPDY_FLAG_FIN 0x01
#define SPDY_FLAG_UNIDIRECTIONAL 0x02          /* SYN_STREAM */
#define SPDY_FLAG_SETTINGS_CLEAR 0x01          /* SETTINGS */

typedef enum SpdyRstStatus {
        SPDY_RST_PROTOCOL_ERROR = 1,
        SPDY_RST_INVALID_STREAM = 2,
        SPDY_RST_REFUSED_STREAM = 3,
        SPDY_RST_UNSUPPORTED_VERSION = 4,
        SPDY_RST_CANCEL = 5,
        SPDY_RST_INTERNAL_ERROR = 6,
        SPDY_RST_FLOW_CONTROL_ERROR = 7,
        SPDY_RST_STREAM_IN_USE = 8,
        SPDY_RST_STREAM_ALREADY_CLOSED = 9,
        SPDY_RST_FRAME_TOO_LARGE = 11,
} SpdyRstStatus;

typedef enum SpdyGoawayStatus {
        SPDY_GOAWAY_OK = 0,
        SPDY_GOAWAY_PROTOCOL_ERROR = 1,
        SPDY_GOAWAY_INTERNAL_ERROR = 2,
} SpdyGoawayStatus;

typedef enum SpdySettingId {
        SPDY_SETTINGS_UPLOAD_BANDWIDTH = 1,
        SPDY_SETTINGS_DOWNLOAD_BANDWIDTH = 2,
        SPDY_SETTINGS_ROUND_TRIP_TIME = 3,
        SPDY_SETTINGS_MAX_CONCURRENT_STREAMS = 4,
        SPDY_SETTINGS_CURRENT_CWND = 5,
        SPDY_SETTINGS_DOWNLOAD_RETRANS_RATE = 6,
        SPDY_SETTINGS_INITIAL_WINDOW_SIZE = 7,
        SPDY_SETTINGS_CLIENT_CERTIFICATE_VECTOR_SIZE = 8,
} SpdySettingId;

typedef struct SpdyHeader {
        const char *name; /* lowercase, non-empty, not NUL-terminated */
        size_t name_len;
        const char *value; /* may be empty; several values are NUL-separated */
        size_t value_len;
} SpdyHeader;

typedef struct SpdySetting {
        uint8_t flags; /* FLAG_SETTINGS_PERSIST_VALUE 0x1, FLAG_SETTINGS_PERSISTED 0x2 */
        uint32_t id;   /* 24 bits */
        uint32_t value;
} SpdySetting;

typedef struct SpdySession SpdySession;

/* Every callback may be NULL. Header arrays and data point into the session's buffers and are valid
 * only during the call. A negative return makes spdy_session_recv() fail with it (the session is then
 * dead; nothing is queued for it). */
typedef struct SpdyCallbacks {
        /* A new stream from the peer. The stream is open: answer with spdy_session_submit_syn_reply()
         * (or refuse it with spdy_session_submit_rst_stream()). unidirectional: we may not send on it. */
        int (*on_syn_stream)(SpdySession *s, uint32_t stream_id, uint32_t associated_id, uint8_t priority,
                             const SpdyHeader *headers, size_t n_headers, bool fin, bool unidirectional,
                             void *userdata);
        /* The peer's answer on a stream we opened. */
        int (*on_syn_reply)(SpdySession *s, uint32_t stream_id, const SpdyHeader *headers, size_t n_headers,
                            bool fin, void *userdata);
        int (*on_headers)(SpdySession *s, uint32_t stream_id, const SpdyHeader *headers, size_t n_headers,
                          bool fin, void *userdata);
        /* DATA comes in chunks as it arrives, not as whole frames: fin is set on the last chunk of a
         * frame with FIN (which may be empty). */
        int (*on_data)(SpdySession *s, uint32_t stream_id, const uint8_t *data, size_t len, bool fin,
                       void *userdata);
        /* The peer reset an open stream (on_stream_close follows). */
        int (*on_rst_stream)(SpdySession *s, uint32_t stream_id, uint32_t status, void *userdata);
        /* reply: the answer to one of our spdy_session_submit_ping(); otherwise the peer's ping,
         * already answered. */
        int (*on_ping)(SpdySession *s, uint32_t id, bool reply, void *userdata);
        /* No new streams after this: submit_syn_stream fails with -ESHUTDOWN. */
        int (*on_goaway)(SpdySession *s, uint32_t last_good_id, uint32_t status, void *userdata);
        /* stream_id 0: the SPDY/3.1 session window. Informational only (see the top of this file). */
        int (*on_window_update)(SpdySession *s, uint32_t stream_id, uint32_t delta, void *userdata);
        int (*on_settings)(SpdySession *s, const SpdySetting *settings, size_t n_settings, bool clear,
                           void *userdata);
        /* A stream the session knew is gone: both sides sent FIN (status 0), or a RST_STREAM went
         * either way (its status), or a GOAWAY said the peer never processed it (REFUSED_STREAM). The
         * place to free what spdy_stream_set_user_data() holds. spdy_session_free() calls nothing:
         * streams still open then are the caller's to clean up. */
        void (*on_stream_close)(SpdySession *s, uint32_t stream_id, uint32_t status, void *userdata);
} SpdyCallbacks;

typedef struct SpdyLimits {
        uint32_t max_control_frame;
        uint32_t max_data_frame;
        size_t max_header_block;
        size_t max_headers;
        size_t max_streams; /* peer streams past it get RST_STREAM REFUSED_STREAM */
        size_t max_output;
} SpdyLimits;

/* server: the side that accepted the connection; its streams get even ids, the client's odd ones.
 * limits may be NULL (all defaults). */
int spdy_session_new(SpdySession **ret, bool server, const SpdyCallbacks *callbacks, const SpdyLimits *limits,
                     void *userdata);
SpdySession *spdy_session_free(SpdySession *s);

/* Consumes all of buf (>= 0) or fails (< 0, see the top of the file). */
int spdy_session_recv(SpdySession *s, const uint8_t *buf, size_t len);

/* The output queue. */
size_t spdy_session_peek_output(SpdySession *s, const uint8_t **ret);
void spdy_session_consume_output(SpdySession *s, size_t n);
size_t spdy_session_queued(const SpdySession *s);
static inline bool spdy_session_want_write(const SpdySession *s) {
        return spdy_session_queued(s) > 0;
}

/* Whether it makes sense to go on: false once the session failed, or once a GOAWAY went either way
 * and no stream is left open. The caller closes after draining the output. */
bool spdy_session_want_read(const SpdySession *s);
size_t spdy_session_n_streams(const SpdySession *s);

/* Submissions. All return 0 or a negative errno, and queue nothing on failure: -EINVAL (bad
 * arguments: an id 0 or above 2^31-1, a header name that is empty or not lowercase, a priority
 * above 7), -ENOENT (no such open stream), -EPIPE (we already sent FIN on it, or it is a peer's
 * unidirectional stream), -EPROTO (DATA or HEADERS on a peer's stream before our SYN_REPLY, a second
 * SYN_REPLY), -ESHUTDOWN (a new stream after GOAWAY either way), -EMFILE (max_streams open),
 * -E2BIG (a header block above the frame limit), -ENOBUFS (the output queue is full), or the error
 * the session failed with. Data and headers are copied. */
int spdy_session_submit_syn_stream(SpdySession *s, uint32_t associated_id, uint8_t priority,
                                   const SpdyHeader *headers, size_t n_headers, uint8_t flags, uint32_t *ret_stream_id);
int spdy_session_submit_syn_reply(SpdySession *s, uint32_t stream_id, const SpdyHeader *headers, size_t n_headers,
                                  bool fin);
int spdy_session_submit_headers(SpdySession *s, uint32_t stream_id, const SpdyHeader *headers, size_t n_headers,
                                bool fin);
/* Split into frames of at most SPDY_MAX_LENGTH; len 0 with fin sends an empty FIN frame. */
int spdy_session_submit_data(SpdySession *s, uint32_t stream_id, const void *data, size_t len, bool fin);
/* Ends the stream (on_stream_close) if it is open; sent even if it is not. */
int spdy_session_submit_rst_stream(SpdySession *s, uint32_t stream_id, uint32_t status);
/* A new ping with an id of our parity; the peer's answer comes to on_ping with reply set. */
int spdy_session_submit_ping(SpdySession *s, uint32_t *ret_id);
/* Last-Good-Stream-ID is the highest peer stream id we accepted; peer SYN_STREAMs after it are
 * ignored (their header blocks still inflated). */
int spdy_session_submit_goaway(SpdySession *s, uint32_t status);
int spdy_session_submit_window_update(SpdySession *s, uint32_t stream_id, uint32_t delta);
int spdy_session_submit_settings(SpdySession *s, uint8_t flags, const SpdySetting *settings, size_t n_settings);

/* Per-stream data for the caller, on open streams only (-ENOENT otherwise). */
int spdy_stream_set_user_data(SpdySession *s, uint32_t stream_id, void *data);
void *spdy_stream_get_user_data(SpdySession *s, uint32_t stream_id);

/* The first header named name (lowercase), or NULL. */
const SpdyHeader *spdy_header_find(const SpdyHeader *headers, size_t n_headers, const char *name);

const char *spdy_rst_status_to_string(uint32_t status);
