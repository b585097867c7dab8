/* CRI container methods: translation between runtime.v1 messages and the container and sandbox modules. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "cri-call.h"
#include "cri-service.h"
#include "cri-util.h"
#include "ctr.h"
#include "json-util.h"
#include "log.h"
#include "manager.h"
#include "quote.h"
#include "sandbox.h"
#include "strv.h"

/* Which answer a container call waits for. */
typedef enum CtrCallKind {
        CTR_CALL_CREATE,
        CTR_CALL_START,
        CTR_CALL_STOP,
        CTR_CALL_REMOVE,
} CtrCallKind;

static void detach_ctr_op(void *op) {
        ctr_op_detach(op);
}

static void op_done(Container *c, const Error *error, void *userdata) {
        CriCall *cc = userdata;

        if (error_is_set(error))
                (void) cri_finish_error(cc->call, error);
        else if (cc->kind == CTR_CALL_CREATE) {
                Runtime__V1__CreateContainerResponse resp = RUNTIME__V1__CREATE_CONTAINER_RESPONSE__INIT;
                resp.container_id = c->id;
                (void) cri_reply(cc->call, &resp.base);
        } else
                (void) cri_reply_empty(cc->call);
        cri_call_done(cc);
}

/* --- CreateContainer ----------------------------------------------------------------------------- */



static bool has_dotdot(const char *p) {
        for (const char *s = p; (s = strstr(s, "..")); s += 2)
                if ((s == p || s[-1] == '/') && (s[2] == '/' || s[2] == '\0'))
                        return true;
        return false;
}

/* Absolute, without '..' components. */
static bool path_ok(const char *p) {
        return p && p[0] == '/' && !has_dotdot(p);
}

/* Below a directory: relative, without '..' components ("a..b" is a name like any other). */
static bool relative_path_ok(const char *p) {
        return p && p[0] != '/' && !has_dotdot(p);
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
                s->mounts[i] = (CtrMount) {
                        .container_path = strdup(m->container_path),
                        .host_path = strdup(m->host_path),
                        .readonly = m->readonly,
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

static int spec_from_config(const Runtime__V1__ContainerConfig *c, CtrSpec *s, Error *error) {
        const Runtime__V1__LinuxContainerSecurityContext *sc = c->linux ? c->linux->security_context : NULL;
        int r;

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

int cri_create_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__CreateContainerRequest *req = runtime__v1__create_container_request__unpack(NULL, len, msg);
        Error error = ERROR_INIT;
        CtrSpec spec = {};
        char *packed = NULL;
        size_t packed_len = 0;
        CriCall *cc = NULL;
        CtrOp *op = NULL;
        Image *image;
        Pod *pod;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "CreateContainerRequest does not decode");
        if (!req->config || !req->config->metadata || !req->config->image) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "config.metadata or config.image is missing");
                goto out;
        }
        if (!req->pod_sandbox_id || !req->pod_sandbox_id[0]) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "pod_sandbox_id is empty");
                goto out;
        }
        r = pod_find_prefix(m->pods, req->pod_sandbox_id, &pod);
        if (r < 0) {
                r = grpc_call_finish(call, r == -ENOTUNIQ ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_NOT_FOUND,
                                     "pod_sandbox_id %s %s", QUOTE(req->pod_sandbox_id),
                                     r == -ENOTUNIQ ? "is an ambiguous prefix" : "does not exist");
                goto out;
        }
        if (!sandbox_takes_containers(pod)) {
                r = grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION, "pod sandbox %s is not ready", pod->id);
                goto out;
        }
        r = spec_from_config(req->config, &spec, &error);
        if (r < 0) {
                if (!error_is_set(&error) && r == -ENOMEM)
                        goto out;
                (void) error_set(&error, ERROR_INVALID_ARGUMENT, r, "invalid container config");
                r = cri_finish_error(call, &error);
                goto out;
        }
        image = image_store_find(m->images, spec.image_ref);
        if (!image) {
                r = grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "config.image.image %s is not present: pull it first",
                                     QUOTE(spec.image_ref));
                goto out;
        }

        packed_len = protobuf_c_message_get_packed_size(&req->config->base);
        packed = malloc(packed_len ?: 1);
        cc = cri_call_new(call, m, CTR_CALL_CREATE, detach_ctr_op);
        if (!packed || !cc) {
                r = -ENOMEM;
                goto out;
        }
        protobuf_c_message_pack(&req->config->base, (uint8_t *) packed);
        r = sandbox_create_container(m->containers, pod, image, &spec, packed, packed_len, op_done, cc, &error, &op);
        if (r < 0) {
                cc = cri_call_free(cc);
                r = cri_finish_error(call, &error);
                goto out;
        }
        r = cri_call_wait(TAKE_PTR(cc), op);
