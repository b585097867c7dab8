/* Unit tests of CNI: the addresses of ADD results (spec 0.4.0 and 1.0.0, malformed and hostile
 * ones), the configuration directory's loader (which file decides, which are skipped and why) and
 * plugin chains run for real (shell-script plugins on a real libev loop). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "child.h"
#include "cni.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "strv.h"
#include "test-loop.h"

static char dir[] = "/tmp/test-cni-XXXXXX";
static char conf[512], bin[512], other_bin[512];
static struct ev_loop *loop;

static void write_at(const char *d, const char *name, const char *text, unsigned mode) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", d, name);
        assert_int_equal(write_file_replace(path, text, strlen(text), mode), 0);
}

static void conf_file(const char *name, const char *text) {
        write_at(conf, name, text, 0644);
}

/* A plugin: a shell script. */
static void plugin(const char *name, const char *script) {
        char text[4096];
        snprintf(text, sizeof text, "#!/bin/sh\n%s\n", script);
        write_at(bin, name, text, 0755);
}

static int setup(void **state) {
        assert_non_null(mkdtemp(dir));
        snprintf(conf, sizeof conf, "%s/net.d", dir);
        snprintf(bin, sizeof bin, "%s/bin", dir);
        snprintf(other_bin, sizeof other_bin, "%s/bin2", dir);
        signal(SIGPIPE, SIG_IGN); /* as the daemon: a plugin that does not read its input is no crash */
        loop = ev_loop_new(EVBACKEND_EPOLL); /* not the default loop: its SIGCHLD watcher would reap the children */
        return loop ? 0 : -1;
}

static int teardown(void **state) {
        ev_loop_destroy(loop);
        return rm_rf(dir) < 0 ? -1 : 0;
}

/* Each loader test starts from an empty configuration directory and the usual plugins. */
static int fresh(void **state) {
        if (rm_rf(conf) < 0 || rm_rf(bin) < 0 || mkdir_p(conf, 0755) < 0 || mkdir_p(bin, 0755) < 0 ||
            mkdir_p(other_bin, 0755) < 0)
                return -1;
        plugin("bridge", "exit 0");
        plugin("portmap", "exit 0");
        return 0;
}

static char **ips_of(const char *result, size_t *ret_n) {
        char **ips = NULL;
        assert_int_equal(cni_result_ips(result, &ips, ret_n), 0);
        assert_non_null(ips);
        assert_null(ips[*ret_n]);
        return ips;
}

/* --- results -------------------------------------------------------------------------------------- */

static void test_result_1_0_0(void **state) {
        /* What the bridge plugin with host-local IPAM prints, dual-stack, IPv6 range first. */
        const char *result = "{\"cniVersion\":\"1.0.0\","
                             "\"interfaces\":[{\"name\":\"cni0\",\"mac\":\"0a:58:0a:f4:00:01\"},"
                             "{\"name\":\"veth1\",\"mac\":\"c2:1e:0d:aa:bb:cc\"},"
                             "{\"name\":\"eth0\",\"mac\":\"0a:58:0a:f4:00:05\",\"sandbox\":\"/run/netns/x\"}],"
                             "\"ips\":[{\"interface\":2,\"address\":\"fd00:10:244::5/64\",\"gateway\":\"fd00:10:244::1\"},"
                             "{\"interface\":2,\"address\":\"10.244.0.5/24\",\"gateway\":\"10.244.0.1\"}],"
                             "\"routes\":[{\"dst\":\"0.0.0.0/0\"},{\"dst\":\"::/0\",\"gw\":\"fd00:10:244::1\"}],"
                             "\"dns\":{\"nameservers\":[\"10.96.0.10\"],\"domain\":\"cluster.local\","
                             "\"search\":[\"default.svc.cluster.local\"],\"options\":[\"ndots:5\"]}}";
        size_t n;
        char **ips = ips_of(result, &n);

        /* The pod's IP is the first IPv4 address, the prefix length dropped; then the others. */
        assert_int_equal(n, 2);
        assert_string_equal(ips[0], "10.244.0.5");
        assert_string_equal(ips[1], "fd00:10:244::5");
        strv_free(ips);
}

