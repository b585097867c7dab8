/* The gRPC message framing: a 1-byte compressed flag and a 4-byte big-endian length per message. */
#include "grpc-frame.h"

#include <errno.h>

void grpc_frame_header_write(uint8_t out[GRPC_FRAME_HEADER_SIZE], bool compressed, uint32_t len) {
        out[0] = compressed ? 1 : 0;
        out[1] = (uint8_t) (len >> 24);
        out[2] = (uint8_t) (len >> 16);
        out[3] = (uint8_t) (len >> 8);
        out[4] = (uint8_t) len;
}

int grpc_frame_header_read(const uint8_t *buf, size_t len, bool *ret_compressed, uint32_t *ret_len) {
        if (len < GRPC_FRAME_HEADER_SIZE)
                return -EAGAIN;
        if (buf[0] > 1)
                return -EBADMSG;
        *ret_compressed = buf[0] == 1;
        *ret_len = (uint32_t) buf[1] << 24 | (uint32_t) buf[2] << 16 | (uint32_t) buf[3] << 8 | buf[4];
        return 0;
}

int grpc_frame_decode_unary(const uint8_t *buf, size_t len, bool *ret_compressed,
                            const uint8_t **ret_msg, size_t *ret_msg_len) {
        bool compressed;
        uint32_t n;
        int r;

        r = grpc_frame_header_read(buf, len, &compressed, &n);
        if (r < 0)
                return -EBADMSG;
        if ((size_t) n != len - GRPC_FRAME_HEADER_SIZE)
                return -EBADMSG;
        *ret_compressed = compressed;
        *ret_msg = buf + GRPC_FRAME_HEADER_SIZE;
        *ret_msg_len = n;
        return 0;
}
