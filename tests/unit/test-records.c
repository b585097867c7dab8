/* Unit tests of the container and pod records: every saved field comes back from a save and a
 * load through the real ctr_save()/ctr_load() and pod_save()/pod_load(); a truncated or garbage
 * record is refused with -EBADMSG; ids are found by a unique prefix. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "ctr-internal.h"
#include "fd-util.h"
#include "fileio.h"
#include "pod-internal.h"
#include "record.h"

static char root[] = "/tmp/test-records.XXXXXX";

static const char *ID1 = "1111111111111111111111111111111111111111111111111111111111111111";
static const char *ID2 = "1122222222222222222222222222222222222222222222222222222222222222";
static const char *ID3 = "3333333333333333333333333333333333333333333333333333333333333333";

static void write_text(const char *dir, const char *id, const char *text) {
        char path[512];

        snprintf(path, sizeof path, "%s/%s", dir, id);
        assert_int_equal(mkdir_p(path, 0700), 0);
        snprintf(path, sizeof path, "%s/%s/state.json", dir, id);
        assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
}

static StrPair *pairs(const char *k, const char *v) {
        StrPair *p = calloc(2, sizeof *p);
        p[0].key = strdup(k);
        p[0].value = strdup(v);
        return p;
}

static void test_pod_round_trip(void **state) {
        PodEnv env = { .state_dir = root, .root_dir = root };
        PodTable *t, *t2;
        Pod *pod = calloc(1, sizeof *pod), *back;
        char dir[512];

        assert_int_equal(pod_table_new(&env, &t), 0);
        memcpy(pod->id, ID1, 65);
        pod->state = POD_READY;
        pod->created_at_ns = 1234567890123ULL;
        pod->hostname = strdup("host-1");
        pod->slice = strdup("kubepods-x.slice");
        pod->slice_owned = true;
        pod->slice_started = true;
        pod->ns_created = false;
        pod->cni_added = true;
        pod->init_started = true;
        pod->cni_network = strdup("{\"name\":\"net\"}");
        pod->cni_result = strdup("{\"ips\":[]}");
        pod->ips = strv_split("10.0.0.2 fd00::2", " ");
        pod->n_ips = 2;
        pod->spec = (PodSpec) {
                .name = strdup("name"), .uid = strdup("uid"), .namespace = strdup("ns"), .attempt = 3,
                .hostname = strdup("h"), .log_directory = strdup("/var/log/pods/x"),
                .runtime_handler = strdup("runc"), .cgroup_parent = strdup("kubepods-x.slice"),
                .dns_servers = strv_split("1.1.1.1", " "), .dns_searches = strv_split("a.b c.d", " "),
                .dns_options = strv_split("ndots:5", " "), .n_ports = 1,
                .labels = pairs("l", "1"), .n_labels = 1, .annotations = pairs("a", "2"), .n_annotations = 1,
                .sysctls = pairs("net.x", "3"), .n_sysctls = 1,
                .network = POD_NS_POD, .pid = POD_NS_CONTAINER, .ipc = POD_NS_NODE, .userns = POD_NS_NODE,
        };
        pod->spec.ports = calloc(2, sizeof *pod->spec.ports);
        pod->spec.ports[0] = (PodPort) { strdup("tcp"), 80, 8080, strdup("127.0.0.1") };
        snprintf(dir, sizeof dir, "%s/pods/%s", root, ID1);
        assert_int_equal(mkdir_p(dir, 0700), 0);
        pod_link(t, pod);
        assert_int_equal(pod_save(pod), 0);

        assert_int_equal(pod_table_new(&env, &t2), 0);
        assert_int_equal(pod_load(t2, ID1, &back), 0);
        assert_ptr_equal(pod_find(t2, ID1), back);
        assert_int_equal(back->state, POD_READY);
        assert_int_equal(back->created_at_ns, 1234567890123ULL);
        assert_string_equal(back->hostname, "host-1");
        assert_string_equal(back->slice, "kubepods-x.slice");
        assert_true(back->slice_owned && back->slice_started && !back->ns_created && back->cni_added &&
                    back->init_started);
        assert_string_equal(back->cni_network, "{\"name\":\"net\"}");
        assert_string_equal(back->cni_result, "{\"ips\":[]}");
        assert_int_equal(back->n_ips, 2);
        assert_string_equal(back->ips[1], "fd00::2");
        assert_string_equal(back->spec.name, "name");
        assert_string_equal(back->spec.uid, "uid");
        assert_string_equal(back->spec.namespace, "ns");
        assert_int_equal(back->spec.attempt, 3);
        assert_string_equal(back->spec.hostname, "h");
        assert_string_equal(back->spec.log_directory, "/var/log/pods/x");
        assert_string_equal(back->spec.runtime_handler, "runc");
        assert_string_equal(back->spec.cgroup_parent, "kubepods-x.slice");
        assert_string_equal(back->spec.dns_servers[0], "1.1.1.1");
        assert_string_equal(back->spec.dns_searches[1], "c.d");
        assert_string_equal(back->spec.dns_options[0], "ndots:5");
        assert_int_equal(back->spec.n_ports, 1);
        assert_string_equal(back->spec.ports[0].protocol, "tcp");
        assert_int_equal(back->spec.ports[0].container_port, 80);
        assert_int_equal(back->spec.ports[0].host_port, 8080);
        assert_string_equal(back->spec.ports[0].host_ip, "127.0.0.1");
        assert_int_equal(back->spec.n_labels, 1);
        assert_string_equal(back->spec.labels[0].value, "1");
        assert_string_equal(back->spec.annotations[0].key, "a");
        assert_string_equal(back->spec.sysctls[0].key, "net.x");
        assert_int_equal(back->spec.network, POD_NS_POD);
        assert_int_equal(back->spec.pid, POD_NS_CONTAINER);
        assert_int_equal(back->spec.ipc, POD_NS_NODE);
        pod_table_free(t2);
        pod_table_free(t);
}

static void test_pod_bad_records(void **state) {
        PodEnv env = { .state_dir = root, .root_dir = root };
        char dir[512];
        PodTable *t;
        Pod *pod = NULL;

        assert_int_equal(pod_table_new(&env, &t), 0);
        snprintf(dir, sizeof dir, "%s/pods", root);
        write_text(dir, ID2, "{\"id\": \"1122222222222222222222222222222222222222222222222222222222222222\", \"sp");
        assert_int_equal(pod_load(t, ID2, &pod), -EBADMSG);
        write_text(dir, ID2, "\x01\x02garbage");
        assert_int_equal(pod_load(t, ID2, &pod), -EBADMSG);
        write_text(dir, ID2, "[1, 2]");
        assert_int_equal(pod_load(t, ID2, &pod), -EBADMSG);
        /* the id of another, or no spec */
        write_text(dir, ID2, "{\"id\": \"x\", \"spec\": {}}");
        assert_int_equal(pod_load(t, ID2, &pod), -EBADMSG);
        write_text(dir, ID2, "{\"id\": \"1122222222222222222222222222222222222222222222222222222222222222\", \"spec\": {}}");
        assert_int_equal(pod_load(t, ID2, &pod), -EBADMSG);
        assert_int_equal(pod_load(t, ID3, &pod), -ENOENT);
        assert_null(pod);
        assert_int_equal(t->n_pods, 0);
        pod_table_free(t);
}

