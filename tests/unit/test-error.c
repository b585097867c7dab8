/* The error value (basic/error-chain.c) and the one map from it to gRPC status codes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error-chain.h"
#include "grpc-status.h"

static void test_first_error_wins_and_context_chains(void **state) {
        Error e = ERROR_INIT;

        assert_false(error_is_set(&e));
        assert_int_equal(error_to_errno(&e), 0);
        assert_string_equal(error_text(&e), "no error");

        assert_int_equal(error_set(&e, ERROR_WRONG_STATE, EPERM, "container %s is %s", "3f", "EXITED"), -EPERM);
        assert_true(error_is_set(&e));
        assert_int_equal(error_kind(&e), ERROR_WRONG_STATE);
        /* A later error does not replace the first one, but its errno is still returned. */
        assert_int_equal(error_set(&e, ERROR_NOT_FOUND, ENOENT, "later"), -ENOENT);
        assert_string_equal(error_text(&e), "container 3f is EXITED");
        assert_int_equal(error_wrap(&e, "start container %s", "3f"), -EPERM);
        assert_int_equal(error_wrap(&e, "StartContainer"), -EPERM);
        assert_string_equal(error_text(&e), "StartContainer: start container 3f: container 3f is EXITED");
        assert_int_equal(grpc_status_from_error(&e), GRPC_STATUS_FAILED_PRECONDITION);
        error_done(&e);
        assert_false(error_is_set(&e));
        assert_null(e.message);
}

static void test_errno_errors_say_strerror(void **state) {
        Error e = ERROR_INIT;

        assert_int_equal(error_errno(&e, -ENOSPC, "write %s", "/var/lib/rktlet/x"), -ENOSPC);
        assert_int_equal(e.kind, ERROR_SYSTEM);
        assert_int_equal(error_kind(&e), ERROR_EXHAUSTED);
        assert_string_equal(error_text(&e), "write /var/lib/rktlet/x: No space left on device");
        assert_int_equal(grpc_status_from_error(&e), GRPC_STATUS_RESOURCE_EXHAUSTED);
        error_done(&e);

        /* No errno: the error still has one to return, and a kind. */
        assert_int_equal(error_set(&e, ERROR_INVALID_ARGUMENT, 0, "bad"), -EIO);
        assert_int_equal(error_to_errno(&e), -EIO);
        assert_int_equal(grpc_status_from_error(&e), GRPC_STATUS_INVALID_ARGUMENT);
        error_done(&e);

        /* An errno no one classified is INTERNAL, never OK. */
        assert_int_equal(error_errno(&e, EXDEV, "rename"), -EXDEV);
        assert_int_equal(grpc_status_from_error(&e), GRPC_STATUS_INTERNAL);
        error_done(&e);
}

static void test_null_error_is_allowed(void **state) {
        assert_int_equal(error_set(NULL, ERROR_NOT_FOUND, ENOENT, "x"), -ENOENT);
        assert_int_equal(error_errno(NULL, ENOMEM, "x"), -ENOMEM);
        assert_int_equal(error_wrap(NULL, "x"), -EIO);
        assert_false(error_is_set(NULL));
        assert_int_equal(grpc_status_from_error(NULL), GRPC_STATUS_OK);
        error_done(NULL);
}

static void test_wrap_without_error_is_a_bug_reported(void **state) {
        Error e = ERROR_INIT;

        assert_int_equal(error_wrap(&e, "context"), -EIO);
        assert_int_equal(grpc_status_from_error(&e), GRPC_STATUS_INTERNAL);
        assert_non_null(strstr(error_text(&e), "bug"));
        error_done(&e);
}

static void test_move_and_copy(void **state) {
        Error a = ERROR_INIT, b = ERROR_INIT, c = ERROR_INIT;

        (void) error_set(&b, ERROR_CONFLICT, EBUSY, "pod %s is busy", "p");
        error_move(&a, &b);
        assert_false(error_is_set(&b));
        assert_string_equal(error_text(&a), "pod p is busy");
        (void) error_set(&b, ERROR_TIMEOUT, ETIMEDOUT, "late");
        error_move(&a, &b); /* a is set: b is dropped */
        assert_false(error_is_set(&b));
        assert_string_equal(error_text(&a), "pod p is busy");
        assert_int_equal(error_copy(&c, &a), 0);
        assert_ptr_not_equal(c.message, a.message);
        assert_string_equal(error_text(&c), "pod p is busy");
        assert_int_equal(grpc_status_from_error(&c), GRPC_STATUS_ABORTED);
        error_done(&a);
        error_done(&c);
}

