/* A container's OCI config.json: the CRI request resolved against its image's config (Entrypoint,
 * Cmd, Env, WorkingDir, User), its pod (namespaces, hosts, resolv.conf, hostname, /dev/shm) and
 * its mounted rootfs (users and groups looked up in the image's /etc/passwd and /etc/group). */
#include <assert.h>
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ctr-internal.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "quote.h"
#include "macro.h"
#include "systemd-manager.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int push_all(char ***l, char **from) {
        for (char **p = from; p && *p; p++)
                if (strv_push(l, *p) < 0)
                        return -ENOMEM;
        return 0;
}

static char **json_strv_or_null(yajl_val obj, const char *key) {
        yajl_val v = json_get(obj, key);
        return YAJL_IS_ARRAY(v) ? json_get_strv(obj, key) : NULL;
}

/* Kubernetes' rules: command replaces the Entrypoint (and drops the Cmd), args replace the Cmd. */
static int make_args(const CtrSpec *s, yajl_val config, char ***ret) {
        char **entrypoint = json_strv_or_null(config, "Entrypoint"), **cmd = json_strv_or_null(config, "Cmd");
        char **args = NULL;
        int r = 0;

        if (s->command && s->command[0]) {
                r = push_all(&args, s->command);
                if (r >= 0)
                        r = push_all(&args, s->args);
        } else {
                r = push_all(&args, entrypoint);
                if (r >= 0)
                        r = push_all(&args, s->args && s->args[0] ? s->args : cmd);
        }
        strv_free(entrypoint);
        strv_free(cmd);
        if (r < 0) {
                strv_free(args);
                return r;
        }
        *ret = args;
        return 0;
}

static int env_set(char ***env, const char *key, const char *value) {
        size_t k = strlen(key);
        char *kv;

        if (asprintf(&kv, "%s=%s", key, value) < 0)
                return -ENOMEM;
        for (char **p = *env; p && *p; p++)
                if (strncmp(*p, key, k) == 0 && (*p)[k] == '=') {
                        free(*p);
                        *p = kv;
                        return 0;
                }
        int r = strv_push(env, kv);
        free(kv);
        return r;
}

static int make_env(const CtrSpec *s, yajl_val config, const Pod *pod, char ***ret) {
        char **image_env = json_strv_or_null(config, "Env"), **env = NULL;
        int r = 0;

        for (char **p = image_env; r >= 0 && p && *p; p++) {
                char *eq = strchr(*p, '=');
                if (!eq)
                        continue;
                *eq = '\0';
                r = env_set(&env, *p, eq + 1);
        }
        if (r >= 0)
                r = env_set(&env, "HOSTNAME", pod->hostname);
        for (size_t i = 0; r >= 0 && i < s->n_envs; i++)
                r = env_set(&env, s->envs[i].key, s->envs[i].value);
        if (r >= 0 && !strv_contains(env, "PATH")) {
                bool has_path = false;
                for (char **p = env; p && *p; p++)
                        has_path = has_path || strncmp(*p, "PATH=", 5) == 0;
                if (!has_path)
                        r = strv_push(&env, DEFAULT_PATH);
        }
        strv_free(image_env);
        if (r < 0) {
                strv_free(env);
                return r;
        }
        *ret = env;
        return 0;
}

static int add_mount(OciSpec *o, const char *dest, const char *source, const char *type, const char *const *options) {
        OciMount *m = realloc(o->mounts, (o->n_mounts + 1) * sizeof *m);

        if (!m)
                return -ENOMEM;
        o->mounts = m;
        m = &o->mounts[o->n_mounts];
        *m = (OciMount) { .destination = strdup(dest), .source = strdup(source), .type = strdup(type) };
        o->n_mounts++;
        for (const char *const *p = options; p && *p; p++)
                if (strv_push(&m->options, *p) < 0)
                        return -ENOMEM;
        if (!m->destination || !m->source || !m->type || !m->options)
                return -ENOMEM;
        return 0;
}

static bool has_cri_mount(const CtrSpec *s, const char *dest) {
        for (size_t i = 0; i < s->n_mounts; i++)
                if (strcmp(s->mounts[i].container_path, dest) == 0)
                        return true;
        return false;
}

static int add_namespace(OciSpec *o, const char *type, const char *path) {
        OciNamespace *n = realloc(o->namespaces, (o->n_namespaces + 1) * sizeof *n);

        if (!n)
                return -ENOMEM;
        o->namespaces = n;
        n[o->n_namespaces] = (OciNamespace) { .type = strdup(type), .path = path ? strdup(path) : NULL };
        o->n_namespaces++;
        if (!n[o->n_namespaces - 1].type || (path && !n[o->n_namespaces - 1].path))
                return -ENOMEM;
        return 0;
}