static void test_result_0_4_0(void **state) {
        /* 0.4.0 results carry "version" in each IP; several IPv4 addresses keep their order. */
        const char *result = "{\"cniVersion\":\"0.4.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/x\"}],"
                             "\"ips\":[{\"version\":\"6\",\"interface\":0,\"address\":\"2001:db8::2/64\"},"
                             "{\"version\":\"4\",\"interface\":0,\"address\":\"192.168.1.7/24\",\"gateway\":\"192.168.1.1\"},"
                             "{\"version\":\"6\",\"interface\":0,\"address\":\"2001:db8:1::3/64\"},"
                             "{\"version\":\"4\",\"interface\":0,\"address\":\"192.168.2.8/24\"}],"
                             "\"routes\":[{\"dst\":\"0.0.0.0/0\",\"gw\":\"192.168.1.1\"}],\"dns\":{}}";
        size_t n;
        char **ips = ips_of(result, &n);

        assert_int_equal(n, 4);
        assert_string_equal(ips[0], "192.168.1.7");
        assert_string_equal(ips[1], "2001:db8::2");
        assert_string_equal(ips[2], "2001:db8:1::3");
        assert_string_equal(ips[3], "192.168.2.8");
        strv_free(ips);

        /* IPv6 only: the order of the result. An address without a prefix stays as it is. */
        ips = ips_of("{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"fd00::9\"},{\"address\":\"fd00::a/128\"}]}", &n);
        assert_int_equal(n, 2);
        assert_string_equal(ips[0], "fd00::9");
        assert_string_equal(ips[1], "fd00::a");
        strv_free(ips);
}

static void test_result_without_ips(void **state) {
        /* A chain without IPAM (a "none" network), and results that are JSON but not objects. */
        const char *results[] = {
                "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\"}],\"dns\":{}}",
                "{\"cniVersion\":\"1.0.0\",\"ips\":[]}",
                "{\"ips\":null}",
                "{\"ips\":{\"address\":\"10.0.0.1/8\"}}",
                "{\"ips\":\"10.0.0.1/8\"}",
                "[]",
                "[{\"address\":\"10.0.0.1\"}]",
                "42",
                "\"ips\"",
                "null",
        };
        for (size_t i = 0; i < sizeof results / sizeof *results; i++) {
                size_t n = 99;
                char **ips = ips_of(results[i], &n);
                assert_int_equal(n, 0);
                strv_free(ips);
        }
}

static void test_result_hostile(void **state) {
        size_t n;
        char **ips;

        /* Not JSON, truncated, empty: refused. */
        const char *broken[] = { "", "not json", "{\"ips\":[{\"address\":\"10.0.0.1/8\"}", "{\"ips\":[}", "{]" };
        for (size_t i = 0; i < sizeof broken / sizeof *broken; i++) {
                ips = NULL;
                assert_int_equal(cni_result_ips(broken[i], &ips, &n), -EINVAL);
                assert_null(ips);
        }

        /* Entries that are not IP objects, addresses that are not strings or not addresses: the bad
         * ones are left out, the good one stays the pod's. */
        ips = ips_of("{\"ips\":[1,\"x\",null,[],{},{\"address\":5},{\"address\":[\"10.1.1.1\"]},"
                     "{\"address\":{}},{\"address\":\"\"},{\"address\":\"/24\"},{\"address\":\"hello/world\"},"
                     "{\"address\":\"10.9.9.9/99\"}]}",
                     &n);
        assert_int_equal(n, 4); /* "", "", "hello", "10.9.9.9": strings are taken as given */
        assert_string_equal(ips[0], "10.9.9.9");
        strv_free(ips);

        /* Many addresses, a huge one, deep nesting: no crash, bounded work. */
        size_t big = 4096; /* yajl grows arrays one element at a time: more is quadratic under ASan */
        char *s = malloc(big * 40 + 64), *p = s;
        assert_non_null(s);
        p += sprintf(p, "{\"ips\":[");
        for (size_t i = 0; i < big; i++)
                p += sprintf(p, "%s{\"address\":\"fd00::%zx/64\"}", i ? "," : "", i % 0xffff);
        sprintf(p, ",{\"address\":\"10.0.0.1/8\"}]}");
        ips = ips_of(s, &n);
        assert_int_equal(n, big + 1);
        assert_string_equal(ips[0], "10.0.0.1");
        assert_string_equal(ips[1], "fd00::0");
        strv_free(ips);
        free(s);

        s = malloc(1024 * 1024 + 64);
        assert_non_null(s);
        p = s + sprintf(s, "{\"ips\":[{\"address\":\"");
        memset(p, 'a', 1024 * 1024);
        strcpy(p + 1024 * 1024, "/1\"}]}");
        ips = ips_of(s, &n);
        assert_int_equal(n, 1);
        assert_int_equal(strlen(ips[0]), 1024 * 1024);
        strv_free(ips);
        free(s);

        size_t depth = 20000;
        s = malloc(2 * depth + 16);
        assert_non_null(s);
        memset(s, '[', depth);
        memset(s + depth, ']', depth);
        s[2 * depth] = '\0';
        ips = NULL;
        int r = cni_result_ips(s, &ips, &n);
        assert_true(r == 0 || r == -EINVAL);
        if (r == 0) {
                assert_int_equal(n, 0);
                strv_free(ips);
        }
        free(s);
}

