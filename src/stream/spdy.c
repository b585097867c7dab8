/* SPDY/3.1 framing without I/O: the frame parser, the header block codec and the stream table. */
#include "spdy.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "buffer.h"
#include "macro.h"

/* The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1), 1423 bytes. */
static const uint8_t spdy_dictionary[] = {
        0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69,
        0x6f, 0x6e, 0x73, 0x00, 0x00, 0x00, 0x04, 0x68,
        0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70,
        0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x03, 0x70,
        0x75, 0x74, 0x00, 0x00, 0x00, 0x06, 0x64, 0x65,
        0x6c, 0x65, 0x74, 0x65, 0x00, 0x00, 0x00, 0x05,
        0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00,
        0x06, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x00,
        0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70,
        0x74, 0x2d, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65,
        0x74, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63,
        0x65, 0x70, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f,
        0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f,
        0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x6c,
        0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00,
        0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70,
        0x74, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x73,
        0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00,
        0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c, 0x6f, 0x77,
        0x00, 0x00, 0x00, 0x0d, 0x61, 0x75, 0x74, 0x68,
        0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f,
        0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63,
        0x68, 0x65, 0x2d, 0x63, 0x6f, 0x6e, 0x74, 0x72,
        0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f,
        0x6e, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e,
        0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74,
        0x65, 0x6e, 0x74, 0x2d, 0x62, 0x61, 0x73, 0x65,
        0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74,
        0x65, 0x6e, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f,
        0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10,
        0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d,
        0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65,
        0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74,
        0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65, 0x6e, 0x67,
        0x74, 0x68, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f,
        0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x6f,
        0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00,
        0x00, 0x0b, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
        0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00,
        0x0d, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74,
        0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00,
        0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
        0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00,
        0x00, 0x04, 0x64, 0x61, 0x74, 0x65, 0x00, 0x00,
        0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00,
        0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74,
        0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x70, 0x69,
        0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66,
        0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00, 0x04, 0x68,
        0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x08, 0x69,
        0x66, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00,
        0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f,
        0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73,
        0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d,
        0x69, 0x66, 0x2d, 0x6e, 0x6f, 0x6e, 0x65, 0x2d,
        0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00,
        0x08, 0x69, 0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67,
        0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d,
        0x75, 0x6e, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69,
        0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65,
        0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74,
        0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65,
        0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63,
        0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00,
        0x0c, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x6f, 0x72,
        0x77, 0x61, 0x72, 0x64, 0x73, 0x00, 0x00, 0x00,
        0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00,
        0x00, 0x00, 0x12, 0x70, 0x72, 0x6f, 0x78, 0x79,
        0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74,
        0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00,
        0x13, 0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61,
        0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61,
        0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05,
        0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00,
        0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72,
        0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72,
        0x79, 0x2d, 0x61, 0x66, 0x74, 0x65, 0x72, 0x00,
        0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65,
        0x72, 0x00, 0x00, 0x00, 0x02, 0x74, 0x65, 0x00,
        0x00, 0x00, 0x07, 0x74, 0x72, 0x61, 0x69, 0x6c,
        0x65, 0x72, 0x00, 0x00, 0x00, 0x11, 0x74, 0x72,
        0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65,
        0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00,
        0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61,
        0x64, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x75, 0x73,
        0x65, 0x72, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74,
        0x00, 0x00, 0x00, 0x04, 0x76, 0x61, 0x72, 0x79,
        0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00,
        0x00, 0x00, 0x07, 0x77, 0x61, 0x72, 0x6e, 0x69,
        0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77,
        0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e,
        0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00,
        0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64,
        0x00, 0x00, 0x00, 0x03, 0x67, 0x65, 0x74, 0x00,
        0x00, 0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75,
        0x73, 0x00, 0x00, 0x00, 0x06, 0x32, 0x30, 0x30,
        0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76,
        0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x00, 0x00,
        0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31,
        0x2e, 0x31, 0x00, 0x00, 0x00, 0x03, 0x75, 0x72,
        0x6c, 0x00, 0x00, 0x00, 0x06, 0x70, 0x75, 0x62,
        0x6c, 0x69, 0x63, 0x00, 0x00, 0x00, 0x0a, 0x73,
        0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69,
        0x65, 0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x65,
        0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00,
        0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69,
        0x6e, 0x31, 0x30, 0x30, 0x31, 0x30, 0x31, 0x32,
        0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35,
        0x32, 0x30, 0x36, 0x33, 0x30, 0x30, 0x33, 0x30,
        0x32, 0x33, 0x30, 0x33, 0x33, 0x30, 0x34, 0x33,
        0x30, 0x35, 0x33, 0x30, 0x36, 0x33, 0x30, 0x37,
        0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30,
        0x36, 0x34, 0x30, 0x37, 0x34, 0x30, 0x38, 0x34,
        0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31,
        0x34, 0x31, 0x32, 0x34, 0x31, 0x33, 0x34, 0x31,
        0x34, 0x34, 0x31, 0x35, 0x34, 0x31, 0x36, 0x34,
        0x31, 0x37, 0x35, 0x30, 0x32, 0x35, 0x30, 0x34,
        0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e,
        0x6f, 0x6e, 0x2d, 0x41, 0x75, 0x74, 0x68, 0x6f,
        0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65,
        0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61,
        0x74, 0x69, 0x6f, 0x6e, 0x32, 0x30, 0x34, 0x20,
        0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65,
        0x6e, 0x74, 0x33, 0x30, 0x31, 0x20, 0x4d, 0x6f,
        0x76, 0x65, 0x64, 0x20, 0x50, 0x65, 0x72, 0x6d,
        0x61, 0x6e, 0x65, 0x6e, 0x74, 0x6c, 0x79, 0x34,
        0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52,
        0x65, 0x71, 0x75, 0x65, 0x73, 0x74, 0x34, 0x30,
        0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68,
        0x6f, 0x72, 0x69, 0x7a, 0x65, 0x64, 0x34, 0x30,
        0x33, 0x20, 0x46, 0x6f, 0x72, 0x62, 0x69, 0x64,
        0x64, 0x65, 0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e,
        0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64,
        0x35, 0x30, 0x30, 0x20, 0x49, 0x6e, 0x74, 0x65,
        0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72,
        0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f,
        0x72, 0x35, 0x30, 0x31, 0x20, 0x4e, 0x6f, 0x74,
        0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65,
        0x6e, 0x74, 0x65, 0x64, 0x35, 0x30, 0x33, 0x20,
        0x53, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x20,
        0x55, 0x6e, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61,
        0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46,
        0x65, 0x62, 0x20, 0x4d, 0x61, 0x72, 0x20, 0x41,
        0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a,
        0x75, 0x6e, 0x20, 0x4a, 0x75, 0x6c, 0x20, 0x41,
        0x75, 0x67, 0x20, 0x53, 0x65, 0x70, 0x74, 0x20,
        0x4f, 0x63, 0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20,
        0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30,
        0x30, 0x3a, 0x30, 0x30, 0x20, 0x4d, 0x6f, 0x6e,
        0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57,
        0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c,
        0x20, 0x46, 0x72, 0x69, 0x2c, 0x20, 0x53, 0x61,
        0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20,
        0x47, 0x4d, 0x54, 0x63, 0x68, 0x75, 0x6e, 0x6b,
        0x65, 0x64, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f,
        0x68, 0x74, 0x6d, 0x6c, 0x2c, 0x69, 0x6d, 0x61,
        0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69,
        0x6d, 0x61, 0x67, 0x65, 0x2f, 0x6a, 0x70, 0x67,
        0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67,
        0x69, 0x66, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
        0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78,
        0x6d, 0x6c, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
        0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78,
        0x68, 0x74, 0x6d, 0x6c, 0x2b, 0x78, 0x6d, 0x6c,
        0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c,
        0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74,
        0x2f, 0x6a, 0x61, 0x76, 0x61, 0x73, 0x63, 0x72,
        0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c,
        0x69, 0x63, 0x70, 0x72, 0x69, 0x76, 0x61, 0x74,
        0x65, 0x6d, 0x61, 0x78, 0x2d, 0x61, 0x67, 0x65,
        0x3d, 0x67, 0x7a, 0x69, 0x70, 0x2c, 0x64, 0x65,
        0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64,
        0x63, 0x68, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65,
        0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63,
        0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x69,
        0x73, 0x6f, 0x2d, 0x38, 0x38, 0x35, 0x39, 0x2d,
        0x31, 0x2c, 0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a,
        0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e,
};

