/* gRPC status codes, their names, and the percent-encoding of grpc-message. */
#pragma once

#include <errno.h>
#include <stddef.h>

#include "error-chain.h"

typedef enum GrpcStatus {
        GRPC_STATUS_OK = 0,
        GRPC_STATUS_CANCELLED = 1,
        GRPC_STATUS_UNKNOWN = 2,
        GRPC_STATUS_INVALID_ARGUMENT = 3,
        GRPC_STATUS_DEADLINE_EXCEEDED = 4,
        GRPC_STATUS_NOT_FOUND = 5,
        GRPC_STATUS_ALREADY_EXISTS = 6,
        GRPC_STATUS_PERMISSION_DENIED = 7,
        GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
        GRPC_STATUS_FAILED_PRECONDITION = 9,
        GRPC_STATUS_ABORTED = 10,
        GRPC_STATUS_OUT_OF_RANGE = 11,
        GRPC_STATUS_UNIMPLEMENTED = 12,
        GRPC_STATUS_INTERNAL = 13,
        GRPC_STATUS_UNAVAILABLE = 14,
        GRPC_STATUS_DATA_LOSS = 15,
        GRPC_STATUS_UNAUTHENTICATED = 16,
        _GRPC_STATUS_MAX,
        _GRPC_STATUS_INVALID = -EINVAL,
} GrpcStatus;

const char *grpc_status_to_string(GrpcStatus s);
/* The one map from what went wrong to the status a reply carries: by the error's kind (for
 * ERROR_SYSTEM, the kind its errno implies, error_kind_from_errno()). */
GrpcStatus grpc_status_from_error_kind(ErrorKind kind);
GrpcStatus grpc_status_from_error(const Error *error);
/* A bare negative errno, through the same map. */
GrpcStatus grpc_status_from_errno(int error);

/* Percent-encodes s as the gRPC spec asks of grpc-message: bytes outside 0x20..0x7E and '%' become
 * %XX. Returns a malloc'ed string, or NULL on OOM. */
char *grpc_percent_encode(const char *s);
/* The same, at most max bytes long: when s does not fit, as much of it as does (whole characters)
 * followed by an encoded "…". */
char *grpc_percent_encode_max(const char *s, size_t max);
/* What rktlet sends as grpc-message at most: clients refuse headers past 8 KB in all. */
#define GRPC_MESSAGE_MAX 4000
/* The reverse; invalid escapes are kept literally, as the spec asks of receivers. NULL on OOM. */
char *grpc_percent_decode(const char *s, size_t len);