/* --- the configuration directory ------------------------------------------------------------------ */

static Cni *load(void) {
        Cni *c = NULL;
        char dirs[1100];
        snprintf(dirs, sizeof dirs, "%s:%s", other_bin, bin);
        assert_int_equal(cni_new(loop, conf, dirs, 5 * 1000 * 1000, &c), 0);
        assert_non_null(c);
        return c;
}

static void assert_ready(Cni *c, const char *name) {
        const char *reason = "x", *message = "x";
        assert_true(cni_ready(c, &reason, &message));
        assert_null(reason);
        assert_null(message);
        assert_string_equal(cni_network_name(c), name);
}

static void assert_not_ready(Cni *c, const char *part) {
        const char *reason = NULL, *message = NULL;
        assert_false(cni_ready(c, &reason, &message));
        assert_string_equal(reason, "NetworkPluginNotReady");
        assert_non_null(message);
        if (!strstr(message, part))
                fail_msg("message '%s' does not say '%s'", message, part);
        assert_null(cni_network_name(c));
}

#define LIST(name, plugins) "{\"cniVersion\":\"1.0.0\",\"name\":\"" name "\",\"plugins\":[" plugins "]}"

static void test_empty_and_missing_dir(void **state) {
        Cni *c = load();
        assert_not_ready(c, "no network configuration in");
        cni_free(c);

        assert_int_equal(rm_rf(conf), 0);
        c = load();
        assert_not_ready(c, "cannot read");
        cni_free(c);
}

static void test_first_valid_file_decides(void **state) {
        /* Sorted by name; the broken ones before the first valid file are skipped, each for its
         * reason; files after it are not looked at. */
        conf_file("00-bad-json.conflist", "{\"name\": \"x\", \"plugins\": [");
        conf_file("01-no-name.conflist", "{\"cniVersion\":\"1.0.0\",\"plugins\":[{\"type\":\"bridge\"}]}");
        conf_file("02-empty-name.conf", "{\"name\":\"\",\"type\":\"bridge\"}");
        conf_file("03-no-plugins.conflist", "{\"cniVersion\":\"1.0.0\",\"name\":\"a\"}");
        conf_file("04-empty-plugins.conflist", LIST("b", ""));
        conf_file("05-plugins-object.conflist", "{\"name\":\"c\",\"plugins\":{\"type\":\"bridge\"}}");
        conf_file("06-plugin-no-type.conflist", LIST("d", "{\"type\":\"bridge\"},{\"name\":\"x\"}"));
        conf_file("07-type-not-string.conflist", LIST("e", "{\"type\":7}"));
        conf_file("08-conf-no-type.conf", "{\"cniVersion\":\"1.0.0\",\"name\":\"f\"}");
        conf_file("09-not-object.conf", "[\"bridge\"]");
        conf_file("10-empty.conf", "");
        conf_file(".20-hidden.conflist", LIST("hidden", "{\"type\":\"bridge\"}"));
        conf_file("20-other-suffix.yaml", LIST("yaml", "{\"type\":\"bridge\"}"));
        conf_file("30-good.conflist", LIST("good", "{\"type\":\"bridge\"},{\"type\":\"portmap\"}"));
        conf_file("40-later.conflist", LIST("later", "{\"type\":\"bridge\"}"));
        Cni *c = load();
        assert_ready(c, "good");

        /* The directory changes: read again on demand. */
        conf_file("29-earlier.json", "{\"cniVersion\":\"0.4.0\",\"name\":\"earlier\",\"type\":\"portmap\"}");
        cni_reload(c);
        assert_ready(c, "earlier");
        cni_free(c);
}

