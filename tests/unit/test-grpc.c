/* Unit tests of the gRPC pieces that need no connection: framing, grpc-timeout, status, percent-encoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "grpc-frame.h"
#include "grpc-status.h"
#include "grpc-timeout.h"

static void test_frame_header_roundtrip(void **state) {
        uint8_t h[GRPC_FRAME_HEADER_SIZE];
        bool compressed;
        uint32_t len;

        grpc_frame_header_write(h, false, 0x01020304);
        assert_memory_equal(h, "\x00\x01\x02\x03\x04", 5);
        assert_int_equal(grpc_frame_header_read(h, sizeof h, &compressed, &len), 0);
        assert_false(compressed);
        assert_int_equal(len, 0x01020304);

        grpc_frame_header_write(h, true, 7);
        assert_int_equal(grpc_frame_header_read(h, sizeof h, &compressed, &len), 0);
        assert_true(compressed);
        assert_int_equal(len, 7);
}

static void test_frame_header_short_and_bad_flag(void **state) {
        const uint8_t bad[] = { 2, 0, 0, 0, 0 };
        bool compressed;
        uint32_t len;

        assert_int_equal(grpc_frame_header_read((const uint8_t *) "\0\0\0", 3, &compressed, &len), -EAGAIN);
        assert_int_equal(grpc_frame_header_read(bad, sizeof bad, &compressed, &len), -EBADMSG);
}

static void test_frame_decode_unary(void **state) {
        const uint8_t ok[] = { 0, 0, 0, 0, 4, 0x0a, 0x02, 'v', '1' };
        const uint8_t empty[] = { 0, 0, 0, 0, 0 };
        const uint8_t truncated[] = { 0, 0, 0, 0, 5, 0x0a, 0x02 };
        const uint8_t trailing[] = { 0, 0, 0, 0, 1, 0x08, 0 };
        const uint8_t *msg;
        size_t len;
        bool compressed;

        assert_int_equal(grpc_frame_decode_unary(ok, sizeof ok, &compressed, &msg, &len), 0);
        assert_int_equal(len, 4);
        assert_ptr_equal(msg, ok + 5);
        assert_int_equal(grpc_frame_decode_unary(empty, sizeof empty, &compressed, &msg, &len), 0);
        assert_int_equal(len, 0);
        assert_int_equal(grpc_frame_decode_unary(truncated, sizeof truncated, &compressed, &msg, &len), -EBADMSG);
        assert_int_equal(grpc_frame_decode_unary(trailing, sizeof trailing, &compressed, &msg, &len), -EBADMSG);
        assert_int_equal(grpc_frame_decode_unary(NULL, 0, &compressed, &msg, &len), -EBADMSG);
}

static uint64_t timeout(const char *s) {
        uint64_t usec = 0;
        int r = grpc_timeout_parse(s, strlen(s), &usec);
        return r < 0 ? UINT64_MAX : usec;
}

static void test_timeout_units(void **state) {
        assert_int_equal(timeout("1H"), 3600ULL * 1000000ULL);
        assert_int_equal(timeout("2M"), 120ULL * 1000000ULL);
        assert_int_equal(timeout("5S"), 5000000ULL);
        assert_int_equal(timeout("1m"), 1000ULL);
        assert_int_equal(timeout("250u"), 250ULL);
        assert_int_equal(timeout("1n"), 1ULL);    /* rounds up, never to zero */
        assert_int_equal(timeout("1500n"), 2ULL);
        assert_int_equal(timeout("0m"), 0ULL);
        assert_int_equal(timeout("99999999S"), 99999999ULL * 1000000ULL);
}

static void test_timeout_invalid(void **state) {
        assert_int_equal(timeout(""), UINT64_MAX);
        assert_int_equal(timeout("S"), UINT64_MAX);
        assert_int_equal(timeout("10"), UINT64_MAX);
        assert_int_equal(timeout("10s"), UINT64_MAX); /* units are case-sensitive: s is not S */
        assert_int_equal(timeout("123456789S"), UINT64_MAX); /* more than 8 digits */
        assert_int_equal(timeout("-1S"), UINT64_MAX);
        assert_int_equal(timeout("1 S"), UINT64_MAX);
}

