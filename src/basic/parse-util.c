/* Parsing of sizes, numbers, durations, booleans and IP addresses. */
#include "parse-util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int parse_uint64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_number_with_unit(const char *s, uint64_t *ret_value, const char **ret_unit) {
        char *end;
        unsigned long long v;

        if (!s || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        while (*end == ' ')
                end++;
        *ret_value = v;
        *ret_unit = end;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } table[] = {
                { "", 1 },
                { "B", 1 },
                { "K", 1ULL << 10 }, { "KB", 1ULL << 10 }, { "KiB", 1ULL << 10 },
                { "M", 1ULL << 20 }, { "MB", 1ULL << 20 }, { "MiB", 1ULL << 20 },
                { "G", 1ULL << 30 }, { "GB", 1ULL << 30 }, { "GiB", 1ULL << 30 },
                { "T", 1ULL << 40 }, { "TB", 1ULL << 40 }, { "TiB", 1ULL << 40 },
        };
        uint64_t v;
        const char *unit;
        int r;

        r = parse_number_with_unit(s, &v, &unit);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
                if (strcasecmp(unit, table[i].suffix) == 0) {
                        if (v > UINT64_MAX / table[i].factor)
                                return -ERANGE;
                        *ret = v * table[i].factor;
                        return 0;
                }
        return -EINVAL;
}

int parse_sec(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } table[] = {
                { "", 1000000ULL },       { "s", 1000000ULL },     { "sec", 1000000ULL },
                { "ms", 1000ULL },        { "msec", 1000ULL },     { "us", 1ULL },
                { "usec", 1ULL },         { "m", 60000000ULL },    { "min", 60000000ULL },
                { "h", 3600000000ULL },   { "hr", 3600000000ULL },
        };
        uint64_t v;
        const char *unit;
        int r;

        r = parse_number_with_unit(s, &v, &unit);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
                if (strcmp(unit, table[i].suffix) == 0) {
                        if (v > UINT64_MAX / table[i].usec)
                                return -ERANGE;
                        *ret_usec = v * table[i].usec;
                        return 0;
                }
        return -EINVAL;
}

int parse_boolean(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

int parse_ip(const char *s) {
        unsigned char buf[sizeof(struct in6_addr)];

        if (inet_pton(AF_INET, s, buf) == 1)
                return AF_INET;
        if (inet_pton(AF_INET6, s, buf) == 1)
                return AF_INET6;
        return -EINVAL;
}

int parse_cidr(const char *s, unsigned *ret_prefix) {
        const char *slash = strchr(s, '/');
        char addr[INET6_ADDRSTRLEN];
        uint64_t prefix;
        int family;

        if (!slash || (size_t) (slash - s) >= sizeof addr || !slash[1] || slash[1] == '+' || slash[1] == '-')
                return -EINVAL;
        memcpy(addr, s, (size_t) (slash - s));
        addr[slash - s] = '\0';
        family = parse_ip(addr);
        if (family < 0 || parse_uint64(slash + 1, &prefix) < 0 || prefix > (family == AF_INET ? 32u : 128u))
                return -EINVAL;
        if (ret_prefix)
                *ret_prefix = (unsigned) prefix;
        return family;
}

int parse_ip_port(const char *s, char *ret_host, size_t host_size, uint16_t *ret_port) {
        char host[INET6_ADDRSTRLEN];
        const char *colon, *start = s, *end;
        uint64_t port;
        int family;

        if (s[0] == '[') {
                start = s + 1;
                end = strchr(start, ']');
                if (!end || end[1] != ':')
                        return -EINVAL;
                colon = end + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t) (colon - s)))
                        return -EINVAL; /* an IPv6 address goes in brackets */
                end = colon;
        }
        if ((size_t) (end - start) >= sizeof host)
                return -EINVAL;
        memcpy(host, start, (size_t) (end - start));
        host[end - start] = '\0';
        family = parse_ip(host);
        if (family < 0 || (s[0] == '[') != (family == AF_INET6))
                return -EINVAL;
        if (parse_uint64(colon + 1, &port) < 0 || port > 65535)
                return -EINVAL;
        if (ret_host) {
                if (strlen(host) >= host_size)
                        return -ENOBUFS;
                strcpy(ret_host, host);
        }
        if (ret_port)
                *ret_port = (uint16_t) port;
        return family;
}
