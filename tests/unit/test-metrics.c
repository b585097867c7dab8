/* Unit tests of the metrics registry's text exposition: names, label escaping, histograms. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metrics-server.h"
#include "metrics.h"

static char *render(Metrics *m) {
        char *text = NULL;
        size_t len = 0;

        assert_int_equal(metrics_render(m, &text, &len), 0);
        assert_non_null(text);
        assert_int_equal(strlen(text), len);
        return text;
}

static void test_empty(void **state) {
        Metrics *m;
        char *text;

        assert_int_equal(metrics_new(&m), 0);
        text = render(m);
        assert_string_equal(text, "");
        free(text);
        metrics_free(m);
        assert_null(metrics_free(NULL));
}

static void test_counter_and_gauge(void **state) {
        static const char *const labels[] = { "method", "code", NULL };
        MetricFamily *c, *g, *plain;
        Metrics *m;
        char *text;

        assert_int_equal(metrics_new(&m), 0);
        assert_int_equal(metrics_add_family(m, "x_requests_total", "Calls,\\ by method.\nSecond line.", METRIC_COUNTER,
                                            labels, NULL, 0, &c),
                         0);
        assert_int_equal(metrics_add_family(m, "x_pods", "Pods.", METRIC_GAUGE, (const char *const[]) { "state", NULL },
                                            NULL, 0, &g),
                         0);
        assert_int_equal(metrics_add_family(m, "x_plain", "", METRIC_GAUGE, NULL, NULL, 0, &plain), 0);
        /* Buckets are for histograms only. */
        assert_int_equal(metrics_add_family(m, "x_bad", "", METRIC_COUNTER, NULL, (const double[]) { 1 }, 1, NULL), -EINVAL);

        assert_int_equal(metrics_inc(c, (const char *const[]) { "Version", "OK" }, 1), 0);
        assert_int_equal(metrics_inc(c, (const char *const[]) { "Version", "OK" }, 1), 0);
        assert_int_equal(metrics_inc(c, (const char *const[]) { "a\"b\\c\nd", "NOT_FOUND" }, 1), 0);
        assert_true(metrics_get(c, (const char *const[]) { "Version", "OK" }) == 2);
        assert_true(metrics_get(c, (const char *const[]) { "Version", "INTERNAL" }) == 0);
        assert_int_equal(metrics_set(g, (const char *const[]) { "ready" }, 3), 0);
        assert_int_equal(metrics_set(g, (const char *const[]) { "ready" }, 1), 0);
        assert_int_equal(metrics_set(plain, NULL, 0.5), 0);
        /* histogram observations on a counter are refused */
        assert_int_equal(metrics_observe(c, (const char *const[]) { "a", "b" }, 1), -EINVAL);

        text = render(m);
        assert_string_equal(text,
                            "# HELP x_requests_total Calls,\\\\ by method.\\nSecond line.\n"
                            "# TYPE x_requests_total counter\n"
                            "x_requests_total{method=\"Version\",code=\"OK\"} 2\n"
                            "x_requests_total{method=\"a\\\"b\\\\c\\nd\",code=\"NOT_FOUND\"} 1\n"
                            "# HELP x_pods Pods.\n"
                            "# TYPE x_pods gauge\n"
                            "x_pods{state=\"ready\"} 1\n"
                            "# HELP x_plain \n"
                            "# TYPE x_plain gauge\n"
                            "x_plain 0.5\n");
        free(text);

        metrics_family_clear(g);
        text = render(m);
        assert_null(strstr(text, "x_pods{"));
        assert_non_null(strstr(text, "# TYPE x_pods gauge\n"));
        free(text);
        metrics_free(m);
}

