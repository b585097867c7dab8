/* The OCI runtime spec (config.json) of one container, generated from an OciSpec; the default
 * mounts and masked/read-only paths. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "oci-spec.h"
#include "strv.h"

const char *const oci_default_masked_paths[] = {
        "/proc/acpi",      "/proc/asound",      "/proc/kcore",       "/proc/keys",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/proc/scsi",      "/sys/firmware",     "/sys/devices/virtual/powercap",
        NULL,
};

const char *const oci_default_readonly_paths[] = {
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
};

void oci_mounts_free(OciMount *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].destination);
                free(m[i].source);
                free(m[i].type);
                strv_free(m[i].options);
        }
        free(m);
}

void oci_spec_done(OciSpec *s) {
        if (!s)
                return;
        strv_free(s->args);
        strv_free(s->env);
        free(s->cwd);
        free(s->additional_gids);
        strv_free(s->capabilities);
        for (size_t i = 0; i < s->n_rlimits; i++)
                free(s->rlimits[i].type);
        free(s->rlimits);
        free(s->apparmor_profile);
        free(s->rootfs);
        free(s->hostname);
        oci_mounts_free(s->mounts, s->n_mounts);
        for (size_t i = 0; i < s->n_namespaces; i++) {
                free(s->namespaces[i].type);
                free(s->namespaces[i].path);
        }
        free(s->namespaces);
        strv_free(s->masked_paths);
        strv_free(s->readonly_paths);
        for (size_t i = 0; i < s->n_devices; i++) {
                free(s->devices[i].path);
                free(s->devices[i].permissions);
        }
        free(s->devices);
        strv_free(s->sysctls);
        free(s->seccomp_profile_path);
        free(s->cpuset_cpus);
        free(s->cpuset_mems);
        free(s->cgroups_path);
        strv_free(s->annotations);
        *s = (OciSpec) {};
}

static int mount_append(OciMount **mounts, size_t *n, const char *destination, const char *type,
                        const char *options) {
        OciMount *m = realloc(*mounts, (*n + 1) * sizeof(OciMount));

        if (!m)
                return -ENOMEM;
        *mounts = m;
        m += *n;
        *m = (OciMount) {
                .destination = strdup(destination),
                .source = strdup(type),
                .type = strdup(type),
                .options = strv_split(options, ","),
        };
        if (!m->destination || !m->source || !m->type || !m->options) {
                free(m->destination);
                free(m->source);
                free(m->type);
                strv_free(m->options);
                return -ENOMEM;
        }
        (*n)++;
        return 0;
}

int oci_default_mounts(OciMount **mounts, size_t *n, bool readonly_sys) {
        const char *ro = readonly_sys ? ",ro" : "";
        char sys[64], cgroup[64];
        int r;

        snprintf(sys, sizeof sys, "nosuid,noexec,nodev%s", ro);
        snprintf(cgroup, sizeof cgroup, "nosuid,noexec,nodev,relatime%s", ro);
        if ((r = mount_append(mounts, n, "/proc", "proc", "nosuid,noexec,nodev")) < 0 ||
            (r = mount_append(mounts, n, "/dev", "tmpfs", "nosuid,strictatime,mode=755,size=65536k")) < 0 ||
            (r = mount_append(mounts, n, "/dev/pts", "devpts",
                              "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5")) < 0 ||
            (r = mount_append(mounts, n, "/dev/mqueue", "mqueue", "nosuid,noexec,nodev")) < 0 ||
            (r = mount_append(mounts, n, "/sys", "sysfs", sys)) < 0 ||
            (r = mount_append(mounts, n, "/sys/fs/cgroup", "cgroup", cgroup)) < 0)
                return r;
        return 0;
}

/* Generation. */

static void gen_u64(yajl_gen g, uint64_t v) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%" PRIu64, v);

        yajl_gen_number(g, buf, (size_t) len);
}

static void gen_key_u64(yajl_gen g, const char *key, uint64_t v) {
        json_gen_str(g, key);
        gen_u64(g, v);
}