out:
        cri_call_free(cc);
        ctr_spec_done(&spec);
        free(packed);
        error_done(&error);
        runtime__v1__create_container_request__free_unpacked(req, NULL);
        return r;
}

/* --- StartContainer / StopContainer / RemoveContainer -------------------------------------------- */

/* The container by id or unique prefix; NULL after answering the call (ret_r says how). */
static Container *lookup(GrpcCall *call, Manager *m, const char *id, bool missing_is_ok, int *ret_r) {
        Container *c;
        int r;

        if (!id || !id[0]) {
                *ret_r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "container_id is empty");
                return NULL;
        }
        r = ctr_find_prefix(m->containers, id, &c);
        if (r == -ENOTUNIQ) {
                *ret_r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "container_id prefix %s is ambiguous",
                                          QUOTE(id));
                return NULL;
        }
        if (r < 0) {
                *ret_r = missing_is_ok ? cri_reply_empty(call)
                                       : grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "container_id %s does not exist",
                                                          QUOTE(id));
                return NULL;
        }
        return c;
}

static int run_op(GrpcCall *call, Manager *m, const char *id, CtrCallKind kind, int64_t timeout) {
        Error error = ERROR_INIT;
        CtrOp *op = NULL;
        CriCall *cc;
        Container *c;
        int r;

        c = lookup(call, m, id, kind != CTR_CALL_START, &r);
        if (!c)
                return r;
        cc = cri_call_new(call, m, kind, detach_ctr_op);
        if (!cc)
                return -ENOMEM;
        r = kind == CTR_CALL_START  ? ctr_start(c, op_done, cc, &error, &op)
            : kind == CTR_CALL_STOP ? ctr_stop(c, timeout, op_done, cc, &error, &op)
                                    : ctr_remove(c, op_done, cc, &error, &op);
        if (r < 0) {
                cri_call_free(cc);
                r = cri_finish_error(call, &error);
                error_done(&error);
                return r;
        }
        return cri_call_wait(cc, op);
}

int cri_start_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__StartContainerRequest *req = runtime__v1__start_container_request__unpack(NULL, len, msg);
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StartContainerRequest does not decode");
        r = run_op(call, userdata, req->container_id, CTR_CALL_START, 0);
        runtime__v1__start_container_request__free_unpacked(req, NULL);
        return r;
}

int cri_stop_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__StopContainerRequest *req = runtime__v1__stop_container_request__unpack(NULL, len, msg);
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StopContainerRequest does not decode");
        r = run_op(call, userdata, req->container_id, CTR_CALL_STOP, req->timeout);
        runtime__v1__stop_container_request__free_unpacked(req, NULL);
        return r;
}

int cri_remove_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__RemoveContainerRequest *req = runtime__v1__remove_container_request__unpack(NULL, len, msg);
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "RemoveContainerRequest does not decode");
        r = run_op(call, userdata, req->container_id, CTR_CALL_REMOVE, 0);
        runtime__v1__remove_container_request__free_unpacked(req, NULL);
        return r;
}