static void test_histogram(void **state) {
        static const double buckets[] = { 0.0001, 0.1, 1, 10 };
        MetricFamily *h;
        Metrics *m;
        char *text;

        assert_int_equal(metrics_new(&m), 0);
        assert_int_equal(metrics_add_family(m, "x_seconds", "Latency.", METRIC_HISTOGRAM,
                                            (const char *const[]) { "method", NULL }, buckets, 4, &h),
                         0);
        assert_int_equal(metrics_observe(h, (const char *const[]) { "Run" }, 0.00005), 0); /* first bucket */
        assert_int_equal(metrics_observe(h, (const char *const[]) { "Run" }, 0.1), 0);     /* le is inclusive */
        assert_int_equal(metrics_observe(h, (const char *const[]) { "Run" }, 0.5), 0);
        assert_int_equal(metrics_observe(h, (const char *const[]) { "Run" }, 20), 0); /* only +Inf */
        assert_int_equal(metrics_observe(h, (const char *const[]) { "Stop" }, 2), 0);
        assert_true(metrics_get(h, (const char *const[]) { "Run" }) == 4);

        text = render(m);
        assert_string_equal(text,
                            "# HELP x_seconds Latency.\n"
                            "# TYPE x_seconds histogram\n"
                            "x_seconds_bucket{method=\"Run\",le=\"0.0001\"} 1\n"
                            "x_seconds_bucket{method=\"Run\",le=\"0.1\"} 2\n"
                            "x_seconds_bucket{method=\"Run\",le=\"1\"} 3\n"
                            "x_seconds_bucket{method=\"Run\",le=\"10\"} 3\n"
                            "x_seconds_bucket{method=\"Run\",le=\"+Inf\"} 4\n"
                            "x_seconds_sum{method=\"Run\"} 20.60005\n"
                            "x_seconds_count{method=\"Run\"} 4\n"
                            "x_seconds_bucket{method=\"Stop\",le=\"0.0001\"} 0\n"
                            "x_seconds_bucket{method=\"Stop\",le=\"0.1\"} 0\n"
                            "x_seconds_bucket{method=\"Stop\",le=\"1\"} 0\n"
                            "x_seconds_bucket{method=\"Stop\",le=\"10\"} 1\n"
                            "x_seconds_bucket{method=\"Stop\",le=\"+Inf\"} 1\n"
                            "x_seconds_sum{method=\"Stop\"} 2\n"
                            "x_seconds_count{method=\"Stop\"} 1\n");
        free(text);
        metrics_free(m);
}

static void test_histogram_without_labels(void **state) {
        MetricFamily *h;
        Metrics *m;
        char *text;

        assert_int_equal(metrics_new(&m), 0);
        assert_int_equal(metrics_add_family(m, "y", "Y.", METRIC_HISTOGRAM, NULL, (const double[]) { 2.5 }, 1, &h), 0);
        assert_int_equal(metrics_observe(h, NULL, 1), 0);
        text = render(m);
        assert_string_equal(text,
                            "# HELP y Y.\n"
                            "# TYPE y histogram\n"
                            "y_bucket{le=\"2.5\"} 1\n"
                            "y_bucket{le=\"+Inf\"} 1\n"
                            "y_sum 1\n"
                            "y_count 1\n");
        free(text);
        metrics_free(m);
}

static void test_numbers(void **state) {
        MetricFamily *g;
        Metrics *m;
        char *text;

        assert_int_equal(metrics_new(&m), 0);
        assert_int_equal(metrics_add_family(m, "z", "", METRIC_GAUGE, (const char *const[]) { "k", NULL }, NULL, 0, &g), 0);
        assert_int_equal(metrics_set(g, (const char *const[]) { "big" }, 123456789012.), 0);
        assert_int_equal(metrics_set(g, (const char *const[]) { "tenth" }, 0.1), 0);
        assert_int_equal(metrics_set(g, (const char *const[]) { "neg" }, -3), 0);
        assert_int_equal(metrics_set(g, (const char *const[]) { "huge" }, 1e300), 0);
        text = render(m);
        assert_non_null(strstr(text, "z{k=\"big\"} 123456789012\n"));
        assert_non_null(strstr(text, "z{k=\"tenth\"} 0.1\n"));
        assert_non_null(strstr(text, "z{k=\"neg\"} -3\n"));
        assert_non_null(strstr(text, "z{k=\"huge\"} 1e+300\n"));
        free(text);
        metrics_free(m);
}

static void test_process_sample(void **state) {
        uint64_t fds = 0, rss = 0;

        assert_int_equal(metrics_process_sample(&fds, &rss), 0);
        assert_true(fds >= 3); /* stdin, stdout, stderr at least: not the directory's own */
        assert_true(rss > 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_counter_and_gauge),
                cmocka_unit_test(test_histogram),
                cmocka_unit_test(test_histogram_without_labels),
                cmocka_unit_test(test_numbers),
                cmocka_unit_test(test_process_sample),
        };
        return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
