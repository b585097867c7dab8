/* Unit tests of rktlet.conf parsing: keys, drop-in order, unknown keys, bad values, JSON output. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "config.h"
#include "log.h"
#include "parse-util.h"

static char dir[] = "/tmp/test-config-XXXXXX";

static void write_file(const char *name, const char *text) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

typedef struct Warnings {
        int n;
        char last_origin[512];
        char last_message[512];
} Warnings;

static void warn(const char *origin, const char *message, void *userdata) {
        Warnings *w = userdata;
        w->n++;
        snprintf(w->last_origin, sizeof w->last_origin, "%s", origin);
        snprintf(w->last_message, sizeof w->last_message, "%s", message);
}

static int setup(void **state) {
        char path[512];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/rktlet.conf.d", dir);
        assert_int_equal(mkdir(path, 0755), 0);
        return 0;
}

static int teardown(void **state) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static void test_defaults_and_missing_file(void **state) {
        Config c;
        char *error = NULL, path[512];

        snprintf(path, sizeof path, "%s/missing.conf", dir);
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load(&c, path, NULL, NULL, &error), 0);
        assert_null(error);
        assert_string_equal(c.listen, "/run/rktlet/rktlet.sock");
        assert_int_equal(c.max_message_size, 16u << 20);
        assert_false(c.user_bus);
        assert_int_equal(c.log_level, LOG_INFO);
        config_done(&c);
}

static void test_main_file_and_dropins(void **state) {
        Config c;
        Warnings w = {};
        char *error = NULL, path[512];

        write_file("rktlet.conf",
                   "# comment\n"
                   "[Daemon]\n"
                   "Listen=/run/test/a.sock\n"
                   "LogLevel=debug\n"
                   "\n"
                   "[GRPC]\n"
                   "MaxMessageSize=4M\n"
                   "NoSuchKey=1\n");
        write_file("rktlet.conf.d/20-later.conf", "[GRPC]\nMaxMessageSize=2M\n");
        write_file("rktlet.conf.d/10-earlier.conf", "[GRPC]\nMaxMessageSize=8M\n[Daemon]\nBus=user\n");
        write_file("rktlet.conf.d/ignored.txt", "[GRPC]\nMaxMessageSize=garbage\n");

        snprintf(path, sizeof path, "%s/rktlet.conf", dir);
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load(&c, path, warn, &w, &error), 0);
        assert_null(error);
        assert_string_equal(c.listen, "/run/test/a.sock");
        assert_int_equal(c.log_level, LOG_DEBUG);
        assert_int_equal(c.max_message_size, 2u << 20); /* 20-later wins over 10-earlier and the main file */
        assert_true(c.user_bus);

        /* The unknown key is reported with file and line, and ignored. */
        assert_int_equal(w.n, 1);
        char want[600];
        snprintf(want, sizeof want, "%s/rktlet.conf:8", dir);
        assert_string_equal(w.last_origin, want);
        assert_non_null(strstr(w.last_message, "NoSuchKey"));

        /* A command-line value goes through the same parser and overrides the files. */
        assert_int_equal(config_set(&c, "GRPC", "MaxMessageSize", "1K", &error), 0);
        assert_int_equal(c.max_message_size, 1024);
        config_done(&c);

        unlink(path);
        snprintf(path, sizeof path, "%s/rktlet.conf.d/20-later.conf", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/rktlet.conf.d/10-earlier.conf", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/rktlet.conf.d/ignored.txt", dir);
        unlink(path);
}

static void test_bad_value_names_file_and_line(void **state) {
        Config c;
        char *error = NULL, path[512];

        write_file("bad.conf", "[Daemon]\nLogLevel=info\nLogLevel=loud\n");
        snprintf(path, sizeof path, "%s/bad.conf", dir);
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load(&c, path, NULL, NULL, &error), -EINVAL);
        assert_non_null(error);
        char want[600];
        snprintf(want, sizeof want, "%s/bad.conf:3", dir);
        assert_non_null(strstr(error, want));
        assert_non_null(strstr(error, "loud"));
        assert_non_null(strstr(error, "LogLevel"));
        free(error);
        config_done(&c);
        unlink(path);
}

