/* One error value for everything that travels up to a reply: what went wrong in the caller's terms
 * (a kind), the errno behind it, and the message chain, outermost context first
 * ("create container 3f…: mount the rootfs: No such file or directory").
 *
 * The kind says what a client can do about it; it is mapped to a gRPC status in one place
 * (grpc_status_from_error()). errno stays what the system said: it is never used as a domain code
 * ("pod not ready" is ERROR_WRONG_STATE, not EPIPE).
 *
 * Functions that can fail take an `Error *error` (which may be NULL: the caller wants only the
 * return value), return a negative errno, and fill *error once: the first error wins, later ones
 * only add context with error_wrap(). The model is crun's libcrun_error_t. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>

typedef enum ErrorKind {
        ERROR_NONE = 0,
        ERROR_SYSTEM,           /* a system call failed: the kind follows from errno */
        ERROR_INVALID_ARGUMENT, /* the request is wrong; sending it again will not help */
        ERROR_NOT_FOUND,        /* the object (pod, container, image, file in an image) is not there */
        ERROR_EXISTS,           /* a name or id already taken */
        ERROR_WRONG_STATE,      /* the object is not in a state that allows this (stopped, not ready) */
        ERROR_CONFLICT,         /* another operation on the object is under way: retry */
        ERROR_UNAVAILABLE,      /* a service rktlet needs (systemd, a registry, the network) is not there now */
        ERROR_EXHAUSTED,        /* out of memory, space, descriptors or a configured limit */
        ERROR_TIMEOUT,          /* a deadline passed */
        ERROR_CANCELLED,        /* the caller went away */
        ERROR_UNSUPPORTED,      /* not implemented, or not on this host */
        ERROR_DENIED,           /* not allowed */
        ERROR_UNAUTHENTICATED,  /* a registry wants credentials it did not get */
        ERROR_CORRUPT,          /* data (a blob, a record) is damaged */
        ERROR_START,            /* the OCI runtime did not start the process; nothing more precise is known */
        ERROR_INTERNAL,         /* a bug, or something rktlet cannot classify */
        _ERROR_KIND_MAX,
        _ERROR_KIND_INVALID = -EINVAL,
} ErrorKind;

typedef struct Error {
        ErrorKind kind;
        int errno_value; /* positive; 0 when no errno is behind it */
        char *message;   /* NULL: only the kind and errno are known */
} Error;

#define ERROR_INIT ((Error) {})

/* Fills *error (when error is non-NULL and still empty) and returns -errno_value, or -EIO when
 * errno_value is 0. A negative errno_value is taken as its absolute value. */
int error_set(Error *error, ErrorKind kind, int errno_value, const char *format, ...) __attribute__((format(printf, 4, 5)));
/* error_set() with a va_list. */
int error_setv(Error *error, ErrorKind kind, int errno_value, const char *format, va_list ap)
        __attribute__((format(printf, 4, 0)));
/* error_set() with the kind that errno implies and the message "<format>: <strerror>". */
int error_errno(Error *error, int errno_value, const char *format, ...) __attribute__((format(printf, 3, 4)));
/* Adds context in front of the message: "<format>: <message so far>". Returns the error's
 * -errno (-EIO when it has none); with no error set, sets an ERROR_INTERNAL one. */
int error_wrap(Error *error, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* *dst = *src when dst is still empty (the first error wins), else src is dropped. src ends empty. */
void error_move(Error *dst, Error *src);
/* A copy of src into an empty *dst; -ENOMEM (dst left empty) when out of memory. */
int error_copy(Error *dst, const Error *src);
void error_done(Error *error);

static inline bool error_is_set(const Error *error) {
        return error && error->kind != ERROR_NONE;
}
/* The message, or the errno's text, or the kind's name; never NULL. */
const char *error_text(const Error *error);
/* The negative errno an int-returning caller passes on: -errno_value, or -EIO. 0 when not set. */
int error_to_errno(const Error *error);

/* The kind a bare errno implies: EINVAL → ERROR_INVALID_ARGUMENT, ENOENT → ERROR_NOT_FOUND, ENOSPC →
 * ERROR_EXHAUSTED, EACCES/EPERM → ERROR_DENIED, ETIMEDOUT → ERROR_TIMEOUT… (see error-chain.c). */
ErrorKind error_kind_from_errno(int errno_value);
/* The effective kind: for ERROR_SYSTEM, the one errno implies. */
ErrorKind error_kind(const Error *error);
const char *error_kind_to_string(ErrorKind kind);
