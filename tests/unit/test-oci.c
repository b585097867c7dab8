/* Unit tests of src/oci/: config.json generation, capabilities, the default and Localhost seccomp
 * profiles, users looked up inside an image's rootfs. */
#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
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

#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "macro.h"
#include "oci-spec.h"
#include "strv.h"

static char dir[] = "/tmp/test-oci.XXXXXX";

#define PATH(...) ((const char *[]){ __VA_ARGS__, NULL })

static yajl_val get(yajl_val v, const char **path) {
        return yajl_tree_get(v, path, yajl_t_any);
}

static const char *get_str(yajl_val v, const char **path) {
        yajl_val s = get(v, path);
        return YAJL_IS_STRING(s) ? s->u.string : NULL;
}

static long long get_int(yajl_val v, const char **path) {
        yajl_val n = get(v, path);
        assert_true(YAJL_IS_INTEGER(n));
        return YAJL_GET_INTEGER(n);
}

static bool array_has(yajl_val a, const char *s) {
        for (size_t i = 0; YAJL_IS_ARRAY(a) && i < a->u.array.len; i++)
                if (YAJL_IS_STRING(a->u.array.values[i]) && strcmp(a->u.array.values[i]->u.string, s) == 0)
                        return true;
        return false;
}

static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

static char **strv_of(const char *const *l) {
        char **r = calloc(1, sizeof(char *));
        for (; r && l && *l; l++)
                assert_int_equal(strv_push(&r, *l), 0);
        return r;
}

/* The expectations come from the kernel, not from src/oci/: the capability numbers of
 * <linux/capability.h> and this process's bounding set as /proc/self/status shows it. */
#define CAP(name) { #name, name }
static const struct {
        const char *name;
        int bit;
} kernel_caps[] = {
        CAP(CAP_CHOWN),           CAP(CAP_DAC_OVERRIDE),   CAP(CAP_DAC_READ_SEARCH), CAP(CAP_FOWNER),
        CAP(CAP_FSETID),          CAP(CAP_KILL),           CAP(CAP_SETGID),          CAP(CAP_SETUID),
        CAP(CAP_SETPCAP),         CAP(CAP_LINUX_IMMUTABLE), CAP(CAP_NET_BIND_SERVICE), CAP(CAP_NET_BROADCAST),
        CAP(CAP_NET_ADMIN),       CAP(CAP_NET_RAW),        CAP(CAP_IPC_LOCK),        CAP(CAP_IPC_OWNER),
        CAP(CAP_SYS_MODULE),      CAP(CAP_SYS_RAWIO),      CAP(CAP_SYS_CHROOT),      CAP(CAP_SYS_PTRACE),
        CAP(CAP_SYS_PACCT),       CAP(CAP_SYS_ADMIN),      CAP(CAP_SYS_BOOT),        CAP(CAP_SYS_NICE),
        CAP(CAP_SYS_RESOURCE),    CAP(CAP_SYS_TIME),       CAP(CAP_SYS_TTY_CONFIG),  CAP(CAP_MKNOD),
        CAP(CAP_LEASE),           CAP(CAP_AUDIT_WRITE),    CAP(CAP_AUDIT_CONTROL),   CAP(CAP_SETFCAP),
        CAP(CAP_MAC_OVERRIDE),    CAP(CAP_MAC_ADMIN),      CAP(CAP_SYSLOG),          CAP(CAP_WAKE_ALARM),
        CAP(CAP_BLOCK_SUSPEND),   CAP(CAP_AUDIT_READ),     CAP(CAP_PERFMON),         CAP(CAP_BPF),
        CAP(CAP_CHECKPOINT_RESTORE),
};

/* CapBnd of /proc/self/status, limited to the capabilities named above. */
static uint64_t kernel_bounding(void) {
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        uint64_t mask = 0;
        bool found = false;

        assert_non_null(f);
        while (!found && fgets(line, sizeof line, f))
                found = sscanf(line, "CapBnd: %" SCNx64, &mask) == 1;
        fclose(f);
        assert_true(found);
        return mask & ((UINT64_C(1) << ELEMENTSOF(kernel_caps)) - 1);
}

static uint64_t cap_bit(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(kernel_caps); i++)
                if (strcmp(kernel_caps[i].name, name) == 0)
                        return UINT64_C(1) << kernel_caps[i].bit;
        fail_msg("no capability %s in <linux/capability.h>", name);
        return 0;
}

