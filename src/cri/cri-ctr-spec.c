/* CreateContainer's ContainerConfig as a CtrSpec, checked: what a container may ask for, judged
 * before anything is made (also by tests/fuzz/fuzz-cri-validate). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "cri-util.h"
#include "ctr.h"
#include "fileio.h"
#include "json-util.h"
#include "quote.h"
#include "strv.h"



/* Absolute, without '..' components. */
static bool path_ok(const char *p) {
        return p && p[0] == '/' && !path_has_dotdot(p);
}

/* Below a directory: relative, without '..' components ("a..b" is a name like any other). */
static bool relative_path_ok(const char *p) {
        return p && p[0] != '/' && !path_has_dotdot(p);
}

/* A device cgroup access: r, w and m, each at most once ("" means all three). */
static bool device_permissions_ok(const char *p) {
        for (const char *s = p; s && *s; s++)
                if (!strchr("rwm", *s) || strchr(s + 1, *s))
                        return false;
        return true;
}

static int seccomp_from(const Runtime__V1__LinuxContainerSecurityContext *sc, CtrSpec *s, Error *error) {
        /* No profile at all means the default one: security is on by default. */
        s->seccomp = OCI_SECCOMP_RUNTIME_DEFAULT;
        if (!sc || !sc->seccomp)
                return 0;
        switch (sc->seccomp->profile_type) {
        case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined:
                s->seccomp = OCI_SECCOMP_UNCONFINED;
                return 0;
        case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost:
                if (!path_ok(sc->seccomp->localhost_ref))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "seccomp profile %s is no absolute path",
                                         QUOTE(sc->seccomp->localhost_ref));
                s->seccomp = OCI_SECCOMP_LOCALHOST;
                s->seccomp_profile = strdup(sc->seccomp->localhost_ref);
                return s->seccomp_profile ? 0 : -ENOMEM;
        default:
                return 0;
        }
}

static int apparmor_from(const Runtime__V1__LinuxContainerSecurityContext *sc, CtrSpec *s) {
        const char *name = NULL;
        char *enabled = NULL;

        /* Only where the host has AppArmor; runtime/default means no profile of ours. */
        if (read_file("/sys/module/apparmor/parameters/enabled", 16, &enabled, NULL) < 0 || enabled[0] != 'Y') {
                free(enabled);
                s->apparmor_profile = strdup("");
                return s->apparmor_profile ? 0 : -ENOMEM;
        }
        free(enabled);
        if (sc && sc->apparmor && sc->apparmor->profile_type == RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost)
                name = sc->apparmor->localhost_ref;
        s->apparmor_profile = strdup(name ?: "");
        return s->apparmor_profile ? 0 : -ENOMEM;
}