/* "key=value" strings as an object (a string without '=' has an empty value). */
static void gen_key_map(yajl_gen g, const char *key, char **l) {
        json_gen_str(g, key);
        yajl_gen_map_open(g);
        for (char **p = l; p && *p; p++) {
                const char *eq = strchr(*p, '=');

                if (eq) {
                        yajl_gen_string(g, (const unsigned char *) *p, (size_t) (eq - *p));
                        json_gen_str(g, eq + 1);
                } else {
                        json_gen_str(g, *p);
                        json_gen_str(g, "");
                }
        }
        yajl_gen_map_close(g);
}

static void gen_process(yajl_gen g, const OciSpec *s) {
        json_gen_str(g, "process");
        yajl_gen_map_open(g);
        json_gen_key_bool(g, "terminal", s->terminal);

        json_gen_str(g, "user");
        yajl_gen_map_open(g);
        json_gen_key_int(g, "uid", s->uid);
        json_gen_key_int(g, "gid", s->gid);
        if (s->n_additional_gids > 0) {
                json_gen_str(g, "additionalGids");
                yajl_gen_array_open(g);
                for (size_t i = 0; i < s->n_additional_gids; i++)
                        yajl_gen_integer(g, s->additional_gids[i]);
                yajl_gen_array_close(g);
        }
        yajl_gen_map_close(g);

        json_gen_key_strv(g, "args", s->args);
        json_gen_key_strv(g, "env", s->env);
        json_gen_key_str(g, "cwd", s->cwd ?: "/");

        json_gen_str(g, "capabilities");
        yajl_gen_map_open(g);
        json_gen_key_strv(g, "bounding", s->capabilities);
        json_gen_key_strv(g, "effective", s->capabilities);
        json_gen_key_strv(g, "permitted", s->capabilities);
        json_gen_key_strv(g, "inheritable", NULL);
        json_gen_key_strv(g, "ambient", NULL);
        yajl_gen_map_close(g);

        if (s->n_rlimits > 0) {
                json_gen_str(g, "rlimits");
                yajl_gen_array_open(g);
                for (size_t i = 0; i < s->n_rlimits; i++) {
                        yajl_gen_map_open(g);
                        json_gen_key_str(g, "type", s->rlimits[i].type);
                        gen_key_u64(g, "hard", s->rlimits[i].hard);
                        gen_key_u64(g, "soft", s->rlimits[i].soft);
                        yajl_gen_map_close(g);
                }
                yajl_gen_array_close(g);
        }
        json_gen_key_bool(g, "noNewPrivileges", s->no_new_privileges);
        if (s->has_oom_score_adj)
                json_gen_key_int(g, "oomScoreAdj", s->oom_score_adj);
        if (s->apparmor_profile)
                json_gen_key_str(g, "apparmorProfile", s->apparmor_profile);
        yajl_gen_map_close(g);
}

static void gen_mounts(yajl_gen g, const OciSpec *s) {
        json_gen_str(g, "mounts");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < s->n_mounts; i++) {
                const OciMount *m = s->mounts + i;

                yajl_gen_map_open(g);
                json_gen_key_str(g, "destination", m->destination);
                if (m->type)
                        json_gen_key_str(g, "type", m->type);
                if (m->source)
                        json_gen_key_str(g, "source", m->source);
                json_gen_key_strv(g, "options", m->options);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
}

typedef struct DefaultDevice {
        char type;
        int64_t major, minor; /* -1: any */
        const char *access;
} DefaultDevice;

/* What Docker's (and runc's) device cgroup allows every container. */
static const DefaultDevice default_devices[] = {
        { 'c', -1, -1, "m" },    /* mknod of any character device */
        { 'b', -1, -1, "m" },    /* and block device */
        { 'c', 1, 3, "rwm" },    /* /dev/null */
        { 'c', 1, 5, "rwm" },    /* /dev/zero */
        { 'c', 1, 7, "rwm" },    /* /dev/full */
        { 'c', 5, 0, "rwm" },    /* /dev/tty */
        { 'c', 1, 8, "rwm" },    /* /dev/random */
        { 'c', 1, 9, "rwm" },    /* /dev/urandom */
        { 'c', 5, 2, "rwm" },    /* /dev/ptmx */
        { 'c', 136, -1, "rwm" }, /* /dev/pts/N */
};