static uint64_t caps_mask(const char *const *names) {
        uint64_t m = 0;
        for (; names && *names; names++)
                m |= cap_bit(*names);
        return m;
}

/* l holds exactly the capabilities of mask, each once. */
static void assert_caps(char **l, uint64_t mask) {
        uint64_t got = 0;

        assert_non_null(l);
        for (char **p = l; *p; p++) {
                uint64_t b = cap_bit(*p);
                if (got & b)
                        fail_msg("%s twice", *p);
                got |= b;
        }
        if (got != mask)
                fail_msg("capabilities %#" PRIx64 ", expected %#" PRIx64 " (missing %#" PRIx64 ", extra %#" PRIx64 ")",
                         got, mask, mask & ~got, got & ~mask);
}

static bool in_bounding(const char *cap) {
        return kernel_bounding() & cap_bit(cap);
}

static void fill_spec(OciSpec *s) {
        Error msg = ERROR_INIT;

        *s = (OciSpec) {
                .args = strv_of(PATH("/bin/sh", "-c", "echo hi")),
                .env = strv_of(PATH("PATH=/bin", "A=b=c")),
                .cwd = strdup("/work"),
                .uid = 1000,
                .gid = 1000,
                .no_new_privileges = true,
                .has_oom_score_adj = true,
                .oom_score_adj = -998,
                .rootfs = strdup("/var/lib/rktlet/ctr/rootfs"),
                .readonly_rootfs = true,
                .hostname = strdup("pod-a"),
                .masked_paths = strv_of(oci_default_masked_paths),
                .readonly_paths = strv_of(oci_default_readonly_paths),
                .sysctls = strv_of(PATH("net.ipv4.ip_forward=1")),
                .annotations = strv_of(PATH("io.kubernetes.cri.container-type=container")),
                .cpu_shares = 512,
                .cpu_quota = 50000,
                .cpu_period = 100000,
                .pids_limit = 100,
                .cgroups_path = strdup("pod.slice:rktlet:ctr"),
        };
        s->capabilities = oci_capabilities_resolve(oci_default_capabilities, NULL, NULL, &msg);
        assert_non_null(s->capabilities);
        s->additional_gids = calloc(2, sizeof(gid_t));
        s->additional_gids[0] = 10;
        s->additional_gids[1] = 20;
        s->n_additional_gids = 2;
        s->rlimits = calloc(1, sizeof(OciRlimit));
        s->rlimits[0] = (OciRlimit) { strdup("RLIMIT_NOFILE"), 1024, 4096 };
        s->n_rlimits = 1;
        assert_int_equal(oci_default_mounts(&s->mounts, &s->n_mounts, true), 0);
        s->namespaces = calloc(2, sizeof(OciNamespace));
        s->namespaces[0] = (OciNamespace) { strdup("network"), strdup("/run/rktlet/ns/net") };
        s->namespaces[1] = (OciNamespace) { strdup("mount"), NULL };
        s->n_namespaces = 2;
        s->devices = calloc(1, sizeof(OciDevice));
        s->devices[0] = (OciDevice) { strdup("/dev/fuse"), 'c', 10, 229, 0666, 0, 0, strdup("rw") };
        s->n_devices = 1;
}