static CtrTable *ctr_table(void) {
        CtrEnv env = { .state_dir = root, .root_dir = root };
        CtrTable *t;

        assert_int_equal(ctr_table_new(&env, &t), 0);
        return t;
}

static void test_container_round_trip(void **state) {
        CtrTable *t = ctr_table(), *t2 = ctr_table();
        Container *c = calloc(1, sizeof *c), *back = NULL;
        char dir[512];

        memcpy(c->id, ID1, 65);
        memcpy(c->pod_id, ID3, 65);
        c->name = strdup("web");
        c->attempt = 2;
        c->image_ref = strdup("docker.io/library/busybox:latest");
        c->image_id = strdup("sha256:abc");
        c->labels = pairs("app", "web");
        c->n_labels = 1;
        c->annotations = pairs("note", "x");
        c->n_annotations = 1;
        c->log_dir = strdup("/var/log/pods/p");
        c->log_path = strdup("/var/log/pods/p/web/0.log");
        c->stop_signal = 15;
        c->tty = true;
        c->stdin_ = true;
        c->stdin_once = false;
        c->cpu_shares = 512;
        c->cpu_quota = 50000;
        c->cpu_period = 100000;
        c->memory_limit = 1 << 26;
        c->state = CTR_EXITED;
        c->creating = false;
        c->removing = true;
        c->created_at_ns = 1, c->started_at_ns = 2, c->finished_at_ns = 3;
        c->exit_code = 137;
        c->reason = strdup("OOMKilled");
        c->message = strdup("out of memory");
        c->pid = 4242;
        c->memcg = strdup("/sys/fs/cgroup/memory/x");
        c->rootfs_mounted = true;
        c->unit_started = true;
        c->runtime_created = false;
        c->handler = strdup("fast");
        c->runtime = strdup("/usr/bin/crun");
        c->runtime_root = strdup("/run/rktlet/runtimes/fast");
        assert_int_equal(strv_push(&c->runtime_options, "--debug"), 0);
        c->config = strdup("opaque");
        c->config_len = 6;
        ctr_link(t, c);
        snprintf(dir, sizeof dir, "%s/containers/%s", root, ID1);
        assert_int_equal(mkdir_p(dir, 0700), 0);
        assert_int_equal(ctr_save(c), 0);
        snprintf(dir, sizeof dir, "%s/containers/%s/config.pb", root, ID1);
        assert_int_equal(write_file_atomic(dir, "opaque", 6, 0600), 0);

        assert_int_equal(ctr_load(t2, ID1, &back), 0);
        assert_string_equal(back->id, ID1);
        assert_string_equal(back->pod_id, ID3);
        assert_string_equal(back->name, "web");
        assert_int_equal(back->attempt, 2);
        assert_string_equal(back->image_ref, "docker.io/library/busybox:latest");
        assert_string_equal(back->image_id, "sha256:abc");
        assert_string_equal(back->labels[0].key, "app");
        assert_string_equal(back->annotations[0].value, "x");
        assert_string_equal(back->log_dir, "/var/log/pods/p");
        assert_string_equal(back->log_path, "/var/log/pods/p/web/0.log");
        assert_string_equal(ctr_log_relative(back), "web/0.log");
        assert_int_equal(back->stop_signal, 15);
        assert_true(back->tty && back->stdin_ && !back->stdin_once);
        assert_int_equal(back->cpu_shares, 512);
        assert_int_equal(back->cpu_quota, 50000);
        assert_int_equal(back->cpu_period, 100000);
        assert_int_equal(back->memory_limit, 1 << 26);
        assert_int_equal(back->state, CTR_EXITED);
        assert_true(!back->creating && back->removing);
        assert_int_equal(back->created_at_ns, 1);
        assert_int_equal(back->started_at_ns, 2);
        assert_int_equal(back->finished_at_ns, 3);
        assert_int_equal(back->exit_code, 137);
        assert_string_equal(back->reason, "OOMKilled");
        assert_string_equal(back->message, "out of memory");
        assert_int_equal(back->pid, 4242);
        assert_string_equal(back->memcg, "/sys/fs/cgroup/memory/x");
        assert_true(back->rootfs_mounted && back->unit_started && !back->runtime_created);
        assert_string_equal(back->handler, "fast");
        assert_string_equal(back->runtime, "/usr/bin/crun");
        assert_string_equal(back->runtime_root, "/run/rktlet/runtimes/fast");
        assert_int_equal(strv_length(back->runtime_options), 1);
        assert_string_equal(back->runtime_options[0], "--debug");
        assert_int_equal(back->config_len, 6);
        assert_memory_equal(back->config, "opaque", 6);
        ctr_link(t2, back);
        ctr_table_free(t2);
        ctr_table_free(t);
}

