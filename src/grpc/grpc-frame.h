/* The gRPC message framing: a 1-byte compressed flag and a 4-byte big-endian length per message. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRPC_FRAME_HEADER_SIZE 5

void grpc_frame_header_write(uint8_t out[GRPC_FRAME_HEADER_SIZE], bool compressed, uint32_t len);

/* Looks at the start of a request body. Returns 0 and the flag and length of the first message once
 * its 5-byte header is there, -EAGAIN while fewer than 5 bytes have arrived, -EBADMSG if the flag
 * byte is neither 0 nor 1. */
int grpc_frame_header_read(const uint8_t *buf, size_t len, bool *ret_compressed, uint32_t *ret_len);

/* A unary request body must hold exactly one whole message. Returns 0 with the message, -EBADMSG
 * for a truncated body, trailing bytes, a bad flag, or no message at all. */
int grpc_frame_decode_unary(const uint8_t *buf, size_t len, bool *ret_compressed,
                            const uint8_t **ret_msg, size_t *ret_msg_len);