static void test_spec_json(void **state) {
        OciSpec s;
        Error msg = ERROR_INIT;
        char *json = NULL, err[256], path[128], *text = NULL;
        yajl_val v, a;

        fill_spec(&s);
        assert_int_equal(oci_spec_to_json(&s, &json, &msg), 0);
        assert_false(error_is_set(&msg));
        v = json_parse(json, err, sizeof err);
        assert_non_null(v);

        assert_string_equal(get_str(v, PATH("ociVersion")), "1.0.2");
        assert_int_equal(get_int(v, PATH("process", "user", "uid")), 1000);
        a = get(v, PATH("process", "user", "additionalGids"));
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 2);
        a = get(v, PATH("process", "args"));
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 3 && array_has(a, "echo hi"));
        assert_true(array_has(get(v, PATH("process", "env")), "A=b=c"));
        assert_string_equal(get_str(v, PATH("process", "cwd")), "/work");
        assert_true(array_has(get(v, PATH("process", "capabilities", "bounding")), "CAP_CHOWN"));
        assert_true(array_has(get(v, PATH("process", "capabilities", "permitted")), "CAP_KILL"));
        assert_false(array_has(get(v, PATH("process", "capabilities", "effective")), "CAP_SYS_ADMIN"));
        assert_int_equal(get(v, PATH("process", "capabilities", "inheritable"))->u.array.len, 0);
        assert_int_equal(get(v, PATH("process", "capabilities", "ambient"))->u.array.len, 0);
        a = get(v, PATH("process", "rlimits"));
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 1);
        assert_string_equal(json_get_str(a->u.array.values[0], "type"), "RLIMIT_NOFILE");
        assert_true(YAJL_IS_TRUE(get(v, PATH("process", "noNewPrivileges"))));
        assert_int_equal(get_int(v, PATH("process", "oomScoreAdj")), -998);
        assert_null(get(v, PATH("process", "apparmorProfile")));

        assert_string_equal(get_str(v, PATH("root", "path")), "/var/lib/rktlet/ctr/rootfs");
        assert_true(YAJL_IS_TRUE(get(v, PATH("root", "readonly"))));
        assert_string_equal(get_str(v, PATH("hostname")), "pod-a");

        a = get(v, PATH("mounts"));
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 6);
        assert_string_equal(json_get_str(a->u.array.values[0], "destination"), "/proc");
        assert_string_equal(json_get_str(a->u.array.values[4], "type"), "sysfs");
        assert_true(array_has(json_get(a->u.array.values[4], "options"), "ro"));
        assert_true(array_has(json_get(a->u.array.values[2], "options"), "ptmxmode=0666"));

        assert_string_equal(get_str(v, PATH("annotations", "io.kubernetes.cri.container-type")), "container");

        a = get(v, PATH("linux", "namespaces"));
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 2);
        assert_string_equal(json_get_str(a->u.array.values[0], "path"), "/run/rktlet/ns/net");
        assert_null(json_get(a->u.array.values[1], "path"));
        assert_true(array_has(get(v, PATH("linux", "maskedPaths")), "/proc/kcore"));
        assert_true(array_has(get(v, PATH("linux", "readonlyPaths")), "/proc/sysrq-trigger"));
        a = get(v, PATH("linux", "devices"));
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 1);
        assert_int_equal(get_int(a->u.array.values[0], PATH("minor")), 229);
        assert_int_equal(get_int(a->u.array.values[0], PATH("fileMode")), 0666);

        a = get(v, PATH("linux", "resources", "devices"));
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len > 3);
        assert_true(YAJL_IS_FALSE(json_get(a->u.array.values[0], "allow")));
        assert_string_equal(json_get_str(a->u.array.values[0], "access"), "rwm");
        {
                yajl_val last = a->u.array.values[a->u.array.len - 1];
                bool null_dev = false;

                assert_true(YAJL_IS_TRUE(json_get(last, "allow")));
                assert_int_equal(get_int(last, PATH("major")), 10);
                assert_string_equal(json_get_str(last, "access"), "rw");
                for (size_t i = 0; i < a->u.array.len; i++) {
                        yajl_val d = a->u.array.values[i];
                        long long maj, min;
                        if (json_get_int(d, "major", &maj) && json_get_int(d, "minor", &min) && maj == 1 && min == 3)
                                null_dev = true;
                }
                assert_true(null_dev);
        }
        assert_int_equal(get_int(v, PATH("linux", "resources", "cpu", "shares")), 512);
        assert_int_equal(get_int(v, PATH("linux", "resources", "cpu", "quota")), 50000);
        assert_null(get(v, PATH("linux", "resources", "cpu", "cpus")));
        assert_null(get(v, PATH("linux", "resources", "memory")));
        assert_int_equal(get_int(v, PATH("linux", "resources", "pids", "limit")), 100);
        assert_string_equal(get_str(v, PATH("linux", "cgroupsPath")), "pod.slice:rktlet:ctr");
        assert_string_equal(get_str(v, PATH("linux", "sysctl", "net.ipv4.ip_forward")), "1");
        assert_string_equal(get_str(v, PATH("linux", "seccomp", "defaultAction")), "SCMP_ACT_ERRNO");
        yajl_tree_free(v);

        /* The same through the file; unconfined has no seccomp; privileged allows every device. */
        s.seccomp = OCI_SECCOMP_UNCONFINED;
        s.allow_all_devices = true;
        snprintf(path, sizeof path, "%s/config.json", dir);
        assert_int_equal(oci_spec_write(&s, path, &msg), 0);
        assert_int_equal(read_file(path, 1 << 20, &text, NULL), 0);
        v = json_parse(text, err, sizeof err);
        assert_non_null(v);
        assert_null(get(v, PATH("linux", "seccomp")));
        a = get(v, PATH("linux", "resources", "devices"));
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 2);
        assert_true(YAJL_IS_TRUE(json_get(a->u.array.values[1], "allow")));
        assert_null(json_get(a->u.array.values[1], "major"));
        {
                struct stat st;
                assert_int_equal(stat(path, &st), 0);
                assert_int_equal(st.st_mode & 0777, 0600);
        }
        yajl_tree_free(v);
        free(text);
        free(json);
        oci_spec_done(&s);
        assert_null(s.args);
        oci_spec_done(&s); /* twice is fine */
}

