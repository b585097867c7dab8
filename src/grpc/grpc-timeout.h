/* Parsing of the grpc-timeout request header ("100m", "5S", "1H"). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Up to 8 ASCII digits followed by one unit of H M S m u n. Returns 0 and microseconds (a
 * non-zero nanosecond value rounds up to 1 µs), or -EINVAL. */
int grpc_timeout_parse(const char *s, size_t len, uint64_t *ret_usec);
