/* gRPC status codes, their names, and the percent-encoding of grpc-message. */
#include "grpc-status.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[_GRPC_STATUS_MAX] = {
        [GRPC_STATUS_OK] = "OK",
        [GRPC_STATUS_CANCELLED] = "CANCELLED",
        [GRPC_STATUS_UNKNOWN] = "UNKNOWN",
        [GRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [GRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
        [GRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
        [GRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
        [GRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
        [GRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
        [GRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
        [GRPC_STATUS_ABORTED] = "ABORTED",
        [GRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
        [GRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
        [GRPC_STATUS_INTERNAL] = "INTERNAL",
        [GRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
        [GRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
        [GRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *grpc_status_to_string(GrpcStatus s) {
        if (s < 0 || s >= _GRPC_STATUS_MAX)
                return NULL;
        return status_names[s];
}

static const GrpcStatus kind_status[_ERROR_KIND_MAX] = {
        [ERROR_NONE] = GRPC_STATUS_OK,
        [ERROR_SYSTEM] = GRPC_STATUS_INTERNAL, /* never looked up: error_kind() resolves it */
        [ERROR_INVALID_ARGUMENT] = GRPC_STATUS_INVALID_ARGUMENT,
        [ERROR_NOT_FOUND] = GRPC_STATUS_NOT_FOUND,
        [ERROR_EXISTS] = GRPC_STATUS_ALREADY_EXISTS,
        [ERROR_WRONG_STATE] = GRPC_STATUS_FAILED_PRECONDITION,
        [ERROR_CONFLICT] = GRPC_STATUS_ABORTED,
        [ERROR_UNAVAILABLE] = GRPC_STATUS_UNAVAILABLE,
        [ERROR_EXHAUSTED] = GRPC_STATUS_RESOURCE_EXHAUSTED,
        [ERROR_TIMEOUT] = GRPC_STATUS_DEADLINE_EXCEEDED,
        [ERROR_CANCELLED] = GRPC_STATUS_CANCELLED,
        [ERROR_UNSUPPORTED] = GRPC_STATUS_UNIMPLEMENTED,
        [ERROR_DENIED] = GRPC_STATUS_PERMISSION_DENIED,
        [ERROR_UNAUTHENTICATED] = GRPC_STATUS_UNAUTHENTICATED,
        [ERROR_CORRUPT] = GRPC_STATUS_DATA_LOSS,
        [ERROR_START] = GRPC_STATUS_UNKNOWN, /* as containerd and CRI-O answer a StartError */
        [ERROR_INTERNAL] = GRPC_STATUS_INTERNAL,
};

GrpcStatus grpc_status_from_error_kind(ErrorKind kind) {
        if (kind < 0 || kind >= _ERROR_KIND_MAX || kind == ERROR_SYSTEM)
                return GRPC_STATUS_INTERNAL;
        return kind_status[kind];
}

GrpcStatus grpc_status_from_error(const Error *error) {
        return grpc_status_from_error_kind(error_kind(error));
}

GrpcStatus grpc_status_from_errno(int error) {
        ErrorKind k = error_kind_from_errno(error);
        return grpc_status_from_error_kind(k == ERROR_NONE && error != 0 ? ERROR_INTERNAL : k);
}

static int needs_escape(unsigned char c) {
        return c < 0x20 || c > 0x7E || c == '%';
}

char *grpc_percent_encode_max(const char *s, size_t max) {
        static const char hex[] = "0123456789ABCDEF";
        static const char ellipsis[] = "%E2%80%A6"; /* "…" */
        size_t n = 0, end = 0, fit = 0;

        /* How much fits: whole characters (a UTF-8 sequence is never cut) and, if not all of s does,
         * the ellipsis after them. */
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                n += needs_escape(*p) ? 3 : 1;
                if ((p[1] & 0xC0) != 0x80) { /* the next byte starts a character */
                        if (n + strlen(ellipsis) <= max)
                                fit = (size_t) (p + 1 - (const unsigned char *) s);
                        end = (size_t) (p + 1 - (const unsigned char *) s);
                }
        }
        bool cut = n > max;
        if (!cut)
                fit = end;

        char *out = malloc((cut ? max : n) + 1), *o = out;
        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; p < (const unsigned char *) s + fit; p++) {
                if (needs_escape(*p)) {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 0xF];
                } else
                        *o++ = (char) *p;
        }
        if (cut && max >= strlen(ellipsis))
                o = stpcpy(o, ellipsis);
        *o = '\0';
        return out;
}

char *grpc_percent_encode(const char *s) {
        return grpc_percent_encode_max(s, SIZE_MAX);
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

char *grpc_percent_decode(const char *s, size_t len) {
        char *out = malloc(len + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                int hi, lo;
                if (s[i] == '%' && i + 2 < len &&
                    (hi = unhex(s[i + 1])) >= 0 && (lo = unhex(s[i + 2])) >= 0) {
                        *o++ = (char) (hi << 4 | lo);
                        i += 2;
                } else
                        *o++ = s[i];
        }
        *o = '\0';
        return out;
}