/* Our deflate stream is small on purpose (a 2 KiB window still holds the whole dictionary, and
 * about 16 KiB of state instead of 256 KiB per session); any inflater reads it. The peer's stream
 * may use any window, so our inflate has the full 32 KiB. */
#define DEFLATE_WINDOW_BITS 11
#define DEFLATE_MEM_LEVEL 4

typedef struct SpdyStream {
        uint32_t id;
        bool local_closed;  /* we sent FIN (or may not send: the peer's unidirectional stream) */
        bool remote_closed; /* the peer sent FIN (or may not send: our unidirectional stream) */
        bool replied;       /* SYN_REPLY sent (the peer's stream) or received (ours) */
        void *user_data;
} SpdyStream;

typedef enum RecvState {
        RECV_HEAD,    /* the 8-byte frame header */
        RECV_CONTROL, /* a known control frame's payload, gathered whole */
        RECV_DATA,    /* a DATA payload, handed on as it comes */
        RECV_SKIP,    /* a payload to drop: unknown control type, DATA for a dead stream */
} RecvState;

struct SpdySession {
        bool server;
        SpdyCallbacks cb;
        SpdyLimits limits;
        void *userdata;

        z_stream deflate, inflate;
        bool deflate_ready, inflate_ready;

        Buffer out;

        RecvState state;
        uint8_t head[SPDY_FRAME_HEADER_SIZE];
        size_t head_len;
        uint16_t type;        /* control frame type */
        uint8_t flags;
        uint32_t remaining;   /* payload bytes still to come */
        Buffer payload;       /* RECV_CONTROL */
        uint32_t data_stream; /* RECV_DATA */

        uint8_t *block; /* inflated header block */
        size_t block_size;
        SpdyHeader *headers;
        size_t headers_size;

        SpdyStream *streams;
        size_t n_streams, streams_size;

        uint32_t next_stream_id;      /* ours */
        uint32_t last_peer_stream_id; /* the highest the peer opened */
        uint32_t next_ping_id;
        bool goaway_sent, goaway_received;
        bool in_recv;
        int error; /* < 0 once failed */
};

static uint32_t get32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
        return p + 4;
}

static bool is_ours(const SpdySession *s, uint32_t id) {
        /* The server's streams and pings are even, the client's odd. */
        return (id % 2 == 0) == s->server;
}

/* --- streams ------------------------------------------------------------------------------------ */

static SpdyStream *stream_find(SpdySession *s, uint32_t id) {
        for (size_t i = 0; i < s->n_streams; i++)
                if (s->streams[i].id == id)
                        return s->streams + i;
        return NULL;
}

/* Whether id names a stream that existed once (and so may still have frames in flight). */
static bool stream_was_opened(const SpdySession *s, uint32_t id) {
        if (is_ours(s, id))
                return id < s->next_stream_id;
        return id <= s->last_peer_stream_id;
}

static int streams_reserve(SpdySession *s) {
        if (s->n_streams < s->streams_size)
                return 0;
        size_t n = s->streams_size ? s->streams_size * 2 : 8;
        SpdyStream *p = reallocarray(s->streams, n, sizeof *p);
        if (!p)
                return -ENOMEM;
        s->streams = p;
        s->streams_size = n;
        return 0;
}

static SpdyStream *stream_add(SpdySession *s, uint32_t id) {
        assert(s->n_streams < s->streams_size);
        SpdyStream *st = s->streams + s->n_streams++;
        *st = (SpdyStream) { .id = id };
        return st;
}

/* Forgets the stream, then tells the caller. st is invalid afterwards. */
static void stream_close(SpdySession *s, SpdyStream *st, uint32_t status) {
        uint32_t id = st->id;
        size_t i = (size_t) (st - s->streams);

        s->streams[i] = s->streams[--s->n_streams];
        if (s->cb.on_stream_close)
                s->cb.on_stream_close(s, id, status, s->userdata);
}