/* A record from before runtime handlers names no runtime: it was made by the one runtime there was,
 * rooted in <state>/runc, and is run and deleted with that root (the binary: the default handler's,
 * else runc). */
static void test_container_record_without_handler(void **state) {
        CtrTable *t = ctr_table();
        Container *c = NULL;
        char dir[512], want[600];

        snprintf(dir, sizeof dir, "%s/containers", root);
        write_text(dir, ID2, "{\"podId\": \"3333333333333333333333333333333333333333333333333333333333333333\", "
                             "\"name\": \"n\", \"imageRef\": \"r\", \"imageId\": \"i\", \"logPath\": \"\", "
                             "\"labels\": {}, \"annotations\": {}, \"state\": \"running\"}");
        assert_int_equal(ctr_load(t, ID2, &c), 0);
        snprintf(want, sizeof want, "%s/runc", root);
        assert_string_equal(c->runtime_root, want);
        assert_string_equal(c->runtime, "runc");
        assert_string_equal(c->handler, "runc");
        c->table = NULL; /* not linked */
        ctr_free(c);
        /* The binary: what the daemon chose before handlers ([Containers] Runtime=, else runc), never
         * DefaultRuntime='s. */
        t->legacy_runtime = strdup("/usr/local/bin/old-runc");
        assert_int_equal(ctr_load(t, ID2, &c), 0);
        assert_string_equal(c->runtime, "/usr/local/bin/old-runc");
        assert_string_equal(c->handler, "old-runc");
        assert_string_equal(c->runtime_root, want);
        ctr_link(t, c);
        ctr_table_free(t);
}