static void gen_device_rule(yajl_gen g, bool allow, char type, int64_t major, int64_t minor, const char *access) {
        yajl_gen_map_open(g);
        json_gen_key_bool(g, "allow", allow);
        if (type) {
                char t[2] = { type, 0 };
                json_gen_key_str(g, "type", t);
        }
        if (major >= 0)
                json_gen_key_int(g, "major", major);
        if (minor >= 0)
                json_gen_key_int(g, "minor", minor);
        json_gen_key_str(g, "access", access);
        yajl_gen_map_close(g);
}

static void gen_resources(yajl_gen g, const OciSpec *s) {
        json_gen_str(g, "resources");
        yajl_gen_map_open(g);

        json_gen_str(g, "devices");
        yajl_gen_array_open(g);
        gen_device_rule(g, false, 0, -1, -1, "rwm");
        if (s->allow_all_devices)
                gen_device_rule(g, true, 0, -1, -1, "rwm");
        else {
                for (size_t i = 0; i < ELEMENTSOF(default_devices); i++) {
                        const DefaultDevice *d = default_devices + i;
                        gen_device_rule(g, true, d->type, d->major, d->minor, d->access);
                }
                for (size_t i = 0; i < s->n_devices; i++) {
                        const OciDevice *d = s->devices + i;
                        gen_device_rule(g, true, d->type ?: 'c', d->major, d->minor, d->permissions ?: "rwm");
                }
        }
        yajl_gen_array_close(g);

        if (s->cpu_shares || s->cpu_quota || s->cpu_period || s->cpuset_cpus || s->cpuset_mems) {
                json_gen_str(g, "cpu");
                yajl_gen_map_open(g);
                if (s->cpu_shares)
                        gen_key_u64(g, "shares", s->cpu_shares);
                if (s->cpu_quota)
                        gen_key_u64(g, "quota", s->cpu_quota);
                if (s->cpu_period)
                        gen_key_u64(g, "period", s->cpu_period);
                if (s->cpuset_cpus)
                        json_gen_key_str(g, "cpus", s->cpuset_cpus);
                if (s->cpuset_mems)
                        json_gen_key_str(g, "mems", s->cpuset_mems);
                yajl_gen_map_close(g);
        }
        if (s->memory_limit || s->memory_swap_limit) {
                json_gen_str(g, "memory");
                yajl_gen_map_open(g);
                if (s->memory_limit)
                        gen_key_u64(g, "limit", s->memory_limit);
                if (s->memory_swap_limit)
                        gen_key_u64(g, "swap", s->memory_swap_limit);
                yajl_gen_map_close(g);
        }
        if (s->pids_limit) {
                json_gen_str(g, "pids");
                yajl_gen_map_open(g);
                gen_key_u64(g, "limit", s->pids_limit);
                yajl_gen_map_close(g);
        }
        yajl_gen_map_close(g);
}