static void test_capabilities(void **state) {
        Error msg = ERROR_INIT;
        char **l, **b;
        char **add = strv_of(PATH("ALL")), **drop = strv_of(PATH("all"));
        char **add2 = strv_of(PATH("net_admin", "CAP_SYS_TIME")), **drop2 = strv_of(PATH("chown", "Cap_Kill"));
        char **bad = strv_of(PATH("NET_ADMIN", "FOO"));
        uint64_t bnd = kernel_bounding(), defaults = caps_mask(oci_default_capabilities);

        /* containerd's 14 defaults, as far as this process's bounding set has them. */
        assert_int_equal(__builtin_popcountll(defaults), 14);
        assert_true(defaults & cap_bit("CAP_NET_BIND_SERVICE"));
        assert_true(defaults & cap_bit("CAP_AUDIT_WRITE"));
        l = oci_capabilities_resolve(oci_default_capabilities, NULL, NULL, &msg);
        assert_false(error_is_set(&msg));
        assert_caps(l, defaults & bnd);
        strv_free(l);

        b = oci_bounding_capabilities();
        assert_caps(b, bnd);
        /* add ALL: the whole bounding set */
        l = oci_capabilities_resolve(oci_default_capabilities, add, NULL, &msg);
        assert_caps(l, bnd);
        strv_free(l);

        /* the named adds, then the named drops, in any spelling */
        l = oci_capabilities_resolve(oci_default_capabilities, add2, drop2, &msg);
        assert_caps(l, ((defaults | cap_bit("CAP_NET_ADMIN") | cap_bit("CAP_SYS_TIME")) &
                        ~(cap_bit("CAP_CHOWN") | cap_bit("CAP_KILL"))) & bnd);
        strv_free(l);

        /* drop ALL, then the named adds */
        l = oci_capabilities_resolve(oci_default_capabilities, add2, drop, &msg);
        assert_caps(l, (cap_bit("CAP_NET_ADMIN") | cap_bit("CAP_SYS_TIME")) & bnd);
        strv_free(l);

        l = oci_capabilities_resolve(oci_default_capabilities, bad, NULL, &msg);
        assert_null(l);
        assert_int_equal(errno, EINVAL);
        assert_string_equal(error_text(&msg), "unknown capability 'FOO'");
        error_done(&msg);

        /* What the bounding set lacks cannot be granted (CAP_SYS_RESOURCE is missing from some). */
        {
                char **res = strv_of(PATH("SYS_RESOURCE"));
                l = oci_capabilities_resolve(oci_default_capabilities, res, NULL, &msg);
                assert_caps(l, (defaults | cap_bit("CAP_SYS_RESOURCE")) & bnd);
                assert_int_equal(strv_contains(l, "CAP_SYS_RESOURCE"), in_bounding("CAP_SYS_RESOURCE"));
                strv_free(l);
                strv_free(res);
        }
        strv_free(b);
        strv_free(add);
        strv_free(drop);
        strv_free(add2);
        strv_free(drop2);
        strv_free(bad);
}

/* The spellings the CRI's add/drop lists may use: with or without "CAP_", in any case; nothing else
 * (no capability numbers, no text after the name, no "CAP_" twice), each refused with its name. */