static void stream_close_if_done(SpdySession *s, uint32_t id) {
        SpdyStream *st = stream_find(s, id);
        if (st && st->local_closed && st->remote_closed)
                stream_close(s, st, 0);
}

/* --- output ------------------------------------------------------------------------------------- */

size_t spdy_session_queued(const SpdySession *s) {
        return buffer_len(&s->out);
}

size_t spdy_session_peek_output(SpdySession *s, const uint8_t **ret) {
        *ret = buffer_peek(&s->out);
        return buffer_len(&s->out);
}

void spdy_session_consume_output(SpdySession *s, size_t n) {
        assert(n <= buffer_len(&s->out));
        buffer_consume(&s->out, n);
}

static bool out_fits(const SpdySession *s, size_t n) {
        return n <= s->limits.max_output && buffer_len(&s->out) <= s->limits.max_output - n;
}

static uint8_t *put_control_header(uint8_t *p, uint16_t type, uint8_t flags, uint32_t len) {
        p[0] = 0x80;
        p[1] = SPDY_VERSION;
        p[2] = type >> 8;
        p[3] = type;
        return put32(p + 4, (uint32_t) flags << 24 | len);
}

/* A control frame without a header block. force: past max_output (the GOAWAY of a failing session). */
static int queue_control(SpdySession *s, uint16_t type, uint8_t flags, const uint8_t *payload, uint32_t len,
                         bool force) {
        if (!force && !out_fits(s, SPDY_FRAME_HEADER_SIZE + (size_t) len))
                return -ENOBUFS;
        uint8_t *p = buffer_reserve(&s->out, SPDY_FRAME_HEADER_SIZE + (size_t) len);
        if (!p)
                return -ENOMEM;
        put_control_header(p, type, flags, len);
        if (len > 0)
                memcpy(p + SPDY_FRAME_HEADER_SIZE, payload, len);
        buffer_commit(&s->out, SPDY_FRAME_HEADER_SIZE + (size_t) len);
        return 0;
}

static int queue_rst(SpdySession *s, uint32_t id, uint32_t status) {
        uint8_t p[8];
        put32(p, id & SPDY_MAX_STREAM_ID);
        put32(p + 4, status);
        return queue_control(s, SPDY_RST_STREAM, 0, p, sizeof p, false);
}

static bool header_name_ok(const char *name, size_t len) {
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (name[i] == '\0' || (name[i] >= 'A' && name[i] <= 'Z'))
                        return false;
        return true;
}

/* Queues a SYN_STREAM, SYN_REPLY or HEADERS: the frame header, prefix_len bytes of prefix, then the
 * header block through our deflate stream. Everything is checked before deflate sees a byte: once
 * it has, the frame must go out or the peer's inflate would lose sync. */
static int queue_headers_frame(SpdySession *s, uint16_t type, uint8_t flags, const uint8_t *prefix, size_t prefix_len,
                               const SpdyHeader *headers, size_t n_headers) {
        _cleanup_free_ uint8_t *raw = NULL;
        size_t raw_len = 4, bound, start;
        uint8_t *p;

        if (n_headers > 0 && !headers)
                return -EINVAL;
        for (size_t i = 0; i < n_headers; i++) {
                if (!header_name_ok(headers[i].name, headers[i].name_len) ||
                    headers[i].name_len > UINT32_MAX || headers[i].value_len > UINT32_MAX ||
                    (headers[i].value_len > 0 && !headers[i].value))
                        return -EINVAL;
                if (headers[i].name_len + headers[i].value_len > SPDY_MAX_LENGTH)
                        return -E2BIG;
                raw_len += 8 + headers[i].name_len + headers[i].value_len;
                if (raw_len > SPDY_MAX_LENGTH)
                        return -E2BIG;
        }

        /* Deflate never makes more than stored blocks (5 bytes per block of at least 4 KiB at our
         * memLevel), plus the zlib header with the dictionary id and the sync flush marker. */
        bound = raw_len + raw_len / 8 + 64;
        if (prefix_len + bound > SPDY_MAX_LENGTH)
                return -E2BIG;
        if (!out_fits(s, SPDY_FRAME_HEADER_SIZE + prefix_len + bound))
                return -ENOBUFS;

        raw = malloc(raw_len);
        if (!raw)
                return -ENOMEM;
        p = put32(raw, (uint32_t) n_headers);
        for (size_t i = 0; i < n_headers; i++) {
                p = put32(p, (uint32_t) headers[i].name_len);
                memcpy(p, headers[i].name, headers[i].name_len);
                p += headers[i].name_len;
                p = put32(p, (uint32_t) headers[i].value_len);
                if (headers[i].value_len > 0)
                        memcpy(p, headers[i].value, headers[i].value_len);
                p += headers[i].value_len;
        }

        p = buffer_reserve(&s->out, SPDY_FRAME_HEADER_SIZE + prefix_len + bound);
        if (!p)
                return -ENOMEM;
        start = s->out.end;
        memcpy(p + SPDY_FRAME_HEADER_SIZE, prefix, prefix_len);

        s->deflate.next_in = raw;
        s->deflate.avail_in = (uInt) raw_len;
        s->deflate.next_out = p + SPDY_FRAME_HEADER_SIZE + prefix_len;
        s->deflate.avail_out = (uInt) bound;
        int z = deflate(&s->deflate, Z_SYNC_FLUSH);
        if (z != Z_OK || s->deflate.avail_in > 0 || s->deflate.avail_out == 0) {
                /* Cannot happen with the bound above; the compression state is lost either way. */
                s->error = -EIO;
                return s->error;
        }
        size_t len = prefix_len + (bound - s->deflate.avail_out);
        put_control_header(s->out.data + start, type, flags, (uint32_t) len);
        buffer_commit(&s->out, SPDY_FRAME_HEADER_SIZE + len);
        return 0;
}

/* --- input -------------------------------------------------------------------------------------- */

/* A session error of the peer: GOAWAY PROTOCOL_ERROR, and the session is done. */
static int session_error(SpdySession *s) {
        uint8_t p[8];

        if (!s->goaway_sent) {
                put32(p, s->last_peer_stream_id);
                put32(p + 4, SPDY_GOAWAY_PROTOCOL_ERROR);
                (void) queue_control(s, SPDY_GOAWAY, 0, p, sizeof p, true);
                s->goaway_sent = true;
        }
        return -EPROTO;
}