static void test_versions_not_checked(void **state) {
        /* The loader does not look at cniVersion (a plugin refuses one it does not speak, at ADD):
         * a file without one, or with one nobody knows, is taken. */
        conf_file("10-future.conflist", "{\"cniVersion\":\"99.0.0\",\"name\":\"future\",\"plugins\":[{\"type\":\"bridge\"}]}");
        Cni *c = load();
        assert_ready(c, "future");
        cni_free(c);
        assert_int_equal(rm_rf(conf), 0);
        assert_int_equal(mkdir_p(conf, 0755), 0);
        conf_file("10-none.conf", "{\"name\":\"none\",\"type\":\"bridge\"}");
        c = load();
        assert_ready(c, "none");
        cni_free(c);
}

static void test_missing_plugin(void **state) {
        /* The first valid file's plugins must all exist: it is not ready, and later files do not
         * stand in for it. */
        conf_file("10-net.conflist", LIST("net", "{\"type\":\"bridge\"},{\"type\":\"flannel\"}"));
        conf_file("20-other.conflist", LIST("other", "{\"type\":\"bridge\"}"));
        Cni *c = load();
        assert_not_ready(c, "CNI plugin 'flannel' of network 'net'");
        assert_not_ready(c, "not found in");

        /* A plugin type is a file name in the plugin directories, never a path. */
        conf_file("10-net.conflist", LIST("net", "{\"type\":\"../bin/bridge\"}"));
        cni_reload(c);
        assert_not_ready(c, "CNI plugin '../bin/bridge'");
        conf_file("10-net.conflist", LIST("net", "{\"type\":\"..\"}"));
        cni_reload(c);
        assert_not_ready(c, "CNI plugin '..'");
        conf_file("10-net.conflist", LIST("net", "{\"type\":\"\"}"));
        cni_reload(c);
        assert_not_ready(c, "CNI plugin ''");
        /* Not executable is not there. */
        write_at(bin, "flannel", "#!/bin/sh\nexit 0\n", 0644);
        conf_file("10-net.conflist", LIST("net", "{\"type\":\"flannel\"}"));
        cni_reload(c);
        assert_not_ready(c, "CNI plugin 'flannel'");
        /* Found in the second directory of the path. */
        plugin("flannel", "exit 0");
        cni_reload(c);
        assert_ready(c, "net");
        cni_free(c);
}

/* --- plugin chains ---------------------------------------------------------------------------------- */

typedef struct Outcome {
        bool done;
        int error;
        char *message, *result, *network;
} Outcome;

static void on_done(const Error *error, const char *result, const char *network, void *userdata) {
        Outcome *o = userdata;
        o->done = true;
        o->error = error_to_errno(error);
        o->message = error_is_set(error) && error->message ? strdup(error->message) : NULL;
        o->result = result ? strdup(result) : NULL;
        o->network = network ? strdup(network) : NULL;
}

static void outcome_done(Outcome *o) {
        free(o->message);
        free(o->result);
        free(o->network);
}