/* The fields that are copied as they are; -ENOMEM only. */
static int spec_copy(const Runtime__V1__ContainerConfig *c, CtrSpec *s) {
        const Runtime__V1__LinuxContainerConfig *lx = c->linux;
        const Runtime__V1__LinuxContainerSecurityContext *sc = lx ? lx->security_context : NULL;
        const Runtime__V1__LinuxContainerResources *res = lx ? lx->resources : NULL;
        const Runtime__V1__NamespaceOption *ns = sc ? sc->namespace_options : NULL;

        *s = (CtrSpec) {
                .name = strdup(c->metadata->name ?: ""),
                .attempt = c->metadata->attempt,
                .image_ref = strdup(c->image->image ?: ""),
                .command = cri_strv_dup(c->command, c->n_command),
                .args = cri_strv_dup(c->args, c->n_args),
                .working_dir = strdup(c->working_dir ?: ""),
                .log_path = strdup(c->log_path ?: ""),
                .stdin_ = c->stdin,
                .stdin_once = c->stdin_once,
                .tty = c->tty,
                .privileged = sc && sc->privileged,
                .readonly_rootfs = sc && sc->readonly_rootfs,
                .no_new_privs = sc && sc->no_new_privs,
                .has_run_as_user = sc && sc->run_as_user,
                .run_as_user = sc && sc->run_as_user ? sc->run_as_user->value : 0,
                .has_run_as_group = sc && sc->run_as_group,
                .run_as_group = sc && sc->run_as_group ? sc->run_as_group->value : 0,
                .run_as_username = strdup(sc && sc->run_as_username ? sc->run_as_username : ""),
                .cap_add = cri_strv_dup(sc && sc->capabilities ? sc->capabilities->add_capabilities : NULL,
                                     sc && sc->capabilities ? sc->capabilities->n_add_capabilities : 0),
                .cap_drop = cri_strv_dup(sc && sc->capabilities ? sc->capabilities->drop_capabilities : NULL,
                                      sc && sc->capabilities ? sc->capabilities->n_drop_capabilities : 0),
                .has_masked_paths = sc && sc->n_masked_paths > 0,
                .masked_paths = cri_strv_dup(sc ? sc->masked_paths : NULL, sc ? sc->n_masked_paths : 0),
                .has_readonly_paths = sc && sc->n_readonly_paths > 0,
                .readonly_paths = cri_strv_dup(sc ? sc->readonly_paths : NULL, sc ? sc->n_readonly_paths : 0),
                .pid = ns ? (PodNsMode) ns->pid : _POD_NS_UNSET,
                .pid_target = strdup(ns && ns->target_id ? ns->target_id : ""),
                .cpu_period = res ? res->cpu_period : 0,
                .cpu_quota = res ? res->cpu_quota : 0,
                .cpu_shares = res ? res->cpu_shares : 0,
                .memory_limit = res ? res->memory_limit_in_bytes : 0,
                .memory_swap_limit = res ? res->memory_swap_limit_in_bytes : 0,
                .oom_score_adj = res ? res->oom_score_adj : 0,
                .cpuset_cpus = strdup(res && res->cpuset_cpus ? res->cpuset_cpus : ""),
                .cpuset_mems = strdup(res && res->cpuset_mems ? res->cpuset_mems : ""),
        };
        if (!s->name || !s->image_ref || !s->command || !s->args || !s->working_dir || !s->log_path ||
            !s->run_as_username || !s->cap_add || !s->cap_drop || !s->masked_paths || !s->readonly_paths ||
            !s->pid_target || !s->cpuset_cpus || !s->cpuset_mems ||
            !CRI_PAIRS_DUP(c->labels, c->n_labels, &s->labels, &s->n_labels) ||
            !CRI_PAIRS_DUP(c->annotations, c->n_annotations, &s->annotations, &s->n_annotations))
                return -ENOMEM;
        if (sc && sc->n_supplemental_groups) {
                s->supplemental_groups = calloc(sc->n_supplemental_groups, sizeof(int64_t));
                if (!s->supplemental_groups)
                        return -ENOMEM;
                memcpy(s->supplemental_groups, sc->supplemental_groups, sc->n_supplemental_groups * sizeof(int64_t));
                s->n_supplemental_groups = sc->n_supplemental_groups;
        }
        s->supplemental_groups_strict = sc && sc->supplemental_groups_policy == RUNTIME__V1__SUPPLEMENTAL_GROUPS_POLICY__Strict;
        return 0;
}

static int envs_from(const Runtime__V1__ContainerConfig *c, CtrSpec *s, Error *error) {
        /* KeyValue's value is bytes in runtime.v1. */
        s->envs = calloc(c->n_envs + 1, sizeof *s->envs);
        if (!s->envs)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_envs; i++) {
                const ProtobufCBinaryData *v = &c->envs[i]->value;
                s->envs[i].key = strdup(c->envs[i]->key ?: "");
                s->envs[i].value = strndup(v->data ? (const char *) v->data : "", v->len);
                s->n_envs++;
                if (!s->envs[i].key || !s->envs[i].value)
                        return -ENOMEM;
                if (v->len && memchr(v->data, 0, v->len))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "envs: environment variable %s holds a NUL byte",
                                         QUOTE(s->envs[i].key));
        }
        return 0;
}

/* What the copied fields must be. */
static int spec_check(const CtrSpec *s, Error *error) {
        if (!s->name[0])
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "config.metadata.name is empty");
        if (strlen(s->name) > 253 || strchr(s->name, '/'))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "config.metadata.name %s is invalid: longer than 253 bytes or with '/'",
                                 QUOTE(s->name));
        if (!s->image_ref[0])
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "config.image.image is empty");
        if (s->log_path[0] && !relative_path_ok(s->log_path))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "log_path %s must be relative to the pod's log directory, without '..'",
                                 QUOTE(s->log_path));
        if (s->working_dir[0] && s->working_dir[0] != '/')
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "working_dir %s is not absolute", QUOTE(s->working_dir));
        if (s->has_run_as_user && s->run_as_user < 0)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "run_as_user %lld is negative", (long long) s->run_as_user);
        if (s->has_run_as_group && s->run_as_group < 0)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "run_as_group %lld is negative", (long long) s->run_as_group);
        for (size_t i = 0; i < s->n_envs; i++)
                if (!s->envs[i].key[0] || strchr(s->envs[i].key, '='))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "envs: environment variable name %s is invalid: empty or with '='",
                                         QUOTE(s->envs[i].key));
        return 0;
}

