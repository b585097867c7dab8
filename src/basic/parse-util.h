/* Parsing of sizes, numbers, durations, booleans and IP addresses as found in config files, flags and
 * requests. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "16M", "1024", "2G": base 1024; suffixes K, M, G, T (an optional trailing 'B' or 'iB' is allowed). */
int parse_size(const char *s, uint64_t *ret);
int parse_uint64(const char *s, uint64_t *ret);
/* "10", "10s", "500ms", "2min", "1h", "250us": returns microseconds. A bare number is seconds. */
int parse_sec(const char *s, uint64_t *ret_usec);
int parse_boolean(const char *s, bool *ret);

/* An IPv4 or IPv6 address, nothing around it: AF_INET or AF_INET6, -EINVAL otherwise. */
int parse_ip(const char *s);
/* "10.0.0.0/24", "fd00::/64": the family of the address, with a prefix length within its size;
 * -EINVAL otherwise. */
int parse_cidr(const char *s, unsigned *ret_prefix);
/* "127.0.0.1:9899", "[::1]:9899" (a port from 0 to 65535): the family of the address, its text in
 * ret_host (INET6_ADDRSTRLEN bytes are enough) and the port; -EINVAL otherwise. */
int parse_ip_port(const char *s, char *ret_host, size_t host_size, uint16_t *ret_port);