static void test_bad_values(void **state) {
        static const char *const bad[][3] = {
                { "Daemon", "Listen", "relative/path.sock" },
                { "Daemon", "Bus", "session" },
                { "GRPC", "MaxMessageSize", "abc" },
                { "GRPC", "MaxMessageSize", "0" },
                { "GRPC", "MaxMessageSize", "5G" },
                { "GRPC", "MaxConcurrentStreams", "-1" },
                { "Daemon", "ShutdownTimeoutSec", "soon" },
                { "CRI", "StreamChunkItems", "0" },
                { "CRI", "EventQueueLength", "many" },
                { "Metrics", "Address", "localhost:9899" },
                { "Metrics", "Address", "127.0.0.1" },
                { "Metrics", "Address", "::1:9899" },
        };
        Config c;

        assert_int_equal(config_init(&c), 0);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char *why = NULL;
                assert_int_equal(config_set(&c, bad[i][0], bad[i][1], bad[i][2], &why), -EINVAL);
                assert_non_null(why);
                free(why);
        }
        char *why = NULL;
        assert_int_equal(config_set(&c, "Daemon", "Nope", "x", &why), -ENOENT);
        /* [CRI]: the defaults, then what is set. */
        assert_int_equal(c.stream_chunk_items, 500);
        assert_int_equal(c.event_queue_length, 1000);
        assert_int_equal(config_set(&c, "CRI", "StreamChunkItems", "2", &why), 0);
        assert_int_equal(config_set(&c, "CRI", "EventQueueLength", "6", &why), 0);
        assert_int_equal(c.stream_chunk_items, 2);
        assert_int_equal(c.event_queue_length, 6);
        /* [Metrics] Address=: off by default, and empty turns it off again. */
        assert_string_equal(c.metrics_address, "");
        assert_int_equal(config_set(&c, "Metrics", "Address", "[::1]:9899", &why), 0);
        assert_string_equal(c.metrics_address, "[::1]:9899");
        assert_int_equal(config_set(&c, "Metrics", "Address", "", &why), 0);
        assert_string_equal(c.metrics_address, "");
        config_done(&c);
}

static void test_syntax_error(void **state) {
        Config c;
        char *error = NULL, path[512];

        write_file("syntax.conf", "[Daemon]\nthis line has no equals sign\n");
        snprintf(path, sizeof path, "%s/syntax.conf", dir);
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load(&c, path, NULL, NULL, &error), -EINVAL);
        assert_non_null(strstr(error, "syntax.conf:2"));
        free(error);
        config_done(&c);
        unlink(path);
}

static void test_json(void **state) {
        Config c;
        char *json = NULL, *why = NULL;

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_set(&c, "Daemon", "Listen", "/run/x \"quoted\".sock", &why), 0);
        assert_int_equal(config_to_json(&c, &json), 0);
        assert_non_null(strstr(json, "\"listen\":\"/run/x \\\"quoted\\\".sock\""));
        assert_non_null(strstr(json, "\"maxMessageSize\":16777216"));
        free(json);
        config_done(&c);
}

/* --dump-config: what it prints loads back into the same configuration, defaults and every kind of
 * value changed alike (a key added without a dump form fails here). */
static void dump_round_trip(Config *c) {
        char path[512], *a = NULL, *b = NULL, *error = NULL;
        Config back;

        snprintf(path, sizeof path, "%s/dumped.conf", dir);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(config_dump(c, f), 0);
        fclose(f);
        assert_int_equal(config_init(&back), 0);
        assert_int_equal(config_load(&back, path, NULL, NULL, &error), 0);
        assert_null(error);
        assert_int_equal(config_to_json(c, &a), 0);
        assert_int_equal(config_to_json(&back, &b), 0);
        assert_string_equal(a, b);
        free(a);
        free(b);
        config_done(&back);
        unlink(path);
}

static void test_dump_round_trip(void **state) {
        static const char *const set[][3] = {
                { "Daemon", "Bus", "user" },
                { "Daemon", "LogLevel", "debug" },
                { "Daemon", "ShutdownTimeoutSec", "1500ms" },
                { "GRPC", "MaxMessageSize", "3M" },
                { "CNI", "PluginTimeoutSec", "250us" },
                { "CNI", "ConfTemplate", "/etc/rktlet/cni.tmpl" },
                { "Registries", "Insecure", "a:5000,b" },
                { "Registries", "Mirrors", "docker.io=m1|m2" },
                { "Registries", "Blocked", "evil.example,c:5000" },
                { "Registries", "CertsDir", "/srv/certs.d" },
                { "Registries", "AuthFile", "" },
                { "Images", "MinFreeSpace", "2G" },
                { "Streaming", "Address", "::1" },
                { "Streaming", "Port", "10010" },
                { "Streaming", "TLSCertificate", "/etc/rktlet/tls/cert.pem" },
                { "CRI", "StreamChunkItems", "7" },
                { "Metrics", "Address", "[::1]:9899" },
        };
        char *error = NULL;
        Config c;

        assert_int_equal(config_init(&c), 0);
        dump_round_trip(&c);
        for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
                assert_int_equal(config_set(&c, set[i][0], set[i][1], set[i][2], &error), 0);
        dump_round_trip(&c);
        /* Runtime handlers: one with every key, one with none but Path= (empty: its name). */
        assert_int_equal(config_set(&c, "Containers", "DefaultRuntime", "fast", &error), 0);
        assert_int_equal(config_set(&c, "Runtime.fast", "Path", "/usr/bin/crun", &error), 0);
        assert_int_equal(config_set(&c, "Runtime.fast", "Root", "/run/fast", &error), 0);
        assert_int_equal(config_set(&c, "Runtime.fast", "Options", "--debug --systemd-cgroup", &error), 0);
        assert_int_equal(config_set(&c, "Runtime.plain", "Path", "", &error), 0);
        dump_round_trip(&c);
        config_done(&c);
}