/* A stream error: RST_STREAM, and the stream ends if it was open. */
static int stream_error(SpdySession *s, uint32_t id, uint32_t status) {
        int r = queue_rst(s, id, status);
        if (r < 0)
                return r;
        SpdyStream *st = stream_find(s, id);
        if (st)
                stream_close(s, st, status);
        return 0;
}

/* Inflates one header block into s->block. Any failure is a session error: the compression
 * context is gone. */
static int inflate_block(SpdySession *s, const uint8_t *in, size_t in_len, size_t *ret_len) {
        size_t len = 0;

        s->inflate.next_in = (uint8_t *) in;
        s->inflate.avail_in = (uInt) in_len;
        for (;;) {
                if (len == s->block_size) {
                        if (s->block_size >= s->limits.max_header_block)
                                return session_error(s); /* a zlib bomb, or just too big */
                        size_t n = MIN(MAX(s->block_size * 2, (size_t) 4096), s->limits.max_header_block);
                        uint8_t *b = realloc(s->block, n);
                        if (!b)
                                return -ENOMEM;
                        s->block = b;
                        s->block_size = n;
                }
                s->inflate.next_out = s->block + len;
                s->inflate.avail_out = (uInt) (s->block_size - len);
                int z = inflate(&s->inflate, Z_SYNC_FLUSH);
                len = s->block_size - s->inflate.avail_out;
                if (z == Z_NEED_DICT) {
                        if (inflateSetDictionary(&s->inflate, spdy_dictionary, sizeof spdy_dictionary) != Z_OK)
                                return session_error(s);
                        continue;
                }
                if (z == Z_BUF_ERROR) /* no progress possible: input used up */
                        break;
                if (z != Z_OK) /* Z_STREAM_END too: the stream must last as long as the session */
                        return session_error(s);
                if (s->inflate.avail_in == 0 && s->inflate.avail_out > 0)
                        break;
        }
        if (s->inflate.avail_in > 0)
                return session_error(s);
        *ret_len = len;
        return 0;
}

/* Splits s->block into s->headers. < 0: a session error (a block that does not parse); > 0: the
 * RST_STREAM status of a stream error (a block that parses but breaks SPDY's rules); 0: fine. */
static int parse_block(SpdySession *s, size_t len, size_t *ret_n) {
        const uint8_t *p = s->block, *end = s->block + len;
        uint32_t n;

        if (len < 4)
                return session_error(s);
        n = get32(p);
        p += 4;
        /* Every pair takes at least 8 bytes: a count past that is a lie, not a big block. */
        if (n > (size_t) (end - p) / 8)
                return session_error(s);
        if (n > s->limits.max_headers)
                return SPDY_RST_PROTOCOL_ERROR;
        if (n > s->headers_size) {
                SpdyHeader *h = reallocarray(s->headers, n, sizeof *h);
                if (!h)
                        return -ENOMEM;
                s->headers = h;
                s->headers_size = n;
        }
        for (uint32_t i = 0; i < n; i++) {
                SpdyHeader *h = s->headers + i;
                uint32_t l;

                if (end - p < 4)
                        return session_error(s);
                l = get32(p);
                p += 4;
                if ((size_t) (end - p) < l)
                        return session_error(s);
                h->name = (const char *) p;
                h->name_len = l;
                p += l;
                if (end - p < 4)
                        return session_error(s);
                l = get32(p);
                p += 4;
                if ((size_t) (end - p) < l)
                        return session_error(s);
                h->value = (const char *) p;
                h->value_len = l;
                p += l;
        }
        if (p != end)
                return session_error(s);

        for (uint32_t i = 0; i < n; i++) {
                const SpdyHeader *h = s->headers + i;

                if (!header_name_ok(h->name, h->name_len))
                        return SPDY_RST_PROTOCOL_ERROR;
                /* Values: empty, or NUL-separated non-empty values. */
                if (h->value_len > 0 &&
                    (h->value[0] == '\0' || h->value[h->value_len - 1] == '\0' ||
                     memmem(h->value, h->value_len, "\0\0", 2)))
                        return SPDY_RST_PROTOCOL_ERROR;
                for (uint32_t k = 0; k < i; k++)
                        if (s->headers[k].name_len == h->name_len &&
                            memcmp(s->headers[k].name, h->name, h->name_len) == 0)
                                return SPDY_RST_PROTOCOL_ERROR; /* duplicate names */
        }
        *ret_n = n;
        return 0;
}

/* Inflates and parses the header block of the current frame. Returns < 0 on failure, else like
 * parse_block(). */
static int read_block(SpdySession *s, size_t offset, size_t *ret_n) {
        size_t len;
        int r = inflate_block(s, s->payload.data + offset, buffer_len(&s->payload) - offset, &len);
        if (r < 0)
                return r;
        return parse_block(s, len, ret_n);
}

static int on_syn_stream(SpdySession *s, const uint8_t *p, uint32_t len) {
        uint32_t id, assoc;
        uint8_t priority;
        size_t n = 0;
        bool fin = s->flags & SPDY_FLAG_FIN, unidirectional = s->flags & SPDY_FLAG_UNIDIRECTIONAL;
        int r;

        if (len < 10)
                return session_error(s);
        id = get32(p) & SPDY_MAX_STREAM_ID;
        assoc = get32(p + 4) & SPDY_MAX_STREAM_ID;
        priority = p[8] >> 5;
        r = read_block(s, 10, &n);
        if (r < 0)
                return r;
        if (id == 0 || is_ours(s, id) || id <= s->last_peer_stream_id)
                return session_error(s);
        if (s->goaway_sent)
                return 0; /* ignored, as SPDY says */
        s->last_peer_stream_id = id;
        if (r > 0)
                return stream_error(s, id, (uint32_t) r);
        if (s->n_streams >= s->limits.max_streams)
                return stream_error(s, id, SPDY_RST_REFUSED_STREAM);
        r = streams_reserve(s);
        if (r < 0)
                return r;
        SpdyStream *st = stream_add(s, id);
        st->remote_closed = fin;
        st->local_closed = unidirectional;
        if (s->cb.on_syn_stream) {
                r = s->cb.on_syn_stream(s, id, assoc, priority, s->headers, n, fin, unidirectional, s->userdata);
                if (r < 0)
                        return r;
        }
        stream_close_if_done(s, id);
        return 0;
}