static void test_capability_names(void **state) {
        static const char *const good[] = {
                "net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin", "Cap_Net_Admin", "cAP_nEt_aDmIn",
        };
        static const char *const bad[] = {
                "", "CAP_", "cap_", "12", "CAP_12", "0x0c", "NET_ADMIN!", "CAP_NET_ADMIN ", " CAP_NET_ADMIN",
                "CAP_NET_ADMIN,CAP_KILL", "CAP_NET_ADMIN=ep", "CAP_CAP_NET_ADMIN", "NET", "NET_ADMINX",
                "CAP_NET-ADMIN", "ALL_", "CAP_ALL",
        };
        uint64_t bnd = kernel_bounding(), defaults = caps_mask(oci_default_capabilities);
        Error msg = ERROR_INIT;
        char **l;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                char **add = strv_of(PATH(good[i])), **drop = strv_of(PATH(good[i]));

                l = oci_capabilities_resolve(oci_default_capabilities, add, NULL, &msg);
                assert_false(error_is_set(&msg));
                assert_caps(l, (defaults | cap_bit("CAP_NET_ADMIN")) & bnd);
                strv_free(l);
                /* base and drop take the same spellings */
                l = oci_capabilities_resolve((const char *const *) add, NULL, drop, &msg);
                assert_false(error_is_set(&msg));
                assert_caps(l, 0);
                strv_free(l);
                strv_free(add);
                strv_free(drop);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char **add = strv_of(PATH(bad[i])), *expected = NULL;

                for (int in_drop = 0; in_drop < 2; in_drop++) {
                        l = oci_capabilities_resolve(oci_default_capabilities, in_drop ? NULL : add,
                                                     in_drop ? add : NULL, &msg);
                        if (l)
                                fail_msg("'%s' accepted", bad[i]);
                        assert_int_equal(errno, EINVAL);
                        assert_true(asprintf(&expected, "unknown capability '%s'", bad[i]) >= 0);
                        assert_string_equal(error_text(&msg), expected);
                        free(expected);
                        error_done(&msg);
                }
                strv_free(add);
        }
        /* "ALL" in any case is the keyword, in the base list too (where it stands for nothing). */
        {
                char **all = strv_of(PATH("aLl"));
                l = oci_capabilities_resolve((const char *const *) all, NULL, NULL, &msg);
                assert_false(error_is_set(&msg));
                assert_caps(l, 0);
                strv_free(l);
                l = oci_capabilities_resolve(oci_default_capabilities, all, NULL, &msg);
                assert_caps(l, bnd);
                strv_free(l);
                strv_free(all);
        }
}

static yajl_val default_profile(char **caps) {
        yajl_gen g = yajl_gen_alloc(NULL);
        char *json, err[256];
        yajl_val v;

        assert_int_equal(oci_seccomp_default_gen(g, caps), 0);
        json = json_gen_steal(g);
        yajl_gen_free(g);
        v = json_parse(json, err, sizeof err);
        free(json);
        assert_non_null(v);
        return v;
}

/* How the profile lets name through: 0 never, 1 only with argument filters, 2 unconditionally. */
static int allowed(yajl_val profile, const char *name) {
        yajl_val calls = json_get(profile, "syscalls");
        int r = 0;

        for (size_t i = 0; i < calls->u.array.len; i++) {
                yajl_val c = calls->u.array.values[i], args = json_get(c, "args");

                if (!array_has(json_get(c, "names"), name) || strcmp(json_get_str(c, "action"), "SCMP_ACT_ALLOW") != 0)
                        continue;
                r = r > 1 ? r : (YAJL_IS_ARRAY(args) && args->u.array.len > 0 ? 1 : 2);
        }
        return r;
}

static yajl_val rule_for(yajl_val profile, const char *name, const char *action) {
        yajl_val calls = json_get(profile, "syscalls");

        for (size_t i = 0; i < calls->u.array.len; i++) {
                yajl_val c = calls->u.array.values[i];
                if (array_has(json_get(c, "names"), name) && strcmp(json_get_str(c, "action"), action) == 0)
                        return c;
        }
        return NULL;
}