int cri_reopen_container_log(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__ReopenContainerLogRequest *req = runtime__v1__reopen_container_log_request__unpack(NULL, len, msg);
        Runtime__V1__ReopenContainerLogResponse resp = RUNTIME__V1__REOPEN_CONTAINER_LOG_RESPONSE__INIT;
        Error error = ERROR_INIT;
        Container *c;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ReopenContainerLogRequest does not decode");
        c = lookup(call, userdata, req->container_id, false, &r);
        if (c) {
                r = ctr_reopen_log(c, &error);
                r = r < 0 ? cri_finish_error(call, &error) : cri_reply(call, &resp.base);
                error_done(&error);
        }
        runtime__v1__reopen_container_log_request__free_unpacked(req, NULL);
        return r;
}

/* --- ContainerStatus / ListContainers ------------------------------------------------------------ */


/* The image reference status reports: the repo digest the image was pulled by, else its id. */
static const char *image_ref_of(Manager *m, const Container *c) {
        Image *img = image_store_find(m->images, c->image_id);
        return img && img->repo_digests && img->repo_digests[0] ? img->repo_digests[0] : c->image_id;
}

int cri_container_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ContainerStatusRequest *req = runtime__v1__container_status_request__unpack(NULL, len, msg);
        Runtime__V1__ContainerStatusResponse resp = RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INIT;
        Runtime__V1__ContainerStatus st = RUNTIME__V1__CONTAINER_STATUS__INIT;
        Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
        Runtime__V1__ImageSpec image = RUNTIME__V1__IMAGE_SPEC__INIT;
        Runtime__V1__ContainerResources resources = RUNTIME__V1__CONTAINER_RESOURCES__INIT;
        Runtime__V1__ContainerStatusResponse__InfoEntry info = RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INFO_ENTRY__INIT;
        Runtime__V1__ContainerStatusResponse__InfoEntry *infos[1] = { &info };
        Runtime__V1__ContainerConfig *config = NULL;
        char *info_json = NULL;
        Container *c;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ContainerStatusRequest does not decode");
        c = lookup(call, m, req->container_id, false, &r);
        if (!c)
                goto out;
        if (c->config_len)
                config = runtime__v1__container_config__unpack(NULL, c->config_len, (const uint8_t *) c->config);
        md.name = c->name;
        md.attempt = c->attempt;
        image.image = c->image_ref;
        st.id = c->id;
        st.metadata = &md;
        st.state = (Runtime__V1__ContainerState) ctr_reported_state(c);
        st.created_at = (int64_t) c->created_at_ns;
        st.started_at = (int64_t) c->started_at_ns;
        st.finished_at = (int64_t) c->finished_at_ns;
        st.exit_code = c->exit_code;
        st.image = &image;
        st.image_ref = (char *) image_ref_of(m, c);
        st.image_id = c->image_id;
        st.reason = c->reason ?: "";
        st.message = c->message ?: "";
        st.log_path = c->log_path;
        if (c->stop_signal > 0 && c->stop_signal < SIGRTMIN && sigabbrev_np(c->stop_signal)) {
                char name[32];
                const ProtobufCEnumValue *v;
                snprintf(name, sizeof name, "SIG%s", sigabbrev_np(c->stop_signal));
                v = protobuf_c_enum_descriptor_get_value_by_name(&runtime__v1__signal__descriptor, name);
                if (v)
                        st.stop_signal = (Runtime__V1__Signal) v->value;
        }
        st.labels = CRI_PAIRS_OUT(Runtime__V1__ContainerStatus__LabelsEntry, RUNTIME__V1__CONTAINER_STATUS__LABELS_ENTRY__INIT,
                              c->labels, c->n_labels);
        st.n_labels = st.labels ? c->n_labels : 0;
        st.annotations = CRI_PAIRS_OUT(Runtime__V1__ContainerStatus__AnnotationsEntry,
                                   RUNTIME__V1__CONTAINER_STATUS__ANNOTATIONS_ENTRY__INIT, c->annotations,
                                   c->n_annotations);
        st.n_annotations = st.annotations ? c->n_annotations : 0;
        if (config) {
                st.mounts = config->mounts;
                st.n_mounts = config->n_mounts;
                if (config->linux && config->linux->resources) {
                        resources.linux = config->linux->resources;
                        st.resources = &resources;
                }
        }
        resp.status = &st;
        if (req->verbose && (info_json = ctr_info_json(c))) {
                info.key = "info";
                info.value = info_json;
                resp.info = infos;
                resp.n_info = 1;
        }
        r = cri_reply(call, &resp.base);
        cri_pairs_out_free(st.labels);
        cri_pairs_out_free(st.annotations);