static int add_device(OciSpec *o, const char *host, const char *container_path, const char *perms, Error *error) {
        struct stat st;
        OciDevice *d;

        if (stat(host, &st) < 0)
                return error_errno(error, errno, "devices: host_path %s", QUOTE(host));
        if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "devices: host_path %s is no character or block device", QUOTE(host));
        d = realloc(o->devices, (o->n_devices + 1) * sizeof *d);
        if (!d)
                return -ENOMEM;
        o->devices = d;
        d[o->n_devices] = (OciDevice) {
                .path = strdup(container_path),
                .type = S_ISCHR(st.st_mode) ? 'c' : 'b',
                .major = major(st.st_rdev),
                .minor = minor(st.st_rdev),
                .file_mode = st.st_mode & 07777,
                .uid = st.st_uid,
                .gid = st.st_gid,
                .permissions = strdup(perms && perms[0] ? perms : "rwm"),
        };
        o->n_devices++;
        return d[o->n_devices - 1].path && d[o->n_devices - 1].permissions ? 0 : -ENOMEM;
}

/* Privileged containers get the host's devices, as containerd's WithHostDevices does. */
static int add_host_devices(OciSpec *o, const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *e;

        if (!d)
                return 0;
        while ((e = readdir(d))) {
                char path[512];
                struct stat st;

                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                if (lstat(path, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode) && strcmp(dir, "/dev") == 0 && strcmp(e->d_name, "pts") != 0 &&
                    strcmp(e->d_name, "shm") != 0 && strcmp(e->d_name, "mqueue") != 0)
                        (void) add_host_devices(o, path);
                else if ((S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) && strcmp(path, "/dev/console") != 0 &&
                         strcmp(path, "/dev/ptmx") != 0) {
                        /* A device that went away meanwhile is skipped. */
                        if (add_device(o, path, path, "rwm", NULL) == -ENOMEM) {
                                closedir(d);
                                return -ENOMEM;
                        }
                }
        }
        closedir(d);
        return 0;
}

static int resolve_user(const CtrSpec *s, yajl_val config, const char *rootfs, OciSpec *o, Error *error) {
        const char *image_user = json_get_str(config, "User");
        char buf[64];
        gid_t *gids = NULL;
        size_t n_gids = 0;
        int r;

        if (s->has_run_as_user) {
                snprintf(buf, sizeof buf, "%lld", (long long) s->run_as_user);
                r = oci_lookup_user(rootfs, buf, &o->uid, &o->gid, &gids, &n_gids, error);
        } else if (s->run_as_username && s->run_as_username[0])
                r = oci_lookup_user(rootfs, s->run_as_username, &o->uid, &o->gid, &gids, &n_gids, error);
        else if (image_user && image_user[0])
                r = oci_lookup_user(rootfs, image_user, &o->uid, &o->gid, &gids, &n_gids, error);
        else
                r = oci_lookup_user(rootfs, "0", &o->uid, &o->gid, &gids, &n_gids, error);
        if (r < 0)
                return r;
        if (s->has_run_as_group)
                o->gid = (gid_t) s->run_as_group;
        o->additional_gids = realloc(gids, (n_gids + s->n_supplemental_groups + 1) * sizeof(gid_t));
        if (!o->additional_gids) {
                free(gids);
                return -ENOMEM;
        }
        /* Strict: the groups asked for only, none of the image's /etc/group for the user. */
        o->n_additional_gids = s->supplemental_groups_strict ? 0 : n_gids;
        for (size_t i = 0; i < s->n_supplemental_groups; i++)
                o->additional_gids[o->n_additional_gids++] = (gid_t) s->supplemental_groups[i];
        return 0;
}