static bool outcome_in(void *userdata) {
        return ((Outcome *) userdata)->done;
}

static void run_until(Outcome *o) {
        loop_run_until(loop, outcome_in, o, 10.);
        assert_true(o->done);
}

static char *slurp(const char *name) {
        char path[1024], *text = NULL;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        assert_int_equal(read_file(path, 1 << 20, &text, NULL), 0);
        return text;
}

static const CniPod pod = {
        .id = "0123456789abcdef", .netns = "/run/netns/test", .name = "web", .namespace = "default", .uid = "u-1",
        .ports = (const CniPortMapping[]) { { "tcp", 8080, 80, "" } }, .n_ports = 1,
};

static void test_add_chain_and_prev_result(void **state) {
        char script[2048];
        Outcome o = {};
        CniOp *op = NULL;

        /* bridge answers a 1.0.0 result and keeps its input and environment; portmap echoes what it
         * got as prevResult (a plugin passes the previous result on). */
        snprintf(script, sizeof script,
                 "cat > %s/bridge.in\nenv | grep ^CNI_ | sort > %s/bridge.env\n"
                 "echo '{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"'$CNI_NETNS'\"}],"
                 "\"ips\":[{\"address\":\"10.88.0.7/16\",\"interface\":0}],\"dns\":{}}'",
                 dir, dir);
        plugin("bridge", script);
        snprintf(script, sizeof script, "tee %s/portmap.in | sed -e 's/.*\"prevResult\"://' -e 's/,\"runtimeConfig\".*//'",
                 dir);
        plugin("portmap", script);
        conf_file("10-k8s.conflist", LIST("k8s", "{\"type\":\"bridge\",\"bridge\":\"cni0\",\"prevResult\":1},"
                                                 "{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}"));
        Cni *c = load();
        assert_ready(c, "k8s");
        assert_int_equal(cni_add(c, &pod, on_done, &o, &op), 0);
        run_until(&o);
        assert_int_equal(o.error, 0);
        assert_null(o.message);

        size_t n;
        char **ips = ips_of(o.result, &n);
        assert_int_equal(n, 1);
        assert_string_equal(ips[0], "10.88.0.7");
        strv_free(ips);

        /* The network kept for DEL is the configuration list as loaded. */
        yajl_val net = json_parse(o.network, NULL, 0);
        assert_non_null(net);
        assert_string_equal(json_get_str(net, "name"), "k8s");
        assert_int_equal(json_get(net, "plugins")->u.array.len, 2);
        yajl_tree_free(net);

        /* What each plugin read: the list's name and version, its own keys, no prevResult of the
         * file's for the first, the previous result for the second, and the port mappings it asked
         * for. */
        char *in = slurp("bridge.in");
        yajl_val v = json_parse(in, NULL, 0);
        assert_non_null(v);
        assert_string_equal(json_get_str(v, "cniVersion"), "1.0.0");
        assert_string_equal(json_get_str(v, "name"), "k8s");
        assert_string_equal(json_get_str(v, "bridge"), "cni0");
        assert_null(json_get(v, "prevResult"));
        assert_null(json_get(v, "runtimeConfig"));
        yajl_tree_free(v);
        free(in);
        in = slurp("portmap.in");
        v = json_parse(in, NULL, 0);
        assert_non_null(v);
        yajl_val prev = json_get(v, "prevResult"), pm = json_get(json_get(v, "runtimeConfig"), "portMappings");
        assert_true(YAJL_IS_ARRAY(json_get(prev, "ips")));
        assert_true(YAJL_IS_ARRAY(pm));
        assert_int_equal(pm->u.array.len, 1);
        long long hp = 0;
        assert_true(json_get_int(pm->u.array.values[0], "hostPort", &hp));
        assert_int_equal(hp, 8080);
        assert_string_equal(json_get_str(pm->u.array.values[0], "protocol"), "tcp");
        assert_null(json_get(pm->u.array.values[0], "hostIP"));
        yajl_tree_free(v);
        free(in);
        char *env = slurp("bridge.env");
        assert_non_null(strstr(env, "CNI_COMMAND=ADD\n"));
        assert_non_null(strstr(env, "CNI_CONTAINERID=0123456789abcdef\n"));
        assert_non_null(strstr(env, "CNI_IFNAME=eth0\n"));
        assert_non_null(strstr(env, "CNI_NETNS=/run/netns/test\n"));
        assert_non_null(strstr(env, "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"));
        free(env);
        outcome_done(&o);
        cni_free(c);
}

