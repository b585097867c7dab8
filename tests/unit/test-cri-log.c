/* Unit tests of the CRI log writer (src/ctr/cri-log.c): records, partial lines, rotation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cri-log.h"

static char dir[] = "/tmp/test-cri-log.XXXXXX";

/* The file's records as "stream tag text" lines, timestamps checked and cut off. */
static char *records(const char *path) {
        FILE *f = fopen(path, "re");
        char *out = NULL, *line = NULL;
        size_t out_len = 0, n = 0;
        FILE *o = open_memstream(&out, &out_len);

        assert_non_null(f);
        while (getline(&line, &n, f) > 0) {
                char *sp = strchr(line, ' ');
                assert_non_null(sp);
                /* 2026-11-23T01:02:03.123456789Z */
                assert_true(sp - line >= 20 && line[4] == '-' && line[10] == 'T' && sp[-1] == 'Z');
                fputs(sp + 1, o);
        }
        free(line);
        fclose(f);
        fclose(o);
        return out;
}

static void test_lines_and_streams(void **state) {
        char path[64], *r;
        CriLog *l;

        snprintf(path, sizeof path, "%s/a.log", dir);
        assert_int_equal(cri_log_open(path, 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "one\ntw", 6), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDERR, "err\n", 4), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "o\n\nthree", 8), 0);
        assert_int_equal(cri_log_flush(l, CRI_STDOUT), 0);
        assert_int_equal(cri_log_flush(l, CRI_STDERR), 0);
        cri_log_free(l);
        r = records(path);
        assert_string_equal(r, "stdout F one\nstderr F err\nstdout F two\nstdout F \nstdout F three\n");
        free(r);
}

static void test_long_lines_are_split(void **state) {
        char path[64], *r, *big = malloc(25);
        CriLog *l;

        snprintf(path, sizeof path, "%s/b.log", dir);
        memset(big, 'x', 25);
        assert_int_equal(cri_log_open(path, 10, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, big, 25), 0); /* 10 + 10 + 5 pending */
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "yy\n", 3), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "0123456789\n", 11), 0); /* exactly the maximum */
        cri_log_free(l);
        r = records(path);
        assert_string_equal(r, "stdout P xxxxxxxxxx\nstdout P xxxxxxxxxx\nstdout F xxxxxyy\nstdout F 0123456789\n");
        free(r);
        free(big);
}

static void test_reopen_after_rotation(void **state) {
        char path[64], rotated[64], *r;
        CriLog *l;

        snprintf(path, sizeof path, "%s/c.log", dir);
        snprintf(rotated, sizeof rotated, "%s/c.log.1", dir);
        assert_int_equal(cri_log_open(path, 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "before\n", 7), 0);
        assert_int_equal(rename(path, rotated), 0);
        assert_int_equal(cri_log_reopen(l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "after\n", 6), 0);
        cri_log_free(l);
        r = records(rotated);
        assert_string_equal(r, "stdout F before\n");
        free(r);
        r = records(path);
        assert_string_equal(r, "stdout F after\n");
        free(r);
}

static void test_timestamp(void **state) {
        char buf[40];

        cri_log_timestamp(1795395639000635973ULL, buf);
        assert_string_equal(buf, "2026-11-23T01:00:39.000635973Z");
        cri_log_timestamp(1795395639500000000ULL, buf);
        assert_string_equal(buf, "2026-11-23T01:00:39.5Z");
        cri_log_timestamp(1795395639000000000ULL, buf);
        assert_string_equal(buf, "2026-11-23T01:00:39Z");
}

/* A container's last line without a newline, written when its stream ends: a full record (F), as
 * containerd writes what is left at EOF. kubelet's parser ends each F record's text with a newline
 * and joins P records to the next, so P would glue this text to nothing that ever comes. */
static void test_last_line_without_newline_is_full(void **state) {
        char path[64], *r;
        CriLog *l;

        snprintf(path, sizeof path, "%s/d.log", dir);
        assert_int_equal(cri_log_open(path, 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "done\nno newline", 15), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDERR, "err", 3), 0);
        assert_int_equal(cri_log_flush(l, CRI_STDOUT), 0); /* the stream's end */
        assert_int_equal(cri_log_flush(l, CRI_STDERR), 0);
        assert_int_equal(cri_log_flush(l, CRI_STDOUT), 0); /* nothing left: no empty record */
        cri_log_free(l);
        r = records(path);
        assert_string_equal(r, "stdout F done\nstdout F no newline\nstderr F err\n");
        free(r);
}

static void test_open_failure(void **state) {
        CriLog *l = NULL;
        assert_int_equal(cri_log_open("/nonexistent-dir/x.log", 0, &l), -ENOENT);
        assert_null(l);
}

static int setup(void **state) {
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        const char *names[] = { "a.log", "b.log", "c.log", "c.log.1", "d.log" };
        char p[64];
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
                snprintf(p, sizeof p, "%s/%s", dir, names[i]);
                (void) unlink(p);
        }
        return rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lines_and_streams),
                cmocka_unit_test(test_long_lines_are_split),
                cmocka_unit_test(test_reopen_after_rotation),
                cmocka_unit_test(test_timestamp),
                cmocka_unit_test(test_last_line_without_newline_is_full),
                cmocka_unit_test(test_open_failure),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