static int make_mounts(const Container *c, const CtrSpec *s, const Pod *pod, OciSpec *o, Error *error) {
        static const char *const shm_opts[] = { "nosuid", "noexec", "nodev", "mode=1777", "size=65536k", NULL };
        char *run = NULL;
        int r;

        r = oci_default_mounts(&o->mounts, &o->n_mounts, !s->privileged);
        if (r < 0)
                return r;
        if (asprintf(&run, "%s/pods/%s", pod->table->env.state_dir, pod->id) < 0)
                return -ENOMEM;

        /* /dev/shm: the pod's when it has an IPC namespace of its own, the host's for host IPC. */
        if (!has_cri_mount(s, "/dev/shm")) {
                char *shm = NULL;
                if (pod->spec.ipc == POD_NS_POD && asprintf(&shm, "%s/shm", run) >= 0 && access(shm, F_OK) == 0) {
                        static const char *const opts[] = { "rbind", "rprivate", "nosuid", "nodev", "noexec", NULL };
                        r = add_mount(o, "/dev/shm", shm, "bind", opts);
                } else if (pod->spec.ipc == POD_NS_NODE) {
                        static const char *const opts[] = { "rbind", "rprivate", NULL };
                        r = add_mount(o, "/dev/shm", "/dev/shm", "bind", opts);
                } else
                        r = add_mount(o, "/dev/shm", "shm", "tmpfs", shm_opts);
                free(shm);
                if (r < 0)
                        goto out;
        }
        /* The pod's files. */
        static const char *const files[] = { "hostname", "hosts", "resolv.conf" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                char dest[64], *src = NULL;
                snprintf(dest, sizeof dest, "/etc/%s", files[i]);
                if (has_cri_mount(s, dest))
                        continue;
                if (asprintf(&src, "%s/%s", run, files[i]) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                if (access(src, F_OK) == 0) {
                        const char *opts[] = { "rbind", "rprivate", s->readonly_rootfs ? "ro" : "rw", NULL };
                        r = add_mount(o, dest, src, "bind", opts);
                }
                free(src);
                if (r < 0)
                        goto out;
        }
        /* The CRI's mounts. A missing host path becomes a directory, as containerd does. */
        for (size_t i = 0; i < s->n_mounts; i++) {
                const CtrMount *m = &s->mounts[i];
                const char *prop = m->propagation == 1 ? "rslave" : m->propagation == 2 ? "rshared" : "rprivate";
                /* "rro": the runtime makes the submounts read-only too (mount_setattr, AT_RECURSIVE). */
                const char *opts[] = { "rbind", prop, m->readonly ? "ro" : "rw", m->recursive_readonly ? "rro" : NULL,
                                       NULL };
                struct stat st;

                if (stat(m->host_path, &st) < 0) {
                        r = errno == ENOENT ? mkdir_p(m->host_path, 0755) : -errno;
                        if (r < 0) {
                                r = error_errno(error, r, "mounts: %s: host_path %s", QUOTE(m->container_path),
                                                QUOTE(m->host_path));
                                goto out;
                        }
                }
                _cleanup_free_ char *idmapped = ctr_volume_source(c, i);
                r = add_mount(o, m->container_path, idmapped ?: m->host_path, "bind", opts);
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        free(run);
        return r;
}

static int make_namespaces(const CtrSpec *s, const Pod *pod, OciSpec *o, CtrTable *t, Error *error) {
        char *net = pod_ns_path(pod, "net"), *ipc = pod_ns_path(pod, "ipc"), *uts = pod_ns_path(pod, "uts");
        char *pid = NULL, *user = pod_ns_path(pod, "user");
        int r = 0;

        /* The pod's user namespace first (the runtime joins it first too): it owns the others. */
        if (user) {
                r = add_namespace(o, "user", user);
                o->id_mapped = true;
                o->uid_mapping = (OciIdMapping) { pod->spec.uids[0].container_id, pod->spec.uids[0].host_id,
                                                  pod->spec.uids[0].length };
                o->gid_mapping = (OciIdMapping) { pod->spec.gids[0].container_id, pod->spec.gids[0].host_id,
                                                  pod->spec.gids[0].length };
        }
        if (r >= 0)
                r = add_namespace(o, "mount", NULL);
        if (r >= 0 && net)
                r = add_namespace(o, "network", net);
        if (r >= 0 && ipc)
                r = add_namespace(o, "ipc", ipc);
        else if (r >= 0 && pod->spec.ipc != POD_NS_NODE)
                r = add_namespace(o, "ipc", NULL);
        if (r >= 0 && uts)
                r = add_namespace(o, "uts", uts);
        if (r < 0)
                goto out;
        switch (s->pid) {
        case POD_NS_NODE:
                break;
        case POD_NS_POD:
                pid = pod_ns_path(pod, "pid");
                r = add_namespace(o, "pid", pid);
                break;
        case POD_NS_TARGET: {
                Container *target = NULL;
                if (!s->pid_target || ctr_find_prefix(t, s->pid_target, &target) < 0 || target->state != CTR_RUNNING ||
                    !target->pid) {
                        r = error_set(error, ERROR_NOT_FOUND, ENOENT,
                                      "the target container %s of the PID namespace is not running", QUOTE(s->pid_target));
                        break;
                }
                if (asprintf(&pid, "/proc/%u/ns/pid", target->pid) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = add_namespace(o, "pid", pid);
                break;
        }
        default:
                r = add_namespace(o, "pid", NULL);
        }
out:
        free(net);
        free(ipc);
        free(uts);
        free(pid);
        free(user);
        return r;
}

/* The process: arguments, environment, working directory, user, capabilities, rlimits. */
static int make_process(Container *c, const Pod *pod, const Image *image, yajl_val config, const CtrSpec *s,
                        OciSpec *o, Error *error) {
        CtrTable *t = c->table;
        struct rlimit nofile;
        int r;

        r = make_args(s, config, &o->args);
        if (r < 0)
                return error_errno(error, r, "command");
        if (!o->args || !o->args[0])
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "no command: neither the request nor image %s gives one", image->id);
        r = make_env(s, config, pod, &o->env);
        if (r < 0)
                return error_errno(error, r, "environment");
        o->cwd = strdup(s->working_dir && s->working_dir[0]           ? s->working_dir
                        : json_get_str(config, "WorkingDir") && json_get_str(config, "WorkingDir")[0]
                                ? json_get_str(config, "WorkingDir")
                                : "/");
        if (!o->cwd)
                return -ENOMEM;
        if (o->cwd[0] != '/')
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "working directory %s is not absolute",
                                 QUOTE(o->cwd));
        r = resolve_user(s, config, o->rootfs, o, error);
        if (r < 0)
                return r;

        o->no_new_privileges = s->no_new_privs;
        if (s->privileged)
                o->capabilities = oci_bounding_capabilities();
        else
                o->capabilities = oci_capabilities_resolve(oci_default_capabilities, s->cap_add, s->cap_drop, error);
        if (!o->capabilities)
                return error_is_set(error) ? error_to_errno(error) : -ENOMEM;

        /* The daemon's own hard limit: raising it needs CAP_SYS_RESOURCE. */
        if (getrlimit(RLIMIT_NOFILE, &nofile) >= 0) {
                o->rlimits = calloc(1, sizeof *o->rlimits);
                if (!o->rlimits || !(o->rlimits[0].type = strdup("RLIMIT_NOFILE")))
                        return -ENOMEM;
                uint64_t n = nofile.rlim_max == RLIM_INFINITY ? 1048576 : MIN((uint64_t) nofile.rlim_max, 1048576);
                o->rlimits[0].soft = o->rlimits[0].hard = n;
                o->n_rlimits = 1;
        }
        o->has_oom_score_adj = true;
        o->oom_score_adj = (int) MAX(MIN(s->oom_score_adj, 1000), -1000);
        if (!t->can_lower_oom_score && o->oom_score_adj < t->own_oom_score_adj)
                o->oom_score_adj = t->own_oom_score_adj;
        if (s->apparmor_profile && s->apparmor_profile[0] && !(o->apparmor_profile = strdup(s->apparmor_profile)))
                return -ENOMEM;
        return 0;
}

/* Masked and read-only paths, devices, seccomp. */
static int make_confinement(const CtrSpec *s, OciSpec *o, Error *error) {
        int r;

        if (!s->privileged) {
                r = push_all(&o->masked_paths, s->has_masked_paths ? s->masked_paths : (char **) oci_default_masked_paths);
                if (r >= 0)
                        r = push_all(&o->readonly_paths,
                                     s->has_readonly_paths ? s->readonly_paths : (char **) oci_default_readonly_paths);
                /* The cgroup mount is "ro", but on cgroup v1 runc makes a tmpfs at /sys/fs/cgroup and
                 * only the hierarchies in it read-only: the tmpfs itself takes a mkdir. A read-only
                 * path is read-only whatever the runtime and the cgroup version, and whichever paths
                 * kubelet lists for /proc. A mount the request puts there is the request's. */
                if (r >= 0 && !has_cri_mount(s, "/sys/fs/cgroup") && !strv_contains(o->readonly_paths, "/sys/fs/cgroup"))
                        r = strv_push(&o->readonly_paths, "/sys/fs/cgroup");
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < s->n_devices; i++) {
                r = add_device(o, s->devices[i].host_path, s->devices[i].container_path, s->devices[i].permissions,
                               error);
                if (r < 0)
                        return r;
        }
        if (s->privileged) {
                o->allow_all_devices = true;
                r = add_host_devices(o, "/dev");
                if (r < 0)
                        return error_errno(error, r, "the host's devices");
        }
        o->seccomp = s->privileged ? OCI_SECCOMP_UNCONFINED : s->seccomp;
        if (o->seccomp == OCI_SECCOMP_LOCALHOST && !(o->seccomp_profile_path = strdup(s->seccomp_profile ?: "")))
                return -ENOMEM;
        return 0;
}

/* Resources, annotations and the cgroup. */
static int make_resources(Container *c, const Pod *pod, const CtrSpec *s, OciSpec *o) {
        CtrTable *t = c->table;

        o->cpu_shares = (uint64_t) MAX(s->cpu_shares, 0);
        o->cpu_quota = (uint64_t) MAX(s->cpu_quota, 0);
        o->cpu_period = (uint64_t) MAX(s->cpu_period, 0);
        o->memory_limit = (uint64_t) MAX(s->memory_limit, 0);
        o->memory_swap_limit = (uint64_t) MAX(s->memory_swap_limit, 0);
        if ((s->cpuset_cpus && s->cpuset_cpus[0] && !(o->cpuset_cpus = strdup(s->cpuset_cpus))) ||
            (s->cpuset_mems && s->cpuset_mems[0] && !(o->cpuset_mems = strdup(s->cpuset_mems))))
                return -ENOMEM;
        for (size_t i = 0; i < s->n_annotations; i++) {
                _cleanup_free_ char *kv = NULL;
                if (asprintf(&kv, "%s=%s", s->annotations[i].key, s->annotations[i].value) < 0) {
                        kv = NULL;
                        return -ENOMEM;
                }
                if (strv_push(&o->annotations, kv) < 0)
                        return -ENOMEM;
        }
        /* The container's processes live in its unit's own cgroup (the OCI runtime joins it, and
         * creates it in the v1 hierarchies systemd does not manage): systemd tracks them and
         * applies the unit's limits. */
        const char *root = t->env.cgroup_root(t->env.userdata);
        _cleanup_free_ char *slice = root ? systemd_slice_path(pod->slice) : NULL, *unit = ctr_unit_name(c);
        if (slice && unit && asprintf(&o->cgroups_path, "%s%s/%s", root, slice, unit) < 0)
                o->cgroups_path = NULL;
        /* Where a cgroup v1 memory controller counts the OOM kills systemd cannot see. */
        free(c->memcg);
        c->memcg = NULL;
        if (o->cgroups_path && access("/sys/fs/cgroup/memory/memory.oom_control", F_OK) == 0 &&
            asprintf(&c->memcg, "/sys/fs/cgroup/memory%s", o->cgroups_path) < 0)
                c->memcg = NULL;
        return 0;
}

int ctr_write_oci_config(Container *c, const Pod *pod, const Image *image, yajl_val image_config, const CtrSpec *s,
                         Error *error) {
        _cleanup_(oci_spec_done) OciSpec o = {};
        _cleanup_free_ char *out = NULL;
        yajl_val config;
        int r;

        assert(c);
        assert(pod);
        assert(image);
        assert(s);

        if (!image_config)
                return error_set(error, ERROR_INTERNAL, EIO, "cannot read the config of image %s", image->id);
        config = json_get(image_config, "config");

        o.rootfs = ctr_path(c, true, "rootfs");
        out = ctr_path(c, true, "config.json");
        if (!o.rootfs || !out)
                return error_errno(error, ENOMEM, "the OCI spec");
        r = make_process(c, pod, image, config, s, &o, error);
        if (r >= 0) {
                o.readonly_rootfs = s->readonly_rootfs;
                r = make_mounts(c, s, pod, &o, error);
        }
        if (r >= 0)
                r = make_namespaces(s, pod, &o, c->table, error);
        if (r >= 0)
                r = make_confinement(s, &o, error);
        if (r >= 0)
                r = make_resources(c, pod, s, &o);
        if (r >= 0)
                r = oci_spec_write(&o, out, error);
        if (r >= 0) {
                /* The effective identity, for ContainerStatus.user. */
                free(c->gids);
                c->gids = calloc(o.n_additional_gids + 1, sizeof *c->gids);
                c->n_gids = 0;
                c->has_user = c->gids != NULL;
                c->uid = o.uid;
                c->gid = o.gid;
                for (size_t i = 0; c->gids && i < o.n_additional_gids; i++)
                        c->gids[c->n_gids++] = o.additional_gids[i];
        }
        if (r < 0 && !error_is_set(error))
                return error_errno(error, r, "the OCI spec");
        return r;
}