/* [Runtime.<name>] sections: made by their first key, in the order first seen, a later file's
 * key replacing an earlier one's; names as Kubernetes allows RuntimeClass handlers. */
static void test_runtime_sections(void **state) {
        char path[512], *error = NULL;
        Config c;

        snprintf(path, sizeof path, "%s/runtimes.conf", dir);
        write_file("runtimes.conf", "[Containers]\nDefaultRuntime=kata-like\n"
                                    "[Runtime.kata-like]\nPath=/opt/kata/bin/runtime\nOptions=--debug\n"
                                    "[Runtime.runc]\nRoot=/run/my-runc\n"
                                    "[Runtime.kata-like]\nRoot=/run/kata\n");
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load(&c, path, NULL, NULL, &error), 0);
        assert_string_equal(c.default_runtime, "kata-like");
        assert_int_equal(c.n_runtimes, 2);
        assert_string_equal(c.runtimes[0].name, "kata-like");
        assert_string_equal(c.runtimes[0].path, "/opt/kata/bin/runtime");
        assert_string_equal(c.runtimes[0].root, "/run/kata");
        assert_string_equal(c.runtimes[0].options, "--debug");
        assert_string_equal(c.runtimes[1].name, "runc");
        assert_string_equal(c.runtimes[1].path, "");
        assert_string_equal(c.runtimes[1].root, "/run/my-runc");
        config_done(&c);

        static const char *const bad[][3] = {
                { "Runtime.Upper", "Path", "runc" },
                { "Runtime.-dash", "Path", "runc" },
                { "Runtime.", "Path", "runc" },
                { "Runtime.a_b", "Path", "runc" },
                { "Runtime.rel", "Path", "bin/runc" },
                { "Runtime.rel", "Root", "relative" },
                { "Runtime.q", "Options", "--x=\"a b\"" },
                { "Containers", "DefaultRuntime", "Not-A-Label" },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                assert_int_equal(config_init(&c), 0);
                assert_int_equal(config_set(&c, bad[i][0], bad[i][1], bad[i][2], &error), -EINVAL);
                assert_non_null(error);
                free(error);
                error = NULL;
                assert_int_equal(c.n_runtimes, 0); /* nothing half-made */
                config_done(&c);
        }
        /* 63 characters is the most */
        char name[80] = "Runtime.";
        memset(name + 8, 'a', 63);
        name[8 + 63] = '\0';
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_set(&c, name, "Path", "runc", &error), 0);
        strcat(name, "a");
        assert_int_equal(config_set(&c, name, "Path", "runc", &error), -EINVAL);
        free(error);
        error = NULL;
        assert_int_equal(config_set(&c, "Runtime.x", "NoSuchKey", "1", &error), -ENOENT);
        assert_int_equal(c.n_runtimes, 1);
        config_done(&c);

        /* From a file, a section name that inih would cut short is an error, not another name. */
        char text[200];
        snprintf(text, sizeof text, "[Runtime.%.41s]\nPath=runc\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        write_file("runtimes.conf", text);
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load(&c, path, NULL, NULL, &error), 0);
        assert_int_equal(c.n_runtimes, 1);
        assert_int_equal(strlen(c.runtimes[0].name), 41);
        config_done(&c);
        snprintf(text, sizeof text, "[Containers]\n[Runtime.%.42s]\nPath=runc\n",
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        write_file("runtimes.conf", text);
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_load(&c, path, NULL, NULL, &error), -EINVAL);
        assert_non_null(error);
        assert_non_null(strstr(error, "runtimes.conf:2: section name"));
        assert_non_null(strstr(error, "is too long"));
        free(error);
        config_done(&c);
}