static void test_seccomp_default(void **state) {
        Error msg = ERROR_INIT;
        char **caps = oci_capabilities_resolve(oci_default_capabilities, NULL, NULL, &msg);
        char **admin = strv_of(PATH("CAP_SYS_ADMIN"));
        yajl_val v = default_profile(caps), c, arg;

        assert_string_equal(json_get_str(v, "defaultAction"), "SCMP_ACT_ERRNO");
        assert_int_equal(get_int(v, PATH("defaultErrnoRet")), EPERM);
#if defined(__x86_64__)
        assert_true(array_has(json_get(v, "architectures"), "SCMP_ARCH_X86_64"));
        assert_true(array_has(json_get(v, "architectures"), "SCMP_ARCH_X32"));
#endif
        assert_int_equal(allowed(v, "read"), 2);
        assert_int_equal(allowed(v, "chroot"), 2); /* CAP_SYS_CHROOT is a default */
        assert_int_equal(allowed(v, "socket"), 1);
        for (const char *const *n = PATH("unshare", "mount", "umount2", "setns", "keyctl", "add_key",
                                         "request_key", "pivot_root", "bpf", "reboot", "init_module");
             *n; n++)
                assert_int_equal(allowed(v, *n), 0);
        assert_int_equal(allowed(v, "clone"), 1);
        c = rule_for(v, "clone", "SCMP_ACT_ALLOW");
        assert_non_null(c);
        arg = json_get(c, "args")->u.array.values[0];
        assert_int_equal(get_int(arg, PATH("index")), 0);
        assert_int_equal(get_int(arg, PATH("value")), 2114060288);
        assert_int_equal(get_int(arg, PATH("valueTwo")), 0);
        assert_string_equal(json_get_str(arg, "op"), "SCMP_CMP_MASKED_EQ");
        c = rule_for(v, "clone3", "SCMP_ACT_ERRNO");
        assert_non_null(c);
        assert_int_equal(get_int(c, PATH("errnoRet")), ENOSYS);
        assert_int_equal(allowed(v, "clone3"), 0);
        yajl_tree_free(v);

        v = default_profile(admin);
        for (const char *const *n = PATH("unshare", "mount", "setns", "keyctl", "clone", "clone3"); *n; n++)
                assert_int_equal(allowed(v, *n), 2);
        assert_null(rule_for(v, "clone3", "SCMP_ACT_ERRNO"));
        assert_int_equal(allowed(v, "chroot"), 0);
        yajl_tree_free(v);
        strv_free(caps);
        strv_free(admin);
}

static void test_seccomp_localhost(void **state) {
        OciSpec s;
        Error msg = ERROR_INIT;
        char path[128], *json = NULL, err[256];
        yajl_val v, calls, a;

        snprintf(path, sizeof path, "%s/docker.json", dir);
        write_text(path,
                   "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":1,"
                   "\"archMap\":[{\"architecture\":\"SCMP_ARCH_X86_64\",\"subArchitectures\":[\"SCMP_ARCH_X86\",\"SCMP_ARCH_X32\"]},"
                   "{\"architecture\":\"SCMP_ARCH_AARCH64\",\"subArchitectures\":[\"SCMP_ARCH_ARM\"]}],"
                   "\"syscalls\":["
                   "{\"name\":\"read\",\"action\":\"SCMP_ACT_ALLOW\",\"args\":[]},"
                   "{\"names\":[\"mount\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"caps\":[\"CAP_SYS_ADMIN\"]}},"
                   "{\"names\":[\"personality\"],\"action\":\"SCMP_ACT_ALLOW\",\"comment\":\"x\","
                   "\"args\":[{\"index\":0,\"value\":4294967295,\"valueTwo\":0,\"op\":\"SCMP_CMP_EQ\"}]},"
                   "{\"names\":[\"clone3\"],\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":38,\"excludes\":{\"caps\":[\"CAP_SYS_ADMIN\"]}},"
                   "{\"names\":[\"s390_runtime_instr\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"arches\":[\"s390x\"]}}"
                   "]}");

        fill_spec(&s);
        s.seccomp = OCI_SECCOMP_LOCALHOST;
        s.seccomp_profile_path = strdup(path);
        assert_int_equal(oci_spec_to_json(&s, &json, &msg), 0);
        v = json_parse(json, err, sizeof err);
        assert_non_null(v);
        a = get(v, PATH("linux", "seccomp", "architectures"));
#if defined(__x86_64__)
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 3);
        assert_true(array_has(a, "SCMP_ARCH_X86_64") && array_has(a, "SCMP_ARCH_X32"));
