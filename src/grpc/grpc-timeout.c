/* Parsing of the grpc-timeout request header ("100m", "5S", "1H"). */
#include "grpc-timeout.h"

#include <errno.h>

int grpc_timeout_parse(const char *s, size_t len, uint64_t *ret_usec) {
        uint64_t v = 0, usec;

        if (len < 2 || len > 9)
                return -EINVAL;
        for (size_t i = 0; i < len - 1; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }

        switch (s[len - 1]) {
        case 'H':
                usec = v * 3600ULL * 1000000ULL;
                break;
        case 'M':
                usec = v * 60ULL * 1000000ULL;
                break;
        case 'S':
                usec = v * 1000000ULL;
                break;
        case 'm':
                usec = v * 1000ULL;
                break;
        case 'u':
                usec = v;
                break;
        case 'n':
                usec = (v + 999) / 1000;
                break;
        default:
                return -EINVAL;
        }
        *ret_usec = usec;
        return 0;
}
