/* The error value: kind, errno and message chain (see error-chain.h). */
#include "error-chain.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[_ERROR_KIND_MAX] = {
        [ERROR_NONE] = "none",
        [ERROR_SYSTEM] = "system",
        [ERROR_INVALID_ARGUMENT] = "invalid argument",
        [ERROR_NOT_FOUND] = "not found",
        [ERROR_EXISTS] = "already exists",
        [ERROR_WRONG_STATE] = "wrong state",
        [ERROR_CONFLICT] = "conflict",
        [ERROR_UNAVAILABLE] = "unavailable",
        [ERROR_EXHAUSTED] = "resource exhausted",
        [ERROR_TIMEOUT] = "timeout",
        [ERROR_CANCELLED] = "cancelled",
        [ERROR_UNSUPPORTED] = "unsupported",
        [ERROR_DENIED] = "denied",
        [ERROR_UNAUTHENTICATED] = "unauthenticated",
        [ERROR_CORRUPT] = "corrupt",
        [ERROR_START] = "start failed",
        [ERROR_INTERNAL] = "internal",
};

const char *error_kind_to_string(ErrorKind kind) {
        if (kind < 0 || kind >= _ERROR_KIND_MAX)
                return NULL;
        return kind_names[kind];
}

ErrorKind error_kind_from_errno(int errno_value) {
        switch (abs(errno_value)) {
        case 0:
                return ERROR_NONE;
        case EINVAL:
        case EBADMSG: /* a malformed request; a damaged blob says ERROR_CORRUPT itself */
        case ENAMETOOLONG:
                return ERROR_INVALID_ARGUMENT;
        case ENOENT:
        case ESRCH:
        case ENXIO:
                return ERROR_NOT_FOUND;
        case EEXIST:
                return ERROR_EXISTS;
        case EPERM:
        case EACCES:
                return ERROR_DENIED;
        case ENOMEM:
        case ENOSPC:
        case EDQUOT:
        case EFBIG:
        case EMFILE:
        case ENFILE:
        case E2BIG:
        case EMSGSIZE:
                return ERROR_EXHAUSTED;
        case ETIMEDOUT:
        case ETIME:
                return ERROR_TIMEOUT;
        case ECANCELED:
                return ERROR_CANCELLED;
        case EOPNOTSUPP:
        case ENOSYS:
                return ERROR_UNSUPPORTED;
        case EBUSY:
                return ERROR_CONFLICT;
        case EAGAIN:
        case ECONNREFUSED:
        case ECONNRESET:
        case ENOTCONN:
        case EHOSTUNREACH:
        case ENETDOWN:
        case ENETUNREACH:
                return ERROR_UNAVAILABLE;
        case ENOKEY:
                return ERROR_UNAUTHENTICATED;
        case ESTALE:
        case ENOTEMPTY:
                return ERROR_WRONG_STATE;
        default:
                return ERROR_INTERNAL;
        }
}

ErrorKind error_kind(const Error *error) {
        if (!error)
                return ERROR_NONE;
        if (error->kind == ERROR_SYSTEM) {
                ErrorKind k = error_kind_from_errno(error->errno_value);
                return k == ERROR_NONE ? ERROR_INTERNAL : k;
        }
        return error->kind;
}

int error_to_errno(const Error *error) {
        if (!error_is_set(error))
                return 0;
        return error->errno_value > 0 ? -error->errno_value : -EIO;
}

__attribute__((format(printf, 5, 0)))
static int error_set_suffixv(Error *error, ErrorKind kind, int errno_value, const char *suffix, const char *format,
                             va_list ap) {
        int e = abs(errno_value);
        char *m = NULL, *full = NULL;

        if (!error || error->kind != ERROR_NONE)
                return e ? -e : (error && error->errno_value > 0 ? -error->errno_value : -EIO);
        if (format && vasprintf(&m, format, ap) < 0)
                m = NULL;
        if (m && suffix) {
                if (asprintf(&full, "%s: %s", m, suffix) < 0)
                        full = NULL;
                free(m);
                m = full;
        }
        error->kind = kind == ERROR_NONE ? ERROR_INTERNAL : kind;
        error->errno_value = e;
        error->message = m; /* NULL when out of memory: error_text() still says something */
        return e ? -e : -EIO;
}

int error_setv(Error *error, ErrorKind kind, int errno_value, const char *format, va_list ap) {
        return error_set_suffixv(error, kind, errno_value, NULL, format, ap);
}

int error_set(Error *error, ErrorKind kind, int errno_value, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = error_set_suffixv(error, kind, errno_value, NULL, format, ap);
        va_end(ap);
        return r;
}

int error_errno(Error *error, int errno_value, const char *format, ...) {
        va_list ap;
        int r, e = abs(errno_value);

        va_start(ap, format);
        r = error_set_suffixv(error, ERROR_SYSTEM, e, e ? strerror(e) : NULL, format, ap);
        va_end(ap);
        return r;
}

int error_wrap(Error *error, const char *format, ...) {
        va_list ap;
        char *prefix = NULL, *full = NULL;

        if (!error)
                return -EIO;
        if (error->kind == ERROR_NONE)
                return error_set(error, ERROR_INTERNAL, EIO, "%s", "an error without a cause (a bug)");

        va_start(ap, format);
        if (vasprintf(&prefix, format, ap) < 0)
                prefix = NULL;
        va_end(ap);
        if (prefix && asprintf(&full, "%s: %s", prefix, error_text(error)) >= 0) {
                free(error->message);
                error->message = full;
        }
        free(prefix);
        return error_to_errno(error);
}

void error_move(Error *dst, Error *src) {
        if (!src)
                return;
        if (dst && dst->kind == ERROR_NONE)
                *dst = *src;
        else
                free(src->message);
        *src = ERROR_INIT;
}

int error_copy(Error *dst, const Error *src) {
        *dst = ERROR_INIT;
        if (!error_is_set(src))
                return 0;
        char *m = NULL;
        if (src->message && !(m = strdup(src->message)))
                return -ENOMEM;
        *dst = (Error) { .kind = src->kind, .errno_value = src->errno_value, .message = m };
        return 0;
}

void error_done(Error *error) {
        if (!error)
                return;
        free(error->message);
        *error = ERROR_INIT;
}

const char *error_text(const Error *error) {
        if (!error_is_set(error))
                return "no error";
        if (error->message)
                return error->message;
        if (error->errno_value > 0)
                return strerror(error->errno_value);
        return error_kind_to_string(error_kind(error)) ?: "unknown error";
}
