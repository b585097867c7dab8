/* Unit tests of the metrics registry's text exposition: names, label escaping, histograms; and of the
 * endpoint's drain on a real loopback socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
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

/* A blocking client to the server's port; -errno when connect() fails. */
static int connect_to(const MetricsServer *s) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        unsigned port = 0;
        int fd, r;

        assert_int_equal(sscanf(metrics_server_url(s), "http://127.0.0.1:%u/", &port), 1);
        sa.sin_port = htons(port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        r = connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ? -errno : fd;
        if (r < 0)
                close(fd);
        return r;
}

static void drained(MetricsServer *s, void *userdata) {
        bool *done = userdata;

        *done = true;
        metrics_server_free(s);
}

static void test_server_drain(void **state) {
        struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
        static const char head[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
        MetricsServer *idle, *s;
        char answer[4096] = {};
        size_t n = 0;
        bool done = false;
        ssize_t k;
        Metrics *m;
        int fd;

        assert_non_null(loop);
        assert_int_equal(metrics_new(&m), 0);

        /* No connection: the port closes and the server is the caller's to free at once. */
        assert_int_equal(metrics_server_new(loop, "127.0.0.1:0", m, NULL, NULL, &idle), 0);
        assert_false(metrics_server_drain(idle, drained, &done));
        assert_int_equal(connect_to(idle), -ECONNREFUSED);
        metrics_server_free(idle);
        assert_false(done);

        /* A request half sent when the drain begins: new connections are refused, it is answered
         * and its connection closed, and then the server is freed. */
        assert_int_equal(metrics_server_new(loop, "127.0.0.1:0", m, NULL, NULL, &s), 0);
        fd = connect_to(s);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, head, strlen(head)), (ssize_t) strlen(head));
        ev_run(loop, EVRUN_ONCE); /* the connection is accepted */
        assert_true(metrics_server_drain(s, drained, &done));
        assert_int_equal(connect_to(s), -ECONNREFUSED);
        assert_int_equal(write(fd, "\r\n", 2), 2);
        for (unsigned i = 0; !done && i < 100; i++)
                ev_run(loop, EVRUN_ONCE); /* at most the 10 s drain timeout */
        assert_true(done);
        while (n < sizeof answer - 1 && (k = read(fd, answer + n, sizeof answer - 1 - n)) > 0)
                n += (size_t) k;
        assert_true(strncmp(answer, "HTTP/1.1 200", 12) == 0);
        assert_non_null(strcasestr(answer, "\r\nConnection: close\r\n"));
        close(fd);

        metrics_free(m);
        ev_loop_destroy(loop);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_counter_and_gauge),
                cmocka_unit_test(test_histogram),
                cmocka_unit_test(test_histogram_without_labels),
                cmocka_unit_test(test_numbers),
                cmocka_unit_test(test_process_sample),
                cmocka_unit_test(test_server_drain),
        };
        return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