static void test_container_bad_records(void **state) {
        CtrTable *t = ctr_table();
        Container *c = NULL;
        char dir[512];

        snprintf(dir, sizeof dir, "%s/containers", root);
        write_text(dir, ID2, "{\"podId\": \"33333333333333333333333333333333");
        assert_int_equal(ctr_load(t, ID2, &c), -EBADMSG);
        write_text(dir, ID2, "not json at all");
        assert_int_equal(ctr_load(t, ID2, &c), -EBADMSG);
        write_text(dir, ID2, "");
        assert_int_equal(ctr_load(t, ID2, &c), -EBADMSG);
        /* a pod id that is no id, a state that is none */
        write_text(dir, ID2, "{\"podId\": \"short\"}");
        assert_int_equal(ctr_load(t, ID2, &c), -EBADMSG);
        write_text(dir, ID2, "{\"podId\": \"3333333333333333333333333333333333333333333333333333333333333333\", "
                             "\"name\": \"n\", \"imageRef\": \"r\", \"imageId\": \"i\", \"logPath\": \"\", "
                             "\"state\": \"sleeping\"}");
        assert_int_equal(ctr_load(t, ID2, &c), -EBADMSG);
        assert_int_equal(ctr_load(t, ID3, &c), -ENOENT);
        assert_null(c);
        assert_int_equal(t->n_containers, 0);
        ctr_table_free(t);
}

static void test_find_prefix(void **state) {
        PodEnv env = { .state_dir = root, .root_dir = root };
        PodTable *t;
        Pod *p1 = calloc(1, sizeof *p1), *p2 = calloc(1, sizeof *p2), *found = NULL;

        assert_int_equal(pod_table_new(&env, &t), 0);
        memcpy(p1->id, ID1, 65);
        memcpy(p2->id, ID2, 65);
        pod_link(t, p1);
        pod_link(t, p2);
        assert_int_equal(pod_find_prefix(t, "1", &found), -ENOTUNIQ);
        assert_int_equal(pod_find_prefix(t, "11", &found), -ENOTUNIQ);
        assert_int_equal(pod_find_prefix(t, "111", &found), 0);
        assert_ptr_equal(found, p1);
        assert_int_equal(pod_find_prefix(t, "112", &found), 0);
        assert_ptr_equal(found, p2);
        assert_int_equal(pod_find_prefix(t, ID2, &found), 0);
        assert_ptr_equal(found, p2);
        assert_int_equal(pod_find_prefix(t, "3", &found), -ENOENT);
        assert_int_equal(pod_find_prefix(t, "", &found), -ENOENT);
        pod_table_free(t);
}

static int setup(void **state) {
        return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
        return rm_rf(root) < 0 ? -1 : 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pod_round_trip),
                cmocka_unit_test(test_pod_bad_records),
                cmocka_unit_test(test_container_round_trip),
                cmocka_unit_test(test_container_bad_records),
                cmocka_unit_test(test_container_record_without_handler),
                cmocka_unit_test(test_find_prefix),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