#elif defined(__aarch64__)
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 2);
#endif
        assert_int_equal(get_int(v, PATH("linux", "seccomp", "defaultErrnoRet")), 1);
        calls = get(v, PATH("linux", "seccomp", "syscalls"));
        assert_true(YAJL_IS_ARRAY(calls) && calls->u.array.len == 3);
        assert_true(array_has(json_get(calls->u.array.values[0], "names"), "read"));
        assert_null(json_get(calls->u.array.values[0], "args"));
        assert_null(json_get(calls->u.array.values[1], "comment"));
        a = json_get(calls->u.array.values[1], "args");
        assert_true(YAJL_IS_ARRAY(a) && a->u.array.len == 1);
        assert_int_equal(get_int(a->u.array.values[0], PATH("value")), 4294967295LL);
        assert_int_equal(get_int(calls->u.array.values[2], PATH("errnoRet")), 38);
        yajl_tree_free(v);
        free(json);
        json = NULL;

        /* With CAP_SYS_ADMIN: mount, no clone3 rule. */
        assert_int_equal(strv_push(&s.capabilities, "CAP_SYS_ADMIN"), 0);
        assert_int_equal(oci_spec_to_json(&s, &json, &msg), 0);
        v = json_parse(json, err, sizeof err);
        calls = get(v, PATH("linux", "seccomp", "syscalls"));
        assert_true(YAJL_IS_ARRAY(calls) && calls->u.array.len == 3);
        assert_true(array_has(json_get(calls->u.array.values[1], "names"), "mount"));
        yajl_tree_free(v);
        free(json);
        json = NULL;

        /* Invalid and missing files. */
        write_text(path, "{\"defaultAction\": ");
        assert_int_equal(oci_spec_to_json(&s, &json, &msg), -EINVAL);
        assert_true(error_is_set(&msg));
        assert_non_null(strstr(error_text(&msg), path));
        assert_null(json);
        error_done(&msg);
        write_text(path, "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":[{\"action\":\"SCMP_ACT_ALLOW\"}]}");
        assert_int_equal(oci_spec_write(&s, path, &msg), -EINVAL);
        assert_non_null(strstr(error_text(&msg), "names"));
        error_done(&msg);
        unlink(path);
        assert_int_equal(oci_spec_to_json(&s, &json, &msg), -EINVAL);
        assert_non_null(strstr(error_text(&msg), path));
        error_done(&msg);
        oci_spec_done(&s);
}

static void make_rootfs(const char *root, const char *passwd, const char *group) {
        char p[256];

        snprintf(p, sizeof p, "%s/etc", root);
        assert_int_equal(mkdir_p(p, 0755), 0);
        if (passwd) {
                snprintf(p, sizeof p, "%s/etc/passwd", root);
                write_text(p, passwd);
        }
        if (group) {
                snprintf(p, sizeof p, "%s/etc/group", root);
                write_text(p, group);
        }
}

static void test_users(void **state) {
        Error msg = ERROR_INIT;
        char root[128];
        uid_t uid;
        gid_t gid, *gids = NULL;
        size_t n = 0;
        int r;

        snprintf(root, sizeof root, "%s/r1", dir);
        make_rootfs(root,
                    "# comment\nroot:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"
                    "bob:x:1001:1001\n",
                    "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\naudio:x:29:bob\nvideo:x:44:carol,alice\n");

        r = oci_lookup_user(root, "alice", &uid, &gid, &gids, &n, &msg);
        if (r == -ENOSYS)
                skip(); /* no openat2 */
        assert_int_equal(r, 0);
        assert_int_equal(uid, 1000);
        assert_int_equal(gid, 1000);
        assert_int_equal(n, 2);
        assert_int_equal(gids[0], 10);
        assert_int_equal(gids[1], 44);
        free(gids);

        assert_int_equal(oci_lookup_user(root, "1001", &uid, &gid, &gids, &n, &msg), 0);
        assert_int_equal(uid, 1001);
        assert_int_equal(gid, 1001);
        assert_int_equal(n, 2);
        free(gids);

        assert_int_equal(oci_lookup_user(root, "alice:wheel", &uid, &gid, &gids, &n, &msg), 0);
        assert_int_equal(gid, 10);
        assert_int_equal(n, 1); /* the primary group is not repeated */
        assert_int_equal(gids[0], 44);
        free(gids);

        assert_int_equal(oci_lookup_user(root, "4242:29", &uid, &gid, &gids, &n, &msg), 0);
        assert_int_equal(uid, 4242);
        assert_int_equal(gid, 29);
        assert_int_equal(n, 0);
        free(gids);

        assert_int_equal(oci_lookup_user(root, "", &uid, &gid, &gids, &n, &msg), 0);
        assert_int_equal(uid, 0);
        free(gids);

        assert_int_equal(oci_lookup_user(root, "nobody", &uid, &gid, &gids, &n, &msg), -ENOENT);
        assert_non_null(strstr(error_text(&msg), "'nobody'"));
        error_done(&msg);
        assert_int_equal(oci_lookup_user(root, "alice:nogroup", &uid, &gid, &gids, &n, &msg), -ENOENT);
        assert_non_null(strstr(error_text(&msg), "'nogroup'"));
        error_done(&msg);

        assert_int_equal(oci_lookup_group(root, "audio", &gid, &msg), 0);
        assert_int_equal(gid, 29);
        assert_int_equal(oci_lookup_group(root, "77", &gid, &msg), 0);
        assert_int_equal(gid, 77);
        assert_int_equal(oci_lookup_group(root, "staff", &gid, &msg), -ENOENT);
        error_done(&msg);

        /* No passwd at all: numeric users only. */
        snprintf(root, sizeof root, "%s/r2", dir);
        make_rootfs(root, NULL, NULL);
        assert_int_equal(oci_lookup_user(root, "123", &uid, &gid, &gids, &n, &msg), 0);
        assert_int_equal(uid, 123);
        assert_int_equal(gid, 0);
        assert_int_equal(n, 0);
        free(gids);
        assert_int_equal(oci_lookup_user(root, "alice", &uid, &gid, &gids, &n, &msg), -ENOENT);
        error_done(&msg);
}

static void test_users_symlink_escape(void **state) {
        Error msg = ERROR_INIT;
        char root[128], p[256], outside[256];
        uid_t uid;
        gid_t gid, *gids = NULL;
        size_t n = 0;
        int r;

        /* A passwd outside the rootfs the image's symlinks point at... */
        snprintf(outside, sizeof outside, "%s/secret", dir);
        write_text(outside, "mallory:x:6:6::/:/bin/sh\n");
        snprintf(p, sizeof p, "%s/group-secret", dir);
        write_text(p, "evil:x:66:mallory,inside\n");

        /* ...resolves inside it instead. */
        snprintf(root, sizeof root, "%s/r3", dir);
        make_rootfs(root, NULL, NULL);
        snprintf(p, sizeof p, "%s/secret", root);
        write_text(p, "inside:x:5:5::/:/bin/sh\n");
        snprintf(p, sizeof p, "%s/group-secret", root);
        write_text(p, "good:x:55:inside\n");
        snprintf(p, sizeof p, "%s/etc/passwd", root);
        assert_int_equal(symlink("/../../../secret", p), 0);
        snprintf(p, sizeof p, "%s/etc/group", root);
        assert_int_equal(symlink("../../group-secret", p), 0);

        r = oci_lookup_user(root, "mallory", &uid, &gid, &gids, &n, &msg);
        if (r == -ENOSYS)
                skip();
        assert_int_equal(r, -ENOENT);
        error_done(&msg);
        assert_int_equal(oci_lookup_user(root, "inside", &uid, &gid, &gids, &n, &msg), 0);
        assert_int_equal(uid, 5);
        assert_int_equal(n, 1);
        assert_int_equal(gids[0], 55);
        free(gids);
        assert_int_equal(oci_lookup_group(root, "evil", &gid, &msg), -ENOENT);
        error_done(&msg);

        /* A FIFO as /etc/passwd is refused, not waited on. */
        snprintf(root, sizeof root, "%s/r4", dir);
        make_rootfs(root, NULL, NULL);
        snprintf(p, sizeof p, "%s/etc/passwd", root);
        assert_int_equal(mkfifo(p, 0644), 0);
        assert_true(oci_lookup_user(root, "0", &uid, &gid, &gids, &n, &msg) < 0);
        error_done(&msg);
}

static int setup(void **state) {
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        return rm_rf(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_spec_json),
                cmocka_unit_test(test_capabilities),
                cmocka_unit_test(test_capability_names),
                cmocka_unit_test(test_seccomp_default),
                cmocka_unit_test(test_seccomp_localhost),
                cmocka_unit_test(test_users),
                cmocka_unit_test(test_users_symlink_escape),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