static void test_parse_util(void **state) {
        uint64_t v;

        assert_int_equal(parse_size("16M", &v), 0);
        assert_int_equal(v, 16u << 20);
        assert_int_equal(parse_size("1KiB", &v), 0);
        assert_int_equal(v, 1024);
        assert_int_equal(parse_size("12", &v), 0);
        assert_int_equal(v, 12);
        assert_int_equal(parse_size("1X", &v), -EINVAL);
        assert_int_equal(parse_size("", &v), -EINVAL);
        assert_int_equal(parse_size("99999999999999999999", &v), -ERANGE);
        assert_int_equal(parse_sec("10", &v), 0);
        assert_int_equal(v, 10000000);
        assert_int_equal(parse_sec("500ms", &v), 0);
        assert_int_equal(v, 500000);
        assert_int_equal(parse_sec("2min", &v), 0);
        assert_int_equal(v, 120000000);
        assert_int_equal(parse_sec("2 weeks", &v), -EINVAL);
}

static void test_parse_ip_and_cidr(void **state) {
        unsigned prefix = 99;

        assert_int_equal(parse_ip("10.0.0.1"), AF_INET);
        assert_int_equal(parse_ip("fd00::1"), AF_INET6);
        assert_int_equal(parse_ip("1.2.3.4; rm -rf /"), -EINVAL);
        assert_int_equal(parse_ip(" 10.0.0.1"), -EINVAL);
        assert_int_equal(parse_ip("localhost"), -EINVAL);
        assert_int_equal(parse_ip(""), -EINVAL);
        assert_int_equal(parse_cidr("10.0.0.0/24", &prefix), AF_INET);
        assert_int_equal(prefix, 24);
        assert_int_equal(parse_cidr("::/0", &prefix), AF_INET6);
        assert_int_equal(prefix, 0);
        assert_int_equal(parse_cidr("::/128", NULL), AF_INET6);
        assert_int_equal(parse_cidr("0.0.0.0/32", NULL), AF_INET);
        assert_int_equal(parse_cidr("10.0.0.0/33", NULL), -EINVAL);
        assert_int_equal(parse_cidr("::/129", NULL), -EINVAL);
        assert_int_equal(parse_cidr("10.0.0.0", NULL), -EINVAL);
        assert_int_equal(parse_cidr("10.0.0.0/", NULL), -EINVAL);
        assert_int_equal(parse_cidr("10.0.0.0/+8", NULL), -EINVAL);
        assert_int_equal(parse_cidr("10.0.0.0/8x", NULL), -EINVAL);
        assert_int_equal(parse_cidr("/8", NULL), -EINVAL);

        char host[64];
        uint16_t port;
        assert_int_equal(parse_ip_port("127.0.0.1:9899", host, sizeof host, &port), AF_INET);
        assert_string_equal(host, "127.0.0.1");
        assert_int_equal(port, 9899);
        assert_int_equal(parse_ip_port("[::1]:0", host, sizeof host, &port), AF_INET6);
        assert_string_equal(host, "::1");
        assert_int_equal(port, 0);
        assert_int_equal(parse_ip_port("::1:9899", NULL, 0, NULL), -EINVAL);
        assert_int_equal(parse_ip_port("[127.0.0.1]:9899", NULL, 0, NULL), -EINVAL);
        assert_int_equal(parse_ip_port("127.0.0.1:65536", NULL, 0, NULL), -EINVAL);
        assert_int_equal(parse_ip_port("127.0.0.1:", NULL, 0, NULL), -EINVAL);
        assert_int_equal(parse_ip_port("127.0.0.1", NULL, 0, NULL), -EINVAL);
        assert_int_equal(parse_ip_port("[::1]", NULL, 0, NULL), -EINVAL);
        assert_int_equal(parse_ip_port("host:80", NULL, 0, NULL), -EINVAL);
        assert_int_equal(parse_ip_port("127.0.0.1:80", host, 4, NULL), -ENOBUFS);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults_and_missing_file),
                cmocka_unit_test(test_main_file_and_dropins),
                cmocka_unit_test(test_bad_value_names_file_and_line),
                cmocka_unit_test(test_bad_values),
                cmocka_unit_test(test_parse_ip_and_cidr),
                cmocka_unit_test(test_syntax_error),
                cmocka_unit_test(test_json),
                cmocka_unit_test(test_dump_round_trip),
                cmocka_unit_test(test_runtime_sections),
                cmocka_unit_test(test_parse_util),
        };
        return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
