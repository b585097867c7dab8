/* Unit tests of resource values for live updates: cpusets as systemd's bitmaps, cpu shares on the
 * CPUWeight scale (src/systemd/systemd-resources.c), and what an update may ask
 * (ctr_resources_check(), src/ctr/ctr-update.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ctr.h"
#include "systemd-unit.h"

static void test_cpuset_parse(void **state) {
        uint8_t *bits;
        size_t n;

        assert_int_equal(systemd_cpuset_parse("0", &bits, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(bits[0], 0x01);
        free(bits);
        assert_int_equal(systemd_cpuset_parse("0-3,7,9-10", &bits, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(bits[0], 0x8f);
        assert_int_equal(bits[1], 0x06);
        free(bits);
        assert_int_equal(systemd_cpuset_parse("8191", &bits, &n), 0);
        assert_int_equal(n, 1024);
        assert_int_equal(bits[1023], 0x80);
        free(bits);
        const char *bad[] = { "", "8192", "a", "0-", "-1", "3-1", "1,", ",1", "1 2", "0x1", "1--2" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_int_equal(systemd_cpuset_parse(bad[i], &bits, &n), -EINVAL);
}

static void test_shares_to_weight(void **state) {
        /* runc's and the kernel's own conversion: 1 + (shares - 2) * 9999 / 262142. */
        assert_int_equal(systemd_shares_to_weight(2), 1);
        assert_int_equal(systemd_shares_to_weight(1024), 1 + 1022 * 9999 / 262142);
        assert_int_equal(systemd_shares_to_weight(262144), 10000);
        assert_int_equal(systemd_shares_to_weight(1), 1);           /* clamped */
        assert_int_equal(systemd_shares_to_weight(1 << 30), 10000); /* clamped */
}

static void check(const CtrResources *r, bool ok) {
        Error e = ERROR_INIT;
        int k = ctr_resources_check(r, &e);

        if (ok)
                assert_int_equal(k, 0);
        else {
                assert_true(k < 0);
                assert_int_equal(e.kind, ERROR_INVALID_ARGUMENT);
                assert_non_null(e.message);
        }
        error_done(&e);
}

static void test_resources_check(void **state) {
        check(&(CtrResources) {}, true);
        check(&(CtrResources) { .cpu_shares = 2, .cpu_quota = 1000, .cpu_period = 1000000, .memory_limit = 1,
                                .memory_swap_limit = 1, .pids_limit = 1, .cpuset_cpus = "0-1", .cpuset_mems = "0" },
              true);
        check(&(CtrResources) { .cpu_quota = -1, .memory_limit = -1, .memory_swap_limit = -1, .pids_limit = -1 }, true);
        check(&(CtrResources) { .cpu_shares = 1 }, false);
        check(&(CtrResources) { .cpu_shares = 262145 }, false);
        check(&(CtrResources) { .cpu_quota = 999 }, false);
        check(&(CtrResources) { .cpu_quota = -2 }, false);
        check(&(CtrResources) { .cpu_period = 999 }, false);
        check(&(CtrResources) { .cpu_period = 1000001 }, false);
        check(&(CtrResources) { .memory_limit = -2 }, false);
        check(&(CtrResources) { .memory_limit = 100, .memory_swap_limit = 99 }, false);
        check(&(CtrResources) { .memory_limit = -1, .memory_swap_limit = 99 }, false);
        check(&(CtrResources) { .pids_limit = -2 }, false);
        check(&(CtrResources) { .cpuset_cpus = "x" }, false);
        check(&(CtrResources) { .cpuset_mems = "0-" }, false);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cpuset_parse),
                cmocka_unit_test(test_shares_to_weight),
                cmocka_unit_test(test_resources_check),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