/* Every kind has a name and a status; the statuses are what the CRI clients act on. */
static void test_every_kind_maps(void **state) {
        static const struct {
                ErrorKind kind;
                GrpcStatus status;
        } table[] = {
                { ERROR_NONE, GRPC_STATUS_OK },
                { ERROR_INVALID_ARGUMENT, GRPC_STATUS_INVALID_ARGUMENT },
                { ERROR_NOT_FOUND, GRPC_STATUS_NOT_FOUND },
                { ERROR_EXISTS, GRPC_STATUS_ALREADY_EXISTS },
                { ERROR_WRONG_STATE, GRPC_STATUS_FAILED_PRECONDITION },
                { ERROR_CONFLICT, GRPC_STATUS_ABORTED },
                { ERROR_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE },
                { ERROR_EXHAUSTED, GRPC_STATUS_RESOURCE_EXHAUSTED },
                { ERROR_TIMEOUT, GRPC_STATUS_DEADLINE_EXCEEDED },
                { ERROR_CANCELLED, GRPC_STATUS_CANCELLED },
                { ERROR_UNSUPPORTED, GRPC_STATUS_UNIMPLEMENTED },
                { ERROR_DENIED, GRPC_STATUS_PERMISSION_DENIED },
                { ERROR_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED },
                { ERROR_CORRUPT, GRPC_STATUS_DATA_LOSS },
                { ERROR_START, GRPC_STATUS_UNKNOWN },
                { ERROR_INTERNAL, GRPC_STATUS_INTERNAL },
        };
        assert_int_equal(sizeof(table) / sizeof(table[0]), _ERROR_KIND_MAX - 1); /* all but ERROR_SYSTEM */
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                assert_non_null(error_kind_to_string(table[i].kind));
                assert_int_equal(grpc_status_from_error_kind(table[i].kind), table[i].status);
        }
        assert_non_null(error_kind_to_string(ERROR_SYSTEM));
        assert_null(error_kind_to_string(_ERROR_KIND_MAX));
        assert_int_equal(grpc_status_from_error_kind(_ERROR_KIND_MAX), GRPC_STATUS_INTERNAL);
        assert_int_equal(grpc_status_from_error_kind(-1), GRPC_STATUS_INTERNAL);
}

/* The errnos on which the three maps of old disagreed now have one answer each. */
static void test_errno_map_is_one(void **state) {
        static const struct {
                int error;
                GrpcStatus status;
        } table[] = {
                { 0, GRPC_STATUS_OK },
                { -EINVAL, GRPC_STATUS_INVALID_ARGUMENT },
                { -EBADMSG, GRPC_STATUS_INVALID_ARGUMENT },
                { -ENOENT, GRPC_STATUS_NOT_FOUND },
                { -EEXIST, GRPC_STATUS_ALREADY_EXISTS },
                { -EPERM, GRPC_STATUS_PERMISSION_DENIED },
                { -EACCES, GRPC_STATUS_PERMISSION_DENIED },
                { -EBUSY, GRPC_STATUS_ABORTED },
                { -ENOTCONN, GRPC_STATUS_UNAVAILABLE },
                { -ENETDOWN, GRPC_STATUS_UNAVAILABLE },
                { -EHOSTUNREACH, GRPC_STATUS_UNAVAILABLE },
                { -ENOKEY, GRPC_STATUS_UNAUTHENTICATED },
                { -ENOSPC, GRPC_STATUS_RESOURCE_EXHAUSTED },
                { -EDQUOT, GRPC_STATUS_RESOURCE_EXHAUSTED },
                { -EFBIG, GRPC_STATUS_RESOURCE_EXHAUSTED },
                { -ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED },
                { -ECANCELED, GRPC_STATUS_CANCELLED },
                { -EOPNOTSUPP, GRPC_STATUS_UNIMPLEMENTED },
                { -EIO, GRPC_STATUS_INTERNAL },
                { EINVAL, GRPC_STATUS_INVALID_ARGUMENT }, /* either sign */
        };
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                assert_int_equal(grpc_status_from_errno(table[i].error), table[i].status);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_first_error_wins_and_context_chains),
                cmocka_unit_test(test_errno_errors_say_strerror),
                cmocka_unit_test(test_null_error_is_allowed),
                cmocka_unit_test(test_wrap_without_error_is_a_bug_reported),
                cmocka_unit_test(test_move_and_copy),
                cmocka_unit_test(test_every_kind_maps),
                cmocka_unit_test(test_errno_map_is_one),
        };
        return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
