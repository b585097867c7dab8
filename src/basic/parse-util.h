/* Parsing of sizes, numbers, durations and booleans as found in config files and flags. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* "16M", "1024", "2G": base 1024; suffixes K, M, G, T (an optional trailing 'B' or 'iB' is allowed). */
int parse_size(const char *s, uint64_t *ret);
int parse_uint64(const char *s, uint64_t *ret);
/* "10", "10s", "500ms", "2min", "1h", "250us": returns microseconds. A bare number is seconds. */
int parse_sec(const char *s, uint64_t *ret_usec);
int parse_boolean(const char *s, bool *ret);