/* SYN_REPLY and HEADERS. */
static int on_reply_or_headers(SpdySession *s, const uint8_t *p, uint32_t len) {
        bool fin = s->flags & SPDY_FLAG_FIN, reply = s->type == SPDY_SYN_REPLY;
        uint32_t id;
        size_t n = 0;
        int r;

        if (len < 4)
                return session_error(s);
        id = get32(p) & SPDY_MAX_STREAM_ID;
        r = read_block(s, 4, &n);
        if (r < 0)
                return r;
        if (id == 0)
                return session_error(s);

        SpdyStream *st = stream_find(s, id);
        if (!st)
                /* Frames may still be in flight for a stream that ended; only a stream that never
                 * existed is the peer's mistake. */
                return stream_was_opened(s, id) ? 0 : stream_error(s, id, SPDY_RST_INVALID_STREAM);
        if (reply && !is_ours(s, id))
                return stream_error(s, id, SPDY_RST_PROTOCOL_ERROR);
        if (reply && st->replied)
                return stream_error(s, id, SPDY_RST_STREAM_IN_USE);
        if (st->remote_closed)
                return stream_error(s, id, SPDY_RST_STREAM_ALREADY_CLOSED);
        if (r > 0)
                return stream_error(s, id, (uint32_t) r);
        if (reply)
                st->replied = true;
        if (fin)
                st->remote_closed = true;
        if (reply ? !!s->cb.on_syn_reply : !!s->cb.on_headers) {
                r = (reply ? s->cb.on_syn_reply : s->cb.on_headers)(s, id, s->headers, n, fin, s->userdata);
                if (r < 0)
                        return r;
        }
        stream_close_if_done(s, id);
        return 0;
}

static int on_rst_stream(SpdySession *s, const uint8_t *p, uint32_t len) {
        uint32_t id, status;

        if (len != 8)
                return session_error(s);
        id = get32(p) & SPDY_MAX_STREAM_ID;
        status = get32(p + 4);
        if (id == 0)
                return session_error(s);
        SpdyStream *st = stream_find(s, id);
        if (!st)
                return 0; /* never answer a RST_STREAM with one */
        if (s->cb.on_rst_stream) {
                int r = s->cb.on_rst_stream(s, id, status, s->userdata);
                if (r < 0)
                        return r;
        }
        st = stream_find(s, id); /* the callback may have ended it */
        if (st)
                stream_close(s, st, status);
        return 0;
}

static int on_settings(SpdySession *s, const uint8_t *p, uint32_t len) {
        _cleanup_free_ SpdySetting *settings = NULL;
        uint32_t n;

        if (len < 4)
                return session_error(s);
        n = get32(p);
        if (n > (len - 4) / 8 || len != 4 + 8 * n)
                return session_error(s);
        if (!s->cb.on_settings)
                return 0;
        if (n > 0) {
                settings = calloc(n, sizeof *settings);
                if (!settings)
                        return -ENOMEM;
        }
        for (uint32_t i = 0; i < n; i++) {
                const uint8_t *e = p + 4 + 8 * i;
                settings[i] = (SpdySetting) {
                        .flags = e[0],
                        .id = get32(e) & 0xffffff,
                        .value = get32(e + 4),
                };
        }
        return s->cb.on_settings(s, settings, n, s->flags & SPDY_FLAG_SETTINGS_CLEAR, s->userdata);
}

static int on_ping(SpdySession *s, const uint8_t *p, uint32_t len) {
        uint32_t id;
        bool reply;

        if (len != 4)
                return session_error(s);
        id = get32(p);
        reply = is_ours(s, id);
        if (!reply) {
                int r = queue_control(s, SPDY_PING, 0, p, 4, false);
                if (r < 0)
                        return r;
        }
        return s->cb.on_ping ? s->cb.on_ping(s, id, reply, s->userdata) : 0;
}

static int on_goaway(SpdySession *s, const uint8_t *p, uint32_t len) {
        uint32_t last_good, status;

        if (len != 8)
                return session_error(s);
        last_good = get32(p) & SPDY_MAX_STREAM_ID;
        status = get32(p + 4);
        s->goaway_received = true;
        if (s->cb.on_goaway) {
                int r = s->cb.on_goaway(s, last_good, status, s->userdata);
                if (r < 0)
                        return r;
        }
        /* Our streams above last_good were never processed by the peer. */
        for (size_t i = s->n_streams; i > 0; i--) {
                if (i > s->n_streams)
                        continue; /* a callback closed several */
                SpdyStream *st = s->streams + i - 1;
                if (is_ours(s, st->id) && st->id > last_good)
                        stream_close(s, st, SPDY_RST_REFUSED_STREAM);
        }
        return 0;
}

static int on_window_update(SpdySession *s, const uint8_t *p, uint32_t len) {
        if (len != 8)
                return session_error(s);
        if (!s->cb.on_window_update)
                return 0;
        return s->cb.on_window_update(s, get32(p) & SPDY_MAX_STREAM_ID, get32(p + 4) & 0x7fffffff, s->userdata);
}

static int control_frame_done(SpdySession *s) {
        const uint8_t *p = buffer_peek(&s->payload);
        uint32_t len = (uint32_t) buffer_len(&s->payload);

        switch (s->type) {
        case SPDY_SYN_STREAM:
                return on_syn_stream(s, p, len);
        case SPDY_SYN_REPLY:
        case SPDY_HEADERS:
                return on_reply_or_headers(s, p, len);
        case SPDY_RST_STREAM:
                return on_rst_stream(s, p, len);
        case SPDY_SETTINGS:
                return on_settings(s, p, len);
        case SPDY_PING:
                return on_ping(s, p, len);
        case SPDY_GOAWAY:
                return on_goaway(s, p, len);
        case SPDY_WINDOW_UPDATE:
                return on_window_update(s, p, len);
        }
        assert(false);
        return -EINVAL;
}