static void test_plugin_errors(void **state) {
        Outcome o = {};
        Cni *c;

        /* A CNI error object on stdout is the message; a bare exit status takes stderr's first
         * line; a result that is no JSON at all still ends the chain, and the caller's parse refuses
         * it. */
        plugin("bridge", "echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"failed to allocate for range 0\","
                         "\"details\":\"no IP addresses available\"}'; exit 1");
        conf_file("10-k8s.conflist", LIST("k8s", "{\"type\":\"bridge\"}"));
        c = load();
        assert_int_equal(cni_add(c, &pod, on_done, &o, NULL), 0);
        run_until(&o);
        assert_int_equal(o.error, -EIO);
        assert_string_equal(o.message,
                            "CNI ADD bridge: failed to allocate for range 0: no IP addresses available (code 11)");
        assert_null(o.result);
        outcome_done(&o);

        o = (Outcome) {};
        plugin("bridge", "echo 'line one\nline two' >&2; exit 3");
        assert_int_equal(cni_add(c, &pod, on_done, &o, NULL), 0);
        run_until(&o);
        assert_int_equal(o.error, -EIO);
        assert_string_equal(o.message, "CNI ADD bridge: exit status 3: line one");
        outcome_done(&o);

        o = (Outcome) {};
        plugin("bridge", "printf '\\001\\002 not json {{{'");
        assert_int_equal(cni_add(c, &pod, on_done, &o, NULL), 0);
        run_until(&o);
        if (o.error != 0)
                fail_msg("%d %s", o.error, o.message);
        char **ips = NULL;
        size_t n;
        assert_int_equal(cni_result_ips(o.result, &ips, &n), -EINVAL);
        outcome_done(&o);

        /* DEL goes through the whole chain backwards and reports the first failure. */
        o = (Outcome) {};
        plugin("bridge", "exit 0");
        plugin("portmap", "echo '{\"code\":7,\"msg\":\"no such chain\"}'; exit 1");
        conf_file("10-k8s.conflist", LIST("k8s", "{\"type\":\"bridge\"},{\"type\":\"flannel\"},{\"type\":\"portmap\"}"));
        plugin("flannel", "exit 0");
        cni_reload(c);
        assert_ready(c, "k8s");
        char path[1024];
        snprintf(path, sizeof path, "%s/flannel", bin);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(cni_del(c, &pod, NULL, NULL, on_done, &o, NULL), 0);
        run_until(&o);
        assert_int_equal(o.error, -EIO);
        assert_string_equal(o.message, "CNI DEL portmap: no such chain (code 7)");
        outcome_done(&o);

        /* A network that is not a list of plugins is refused at once. */
        assert_int_equal(cni_del(c, &pod, "{\"name\":\"x\"}", NULL, on_done, &o, NULL), -EINVAL);
        assert_int_equal(cni_check(c, &pod, "not json", NULL, on_done, &o, NULL), -EINVAL);
        cni_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_result_1_0_0),
                cmocka_unit_test(test_result_0_4_0),
                cmocka_unit_test(test_result_without_ips),
                cmocka_unit_test(test_result_hostile),
                cmocka_unit_test_setup(test_empty_and_missing_dir, fresh),
                cmocka_unit_test_setup(test_first_valid_file_decides, fresh),
                cmocka_unit_test_setup(test_versions_not_checked, fresh),
                cmocka_unit_test_setup(test_missing_plugin, fresh),
                cmocka_unit_test_setup(test_add_chain_and_prev_result, fresh),
                cmocka_unit_test_setup(test_plugin_errors, fresh),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