out:
        free(info_json);
        if (config)
                runtime__v1__container_config__free_unpacked(config, NULL);
        runtime__v1__container_status_request__free_unpacked(req, NULL);
        return r;
}

int cri_list_containers(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ListContainersRequest *req = runtime__v1__list_containers_request__unpack(NULL, len, msg);
        Runtime__V1__ListContainersResponse resp = RUNTIME__V1__LIST_CONTAINERS_RESPONSE__INIT;
        const Runtime__V1__ContainerFilter *f;
        Runtime__V1__Container *items = NULL, **ptrs = NULL;
        Runtime__V1__ContainerMetadata *mds = NULL;
        Runtime__V1__ImageSpec *images = NULL;
        size_t n = 0, cap;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ListContainersRequest does not decode");
        f = req->filter;
        cap = m->containers->n_containers + 1;
        items = calloc(cap, sizeof *items);
        ptrs = calloc(cap, sizeof *ptrs);
        mds = calloc(cap, sizeof *mds);
        images = calloc(cap, sizeof *images);
        if (!items || !ptrs || !mds || !images) {
                r = -ENOMEM;
                goto out;
        }
        for (Container *c = m->containers->containers; c; c = c->next) {
                Runtime__V1__ContainerState state = (Runtime__V1__ContainerState) ctr_reported_state(c);
                Runtime__V1__Container *it = &items[n];

                if (c->creating)
                        continue; /* not there yet for kubelet */
                if (f && f->id && f->id[0] && strncmp(c->id, f->id, strlen(f->id)) != 0)
                        continue;
                if (f && f->pod_sandbox_id && f->pod_sandbox_id[0] &&
                    strncmp(c->pod_id, f->pod_sandbox_id, strlen(f->pod_sandbox_id)) != 0)
                        continue;
                if (f && f->state && f->state->state != state)
                        continue;
                if (f && !CRI_LABELS_MATCH(c->labels, c->n_labels, f->label_selector, f->n_label_selector))
                        continue;
                *it = (Runtime__V1__Container) RUNTIME__V1__CONTAINER__INIT;
                mds[n] = (Runtime__V1__ContainerMetadata) RUNTIME__V1__CONTAINER_METADATA__INIT;
                mds[n].name = c->name;
                mds[n].attempt = c->attempt;
                images[n] = (Runtime__V1__ImageSpec) RUNTIME__V1__IMAGE_SPEC__INIT;
                images[n].image = c->image_ref;
                it->id = c->id;
                it->pod_sandbox_id = c->pod_id;
                it->metadata = &mds[n];
                it->image = &images[n];
                it->image_ref = (char *) image_ref_of(m, c);
                it->image_id = c->image_id;
                it->state = state;
                it->created_at = (int64_t) c->created_at_ns;
                it->labels = CRI_PAIRS_OUT(Runtime__V1__Container__LabelsEntry, RUNTIME__V1__CONTAINER__LABELS_ENTRY__INIT,
                                       c->labels, c->n_labels);
                it->n_labels = it->labels ? c->n_labels : 0;
                it->annotations = CRI_PAIRS_OUT(Runtime__V1__Container__AnnotationsEntry,
                                            RUNTIME__V1__CONTAINER__ANNOTATIONS_ENTRY__INIT, c->annotations,
                                            c->n_annotations);
                it->n_annotations = it->annotations ? c->n_annotations : 0;
                ptrs[n] = it;
                n++;
        }
        resp.containers = ptrs;
        resp.n_containers = n;
        r = cri_reply(call, &resp.base);
out:
        for (size_t i = 0; items && i < n; i++) {
                cri_pairs_out_free(items[i].labels);
                cri_pairs_out_free(items[i].annotations);
        }
        free(items);
        free(ptrs);
        free(mds);
        free(images);
        runtime__v1__list_containers_request__free_unpacked(req, NULL);
        return r;
}