static bool control_type_known(uint16_t type) {
        switch (type) {
        case SPDY_SYN_STREAM:
        case SPDY_SYN_REPLY:
        case SPDY_RST_STREAM:
        case SPDY_SETTINGS:
        case SPDY_PING:
        case SPDY_GOAWAY:
        case SPDY_HEADERS:
        case SPDY_WINDOW_UPDATE:
                return true;
        }
        return false;
}

/* DATA for id: whether to hand its payload on (or drop it, after a stream error if one is due). */
static int data_frame_begin(SpdySession *s, uint32_t id, bool *ret_deliver) {
        SpdyStream *st;

        *ret_deliver = false;
        if (s->remaining > s->limits.max_data_frame)
                return stream_error(s, id, SPDY_RST_FRAME_TOO_LARGE);
        st = stream_find(s, id);
        if (!st)
                return stream_was_opened(s, id) ? 0 : stream_error(s, id, SPDY_RST_INVALID_STREAM);
        if (st->remote_closed)
                return stream_error(s, id, SPDY_RST_STREAM_ALREADY_CLOSED);
        if (is_ours(s, id) && !st->replied)
                return stream_error(s, id, SPDY_RST_PROTOCOL_ERROR); /* DATA before SYN_REPLY */
        *ret_deliver = true;
        return 0;
}

/* Hands on a DATA chunk; the last one of a frame ends the peer's side if FIN is set. */
static int data_chunk(SpdySession *s, const uint8_t *p, size_t n) {
        bool last = s->remaining == 0, fin = last && (s->flags & SPDY_FLAG_FIN);
        SpdyStream *st;

        if (n == 0 && !fin)
                return 0;
        st = stream_find(s, s->data_stream); /* again: a callback may have ended it */
        if (!st)
                return 0;
        if (fin)
                st->remote_closed = true;
        if (s->cb.on_data) {
                int r = s->cb.on_data(s, s->data_stream, p, n, fin, s->userdata);
                if (r < 0)
                        return r;
        }
        if (fin)
                stream_close_if_done(s, s->data_stream);
        return 0;
}

/* The frame header is complete: decide what its payload is for. */
static int frame_begin(SpdySession *s) {
        const uint8_t *h = s->head;
        int r;

        s->flags = h[4];
        s->remaining = get32(h + 4) & SPDY_MAX_LENGTH;

        if (h[0] & 0x80) {
                uint16_t version = (uint16_t) ((h[0] & 0x7f) << 8 | h[1]);
                s->type = (uint16_t) (h[2] << 8 | h[3]);
                if (version != SPDY_VERSION)
                        return session_error(s);
                if (!control_type_known(s->type)) {
                        s->state = RECV_SKIP;
                        return 0;
                }
                if (s->remaining > s->limits.max_control_frame)
                        return session_error(s);
                s->payload.start = s->payload.end = 0;
                if (!buffer_reserve(&s->payload, s->remaining))
                        return -ENOMEM;
                s->state = RECV_CONTROL;
                if (s->remaining == 0) {
                        s->state = RECV_HEAD;
                        return control_frame_done(s);
                }
                return 0;
        }

        bool deliver;
        s->data_stream = get32(h) & SPDY_MAX_STREAM_ID;
        if (s->data_stream == 0)
                return session_error(s);
        r = data_frame_begin(s, s->data_stream, &deliver);
        if (r < 0)
                return r;
        s->state = deliver ? RECV_DATA : RECV_SKIP;
        if (s->remaining == 0) {
                s->state = RECV_HEAD;
                if (deliver)
                        return data_chunk(s, NULL, 0);
        }
        return 0;
}

static int recv_some(SpdySession *s, const uint8_t *buf, size_t len) {
        int r;

        while (len > 0) {
                size_t n;

                switch (s->state) {
                case RECV_HEAD:
                        n = MIN(len, SPDY_FRAME_HEADER_SIZE - s->head_len);
                        memcpy(s->head + s->head_len, buf, n);
                        s->head_len += n;
                        buf += n;
                        len -= n;
                        if (s->head_len < SPDY_FRAME_HEADER_SIZE)
                                break;
                        s->head_len = 0;
                        r = frame_begin(s);
                        if (r < 0)
                                return r;
                        break;
                case RECV_CONTROL:
                        n = MIN(len, (size_t) s->remaining);
                        r = buffer_append(&s->payload, buf, n);
                        if (r < 0)
                                return r;
                        buf += n;
                        len -= n;
                        s->remaining -= (uint32_t) n;
                        if (s->remaining > 0)
                                break;
                        s->state = RECV_HEAD;
                        r = control_frame_done(s);
                        if (r < 0)
                                return r;
                        break;
                case RECV_DATA:
                        n = MIN(len, (size_t) s->remaining);
                        s->remaining -= (uint32_t) n;
                        if (s->remaining == 0)
                                s->state = RECV_HEAD;
                        r = data_chunk(s, buf, n);
                        if (r < 0)
                                return r;
                        buf += n;
                        len -= n;
                        break;
                case RECV_SKIP:
                        n = MIN(len, (size_t) s->remaining);
                        s->remaining -= (uint32_t) n;
                        if (s->remaining == 0)
                                s->state = RECV_HEAD;
                        buf += n;
                        len -= n;
                        break;
                }
        }
        return 0;
}

int spdy_session_recv(SpdySession *s, const uint8_t *buf, size_t len) {
        int r;

        assert(s);
        assert(!s->in_recv);
        if (s->error < 0)
                return s->error;
        s->in_recv = true;
        r = recv_some(s, buf, len);
        s->in_recv = false;
        if (r < 0) {
                if (s->error == 0)
                        s->error = r;
                return s->error;
        }
        return 0;
}

/* --- the session -------------------------------------------------------------------------------- */