static int gen_linux(yajl_gen g, const OciSpec *s, Error *error) {
        int r;

        json_gen_str(g, "linux");
        yajl_gen_map_open(g);

        json_gen_str(g, "namespaces");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < s->n_namespaces; i++) {
                yajl_gen_map_open(g);
                json_gen_key_str(g, "type", s->namespaces[i].type);
                if (s->namespaces[i].path)
                        json_gen_key_str(g, "path", s->namespaces[i].path);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        if (s->id_mapped) {
                const OciIdMapping *maps[] = { &s->uid_mapping, &s->gid_mapping };
                for (size_t i = 0; i < 2; i++) {
                        json_gen_str(g, i == 0 ? "uidMappings" : "gidMappings");
                        yajl_gen_array_open(g);
                        yajl_gen_map_open(g);
                        json_gen_key_int(g, "containerID", maps[i]->container_id);
                        json_gen_key_int(g, "hostID", maps[i]->host_id);
                        json_gen_key_int(g, "size", maps[i]->size);
                        yajl_gen_map_close(g);
                        yajl_gen_array_close(g);
                }
        }

        json_gen_key_strv(g, "maskedPaths", s->masked_paths);
        json_gen_key_strv(g, "readonlyPaths", s->readonly_paths);

        json_gen_str(g, "devices");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < s->n_devices; i++) {
                const OciDevice *d = s->devices + i;
                char t[2] = { d->type ?: 'c', 0 };

                yajl_gen_map_open(g);
                json_gen_key_str(g, "path", d->path);
                json_gen_key_str(g, "type", t);
                json_gen_key_int(g, "major", d->major);
                json_gen_key_int(g, "minor", d->minor);
                if (d->file_mode)
                        json_gen_key_int(g, "fileMode", d->file_mode);
                json_gen_key_int(g, "uid", d->uid);
                json_gen_key_int(g, "gid", d->gid);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);

        gen_resources(g, s);
        if (s->cgroups_path)
                json_gen_key_str(g, "cgroupsPath", s->cgroups_path);
        if (s->sysctls)
                gen_key_map(g, "sysctl", s->sysctls);

        switch (s->seccomp) {
        case OCI_SECCOMP_RUNTIME_DEFAULT:
                json_gen_str(g, "seccomp");
                r = oci_seccomp_default_gen(g, s->capabilities);
                break;
        case OCI_SECCOMP_LOCALHOST:
                json_gen_str(g, "seccomp");
                r = oci_seccomp_profile_gen(g, s->seccomp_profile_path, s->capabilities, error);
                break;
        default:
                r = 0;
        }
        if (r < 0)
                return r;

        yajl_gen_map_close(g);
        return 0;
}

static int spec_gen(yajl_gen g, const OciSpec *s, Error *error) {
        int r;

        yajl_gen_map_open(g);
        json_gen_key_str(g, "ociVersion", "1.0.2");
        gen_process(g, s);

        json_gen_str(g, "root");
        yajl_gen_map_open(g);
        json_gen_key_str(g, "path", s->rootfs);
        json_gen_key_bool(g, "readonly", s->readonly_rootfs);
        yajl_gen_map_close(g);

        if (s->hostname)
                json_gen_key_str(g, "hostname", s->hostname);
        gen_mounts(g, s);
        if (s->annotations)
                gen_key_map(g, "annotations", s->annotations);
        r = gen_linux(g, s, error);
        if (r < 0)
                return r;
        yajl_gen_map_close(g);
        return 0;
}

static int spec_generate(const OciSpec *s, yajl_gen *ret, Error *error) {
        yajl_gen g;
        int r;

        if (!s->rootfs)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "no root file system");
        g = yajl_gen_alloc(NULL);
        if (!g)
                return -ENOMEM;
        r = spec_gen(g, s, error);
        if (r < 0) {
                yajl_gen_free(g);
                return r;
        }
        *ret = g;
        return 0;
}

int oci_spec_write(const OciSpec *s, const char *path, Error *error) {
        _cleanup_(yajl_gen_freep) yajl_gen g = NULL;
        int r;

        r = spec_generate(s, &g, error);
        if (r < 0)
                return r;
        r = json_gen_write_file(g, path, 0600);
        if (r < 0)
                return error_errno(error, r, "write %s", path);
        return 0;
}

int oci_spec_to_json(const OciSpec *s, char **ret, Error *error) {
        _cleanup_(yajl_gen_freep) yajl_gen g = NULL;
        char *j;
        int r;

        r = spec_generate(s, &g, error);
        if (r < 0)
                return r;
        j = json_gen_steal(g);
        if (!j)
                return error_errno(error, ENOMEM, "OCI spec");
        *ret = j;
        return 0;
}