static void test_status_names(void **state) {
        assert_string_equal(grpc_status_to_string(GRPC_STATUS_OK), "OK");
        assert_string_equal(grpc_status_to_string(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
        assert_null(grpc_status_to_string(_GRPC_STATUS_MAX));
        assert_int_equal(grpc_status_from_errno(-ENOENT), GRPC_STATUS_NOT_FOUND);
        assert_int_equal(grpc_status_from_errno(-EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
        assert_int_equal(grpc_status_from_errno(-EEXIST), GRPC_STATUS_ALREADY_EXISTS);
        assert_int_equal(grpc_status_from_errno(-ETIMEDOUT), GRPC_STATUS_DEADLINE_EXCEEDED);
        assert_int_equal(grpc_status_from_errno(-EIO), GRPC_STATUS_INTERNAL);
}

static void test_percent_encode(void **state) {
        char *s;

        s = grpc_percent_encode("plain text: ok");
        assert_string_equal(s, "plain text: ok");
        free(s);
        s = grpc_percent_encode("100% sure\nnext");
        assert_string_equal(s, "100%25 sure%0Anext");
        free(s);
        s = grpc_percent_encode("caf\xc3\xa9");
        assert_string_equal(s, "caf%C3%A9");
        free(s);
}

static void test_percent_encode_max(void **state) {
        char *s, big[10001];

        s = grpc_percent_encode_max("short", 5); /* fits exactly: as it is */
        assert_string_equal(s, "short");
        free(s);
        s = grpc_percent_encode_max("abcdefghijklmnop", 12); /* 3 + "…" encoded (9) */
        assert_string_equal(s, "abc%E2%80%A6");
        free(s);
        /* A character is never cut: "é" is 6 encoded bytes (the whole string 19). */
        s = grpc_percent_encode_max("x\xc3\xa9\xc3\xa9\xc3\xa9", 15);
        assert_string_equal(s, "x%E2%80%A6");
        free(s);
        s = grpc_percent_encode_max("x\xc3\xa9\xc3\xa9\xc3\xa9", 16);
        assert_string_equal(s, "x%C3%A9%E2%80%A6");
        free(s);
        s = grpc_percent_encode_max("x\xc3\xa9\xc3\xa9\xc3\xa9", 19);
        assert_string_equal(s, "x%C3%A9%C3%A9%C3%A9");
        free(s);
        /* A 10 KB id quoted in a message stays under the limit whole. */
        memset(big, 'i', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        s = grpc_percent_encode_max(big, GRPC_MESSAGE_MAX);
        assert_int_equal(strlen(s), GRPC_MESSAGE_MAX);
        assert_string_equal(s + GRPC_MESSAGE_MAX - 9, "%E2%80%A6");
        free(s);
}

static void test_percent_decode(void **state) {
        char *s;

        s = grpc_percent_decode("100%25 sure%0Anext", strlen("100%25 sure%0Anext"));
        assert_string_equal(s, "100% sure\nnext");
        free(s);
        /* Invalid escapes stay as they are, as the gRPC spec asks of receivers. */
        s = grpc_percent_decode("50%zz and %4", strlen("50%zz and %4"));
        assert_string_equal(s, "50%zz and %4");
        free(s);

        const char *orig = "a%b\x01\xff c";
        char *e = grpc_percent_encode(orig);
        s = grpc_percent_decode(e, strlen(e));
        assert_string_equal(s, orig);
        free(s);
        free(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_frame_header_roundtrip),
                cmocka_unit_test(test_frame_header_short_and_bad_flag),
                cmocka_unit_test(test_frame_decode_unary),
                cmocka_unit_test(test_timeout_units),
                cmocka_unit_test(test_timeout_invalid),
                cmocka_unit_test(test_status_names),
                cmocka_unit_test(test_percent_encode),
                cmocka_unit_test(test_percent_encode_max),
                cmocka_unit_test(test_percent_decode),
        };
        return cmocka_run_group_tests_name("grpc", tests, NULL, NULL);
}