int spdy_session_new(SpdySession **ret, bool server, const SpdyCallbacks *callbacks, const SpdyLimits *limits,
                     void *userdata) {
        SpdySession *s;

        assert(ret);
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->server = server;
        if (callbacks)
                s->cb = *callbacks;
        if (limits)
                s->limits = *limits;
        s->userdata = userdata;
#define DEFAULT(field, value) \
        if (s->limits.field == 0) \
                s->limits.field = value
        DEFAULT(max_control_frame, SPDY_DEFAULT_MAX_CONTROL_FRAME);
        DEFAULT(max_data_frame, SPDY_DEFAULT_MAX_DATA_FRAME);
        DEFAULT(max_header_block, SPDY_DEFAULT_MAX_HEADER_BLOCK);
        DEFAULT(max_headers, SPDY_DEFAULT_MAX_HEADERS);
        DEFAULT(max_streams, SPDY_DEFAULT_MAX_STREAMS);
        DEFAULT(max_output, SPDY_DEFAULT_MAX_OUTPUT);
#undef DEFAULT
        s->limits.max_control_frame = MIN(s->limits.max_control_frame, SPDY_MAX_LENGTH);
        s->next_stream_id = server ? 2 : 1;
        s->next_ping_id = server ? 2 : 1;

        if (deflateInit2(&s->deflate, Z_DEFAULT_COMPRESSION, Z_DEFLATED, DEFLATE_WINDOW_BITS, DEFLATE_MEM_LEVEL,
                         Z_DEFAULT_STRATEGY) != Z_OK)
                goto fail;
        s->deflate_ready = true;
        if (deflateSetDictionary(&s->deflate, spdy_dictionary, sizeof spdy_dictionary) != Z_OK)
                goto fail;
        if (inflateInit(&s->inflate) != Z_OK)
                goto fail;
        s->inflate_ready = true;
        *ret = s;
        return 0;
fail:
        spdy_session_free(s);
        return -ENOMEM;
}

SpdySession *spdy_session_free(SpdySession *s) {
        if (!s)
                return NULL;
        assert(!s->in_recv);
        if (s->deflate_ready)
                deflateEnd(&s->deflate);
        if (s->inflate_ready)
                inflateEnd(&s->inflate);
        buffer_free(&s->out);
        buffer_free(&s->payload);
        free(s->block);
        free(s->headers);
        free(s->streams);
        free(s);
        return NULL;
}

bool spdy_session_want_read(const SpdySession *s) {
        if (s->error < 0)
                return false;
        /* After GOAWAY either way, the open streams still finish: spdystream's Close() sends GOAWAY
         * and then waits for the FIN of each of its streams. */
        return !((s->goaway_sent || s->goaway_received) && s->n_streams == 0);
}

size_t spdy_session_n_streams(const SpdySession *s) {
        return s->n_streams;
}

/* --- submissions -------------------------------------------------------------------------------- */

static int stream_for_sending(SpdySession *s, uint32_t id, SpdyStream **ret) {
        SpdyStream *st;

        if (s->error < 0)
                return s->error;
        if (id == 0 || id > SPDY_MAX_STREAM_ID)
                return -EINVAL;
        st = stream_find(s, id);
        if (!st)
                return -ENOENT;
        if (st->local_closed)
                return -EPIPE;
        *ret = st;
        return 0;
}

int spdy_session_submit_syn_stream(SpdySession *s, uint32_t associated_id, uint8_t priority,
                                   const SpdyHeader *headers, size_t n_headers, uint8_t flags, uint32_t *ret_stream_id) {
        uint8_t prefix[10];
        uint32_t id;
        int r;

        if (s->error < 0)
                return s->error;
        if (priority > 7 || associated_id > SPDY_MAX_STREAM_ID ||
            (flags & ~(SPDY_FLAG_FIN | SPDY_FLAG_UNIDIRECTIONAL)))
                return -EINVAL;
        if (s->goaway_sent || s->goaway_received || s->next_stream_id > SPDY_MAX_STREAM_ID)
                return -ESHUTDOWN;
        if (s->n_streams >= s->limits.max_streams)
                return -EMFILE;
        r = streams_reserve(s);
        if (r < 0)
                return r;
        id = s->next_stream_id;
        put32(prefix, id);
        put32(prefix + 4, associated_id);
        prefix[8] = (uint8_t) (priority << 5);
        prefix[9] = 0; /* credential slot */
        r = queue_headers_frame(s, SPDY_SYN_STREAM, flags, prefix, sizeof prefix, headers, n_headers);
        if (r < 0)
                return r;
        s->next_stream_id += 2;
        SpdyStream *st = stream_add(s, id);
        st->local_closed = flags & SPDY_FLAG_FIN;
        st->remote_closed = flags & SPDY_FLAG_UNIDIRECTIONAL;
        if (ret_stream_id)
                *ret_stream_id = id;
        stream_close_if_done(s, id);
        return 0;
}

int spdy_session_submit_syn_reply(SpdySession *s, uint32_t stream_id, const SpdyHeader *headers, size_t n_headers,
                                  bool fin) {
        SpdyStream *st;
        uint8_t prefix[4];
        int r;

        r = stream_for_sending(s, stream_id, &st);
        if (r < 0)
                return r;
        if (is_ours(s, stream_id) || st->replied)
                return -EPROTO;
        put32(prefix, stream_id);
        r = queue_headers_frame(s, SPDY_SYN_REPLY, fin ? SPDY_FLAG_FIN : 0, prefix, sizeof prefix, headers, n_headers);
        if (r < 0)
                return r;
        st->replied = true;
        st->local_closed = fin;
        stream_close_if_done(s, stream_id);
        return 0;
}

int spdy_session_submit_headers(SpdySession *s, uint32_t stream_id, const SpdyHeader *headers, size_t n_headers,
                                bool fin) {
        SpdyStream *st;
        uint8_t prefix[4];
        int r;

        r = stream_for_sending(s, stream_id, &st);
        if (r < 0)
                return r;
        if (!is_ours(s, stream_id) && !st->replied)
                return -EPROTO;
        put32(prefix, stream_id);
        r = queue_headers_frame(s, SPDY_HEADERS, fin ? SPDY_FLAG_FIN : 0, prefix, sizeof prefix, headers, n_headers);
        if (r < 0)
                return r;
        st->local_closed = fin;
        stream_close_if_done(s, stream_id);
        return 0;
}

