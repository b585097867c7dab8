/* Unit tests of image reference normalization (src/image/image-ref.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "image-ref.h"

static void check(const char *in, const char *name) {
        ImageRef r;
        const char *error = NULL;
        char *n;

        assert_int_equal(image_ref_parse(in, &r, &error), 0);
        n = image_ref_name(&r);
        assert_string_equal(n, name);
        free(n);
        image_ref_done(&r);
}

static void check_bad(const char *in) {
        ImageRef r;
        const char *error = NULL;

        assert_int_equal(image_ref_parse(in, &r, &error), -EINVAL);
        assert_non_null(error);
}

static void test_normalize(void **state) {
        check("busybox", "docker.io/library/busybox:latest");
        check("busybox:1.36", "docker.io/library/busybox:1.36");
        check("library/busybox", "docker.io/library/busybox:latest");
        check("docker.io/busybox", "docker.io/library/busybox:latest");
        check("index.docker.io/library/busybox:1", "docker.io/library/busybox:1");
        check("someone/app:v2", "docker.io/someone/app:v2");
        check("quay.io/org/app", "quay.io/org/app:latest");
        check("localhost/app:1", "localhost/app:1");
        check("127.0.0.1:5000/a/b/c:tag", "127.0.0.1:5000/a/b/c:tag");
        check("registry:5000/app", "registry:5000/app:latest");
        check("busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
              "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        /* tag and digest: the tag is kept, the digest decides what is pulled */
        check("busybox:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
              "docker.io/library/busybox:1");
}

static void test_host(void **state) {
        ImageRef r;
        const char *error;

        assert_int_equal(image_ref_parse("busybox", &r, &error), 0);
        assert_string_equal(image_ref_host(&r), "registry-1.docker.io");
        assert_string_equal(r.repository, "library/busybox");
        image_ref_done(&r);
}

static void test_bad(void **state) {
        check_bad("");
        check_bad("UPPER/case");
        check_bad("busybox:");
        check_bad("busybox@sha256:short");
        check_bad("busybox@md5:0123456789abcdef0123456789abcdef");
        check_bad("a//b");
        check_bad("-lead");
        check_bad("busybox:-tag");
        check_bad("name with space");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_normalize),
                cmocka_unit_test(test_host),
                cmocka_unit_test(test_bad),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