static int mounts_from(const Runtime__V1__ContainerConfig *c, CtrSpec *s, Error *error) {
        s->mounts = calloc(c->n_mounts + 1, sizeof *s->mounts);
        if (!s->mounts)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_mounts; i++) {
                const Runtime__V1__Mount *m = c->mounts[i];
                if (m->image && m->image->image && m->image->image[0])
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "mounts: %s: image volumes are not supported",
                                         QUOTE(m->container_path));
                if (!path_ok(m->container_path))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "mounts: container_path %s must be absolute, without '..'",
                                         QUOTE(m->container_path));
                if (!path_ok(m->host_path))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "mounts: host_path %s must be absolute, without '..'",
                                         QUOTE(m->host_path));
                if (m->recursive_read_only && !m->readonly)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "mounts: %s: recursive_read_only needs readonly", QUOTE(m->container_path));
                if (m->recursive_read_only && m->propagation != RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "mounts: %s: recursive_read_only needs private propagation",
                                         QUOTE(m->container_path));
                s->mounts[i] = (CtrMount) {
                        .container_path = strdup(m->container_path),
                        .host_path = strdup(m->host_path),
                        .readonly = m->readonly,
                        .recursive_readonly = m->recursive_read_only,
                        .propagation = (int) m->propagation,
                };
                s->n_mounts++;
                if (!s->mounts[i].container_path || !s->mounts[i].host_path)
                        return -ENOMEM;
        }
        return 0;
}

static int devices_from(const Runtime__V1__ContainerConfig *c, CtrSpec *s, Error *error) {
        s->devices = calloc(c->n_devices + 1, sizeof *s->devices);
        if (!s->devices)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_devices; i++) {
                const Runtime__V1__Device *d = c->devices[i];
                if (!path_ok(d->container_path) || !path_ok(d->host_path))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "devices: %s → %s: paths must be absolute, without '..'",
                                         QUOTE(d->host_path), QUOTE(d->container_path));
                if (!device_permissions_ok(d->permissions))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "devices: %s: permissions %s are not r, w and m, each at most once",
                                         QUOTE(d->host_path), QUOTE(d->permissions));
                s->devices[i] = (CtrDevice) {
                        .container_path = strdup(d->container_path),
                        .host_path = strdup(d->host_path),
                        .permissions = strdup(d->permissions ?: ""),
                };
                s->n_devices++;
                if (!s->devices[i].container_path || !s->devices[i].host_path || !s->devices[i].permissions)
                        return -ENOMEM;
        }
        return 0;
}

static int stop_signal_from(const Runtime__V1__ContainerConfig *c, CtrSpec *s, Error *error) {
        if (c->stop_signal != RUNTIME__V1__SIGNAL__RUNTIME_DEFAULT) {
                const ProtobufCEnumValue *v =
                        protobuf_c_enum_descriptor_get_value(&runtime__v1__signal__descriptor, (int) c->stop_signal);
                s->stop_signal = v ? ctr_signal_from_string(v->name) : -EINVAL;
                if (s->stop_signal <= 0)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "stop_signal %d is not a signal rktlet knows", (int) c->stop_signal);
        }
        return 0;
}

int cri_ctr_spec_from_config(const Runtime__V1__ContainerConfig *c, CtrSpec *s, Error *error) {
        const Runtime__V1__LinuxContainerSecurityContext *sc = c->linux ? c->linux->security_context : NULL;
        int r;

        *s = (CtrSpec) {};
        if (!c->metadata || !c->image)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "config.metadata or config.image is missing");
        r = spec_copy(c, s);
        if (r >= 0)
                r = envs_from(c, s, error);
        if (r >= 0)
                r = spec_check(s, error);
        if (r >= 0)
                r = mounts_from(c, s, error);
        if (r >= 0)
                r = devices_from(c, s, error);
        if (r >= 0)
                r = stop_signal_from(c, s, error);
        if (r >= 0)
                r = seccomp_from(sc, s, error);
        if (r >= 0)
                r = apparmor_from(sc, s);
        return r;
}