int spdy_session_submit_data(SpdySession *s, uint32_t stream_id, const void *data, size_t len, bool fin) {
        const uint8_t *d = data;
        SpdyStream *st;
        size_t frames, total;
        int r;

        r = stream_for_sending(s, stream_id, &st);
        if (r < 0)
                return r;
        if (!is_ours(s, stream_id) && !st->replied)
                return -EPROTO; /* spdystream drops DATA that comes before its SYN_REPLY */
        if (len > 0 && !data)
                return -EINVAL;
        if (len == 0 && !fin)
                return 0;
        frames = len == 0 ? 1 : (len - 1) / SPDY_MAX_LENGTH + 1;
        total = len + frames * SPDY_FRAME_HEADER_SIZE;
        if (total < len || !out_fits(s, total))
                return -ENOBUFS;
        uint8_t *p = buffer_reserve(&s->out, total);
        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < frames; i++) {
                size_t n = MIN(len, (size_t) SPDY_MAX_LENGTH);
                bool last = i == frames - 1;
                p = put32(p, stream_id);
                p = put32(p, (uint32_t) (last && fin ? SPDY_FLAG_FIN : 0) << 24 | (uint32_t) n);
                if (n > 0) { /* data may be NULL for an empty FIN */
                        memcpy(p, d, n);
                        p += n;
                        d += n;
                        len -= n;
                }
        }
        buffer_commit(&s->out, total);
        if (fin) {
                st->local_closed = true;
                stream_close_if_done(s, stream_id);
        }
        return 0;
}

int spdy_session_submit_rst_stream(SpdySession *s, uint32_t stream_id, uint32_t status) {
        int r;

        if (s->error < 0)
                return s->error;
        if (stream_id == 0 || stream_id > SPDY_MAX_STREAM_ID || status == 0)
                return -EINVAL;
        r = queue_rst(s, stream_id, status);
        if (r < 0)
                return r;
        SpdyStream *st = stream_find(s, stream_id);
        if (st)
                stream_close(s, st, status);
        return 0;
}

int spdy_session_submit_ping(SpdySession *s, uint32_t *ret_id) {
        uint8_t p[4];
        int r;

        if (s->error < 0)
                return s->error;
        put32(p, s->next_ping_id);
        r = queue_control(s, SPDY_PING, 0, p, sizeof p, false);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = s->next_ping_id;
        /* Ids wrap within their parity, as spdystream's do. */
        s->next_ping_id = s->next_ping_id > UINT32_MAX - 2 ? (s->server ? 2 : 1) : s->next_ping_id + 2;
        return 0;
}

int spdy_session_submit_goaway(SpdySession *s, uint32_t status) {
        uint8_t p[8];
        int r;

        if (s->error < 0)
                return s->error;
        if (s->goaway_sent)
                return 0;
        put32(p, s->last_peer_stream_id);
        put32(p + 4, status);
        r = queue_control(s, SPDY_GOAWAY, 0, p, sizeof p, false);
        if (r < 0)
                return r;
        s->goaway_sent = true;
        return 0;
}

int spdy_session_submit_window_update(SpdySession *s, uint32_t stream_id, uint32_t delta) {
        uint8_t p[8];

        if (s->error < 0)
                return s->error;
        if (stream_id > SPDY_MAX_STREAM_ID || delta == 0 || delta > 0x7fffffff)
                return -EINVAL;
        put32(p, stream_id);
        put32(p + 4, delta);
        return queue_control(s, SPDY_WINDOW_UPDATE, 0, p, sizeof p, false);
}

int spdy_session_submit_settings(SpdySession *s, uint8_t flags, const SpdySetting *settings, size_t n_settings) {
        _cleanup_free_ uint8_t *p = NULL;
        size_t len;

        if (s->error < 0)
                return s->error;
        if (n_settings > (SPDY_MAX_LENGTH - 4) / 8 || (n_settings > 0 && !settings))
                return -EINVAL;
        len = 4 + 8 * n_settings;
        p = malloc(len);
        if (!p)
                return -ENOMEM;
        put32(p, (uint32_t) n_settings);
        for (size_t i = 0; i < n_settings; i++) {
                if (settings[i].id > 0xffffff)
                        return -EINVAL;
                put32(p + 4 + 8 * i, (uint32_t) settings[i].flags << 24 | settings[i].id);
                put32(p + 8 + 8 * i, settings[i].value);
        }
        return queue_control(s, SPDY_SETTINGS, flags, p, (uint32_t) len, false);
}

int spdy_stream_set_user_data(SpdySession *s, uint32_t stream_id, void *data) {
        SpdyStream *st = stream_find(s, stream_id);
        if (!st)
                return -ENOENT;
        st->user_data = data;
        return 0;
}

void *spdy_stream_get_user_data(SpdySession *s, uint32_t stream_id) {
        SpdyStream *st = stream_find(s, stream_id);
        return st ? st->user_data : NULL;
}

const SpdyHeader *spdy_header_find(const SpdyHeader *headers, size_t n_headers, const char *name) {
        size_t len = strlen(name);
        for (size_t i = 0; i < n_headers; i++)
                if (headers[i].name_len == len && memcmp(headers[i].name, name, len) == 0)
                        return headers + i;
        return NULL;
}

const char *spdy_rst_status_to_string(uint32_t status) {
        static const char *const table[] = {
                [SPDY_RST_PROTOCOL_ERROR] = "PROTOCOL_ERROR",
                [SPDY_RST_INVALID_STREAM] = "INVALID_STREAM",
                [SPDY_RST_REFUSED_STREAM] = "REFUSED_STREAM",
                [SPDY_RST_UNSUPPORTED_VERSION] = "UNSUPPORTED_VERSION",
                [SPDY_RST_CANCEL] = "CANCEL",
                [SPDY_RST_INTERNAL_ERROR] = "INTERNAL_ERROR",
                [SPDY_RST_FLOW_CONTROL_ERROR] = "FLOW_CONTROL_ERROR",
                [SPDY_RST_STREAM_IN_USE] = "STREAM_IN_USE",
                [SPDY_RST_STREAM_ALREADY_CLOSED] = "STREAM_ALREADY_CLOSED",
                [10] = "INVALID_CREDENTIALS",
                [SPDY_RST_FRAME_TOO_LARGE] = "FRAME_TOO_LARGE",
        };
        return status < ELEMENTSOF(table) && table[status] ? table[status] : NULL;
}
