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

/* A container is in its pod's user namespace: kubelet passes the pod's options again (or none). */
static int check_userns(const Runtime__V1__ContainerConfig *c, const Pod *pod, Error *error) {
        const Runtime__V1__LinuxContainerSecurityContext *sc = c->linux ? c->linux->security_context : NULL;
        const Runtime__V1__UserNamespace *u = sc && sc->namespace_options ? sc->namespace_options->userns_options : NULL;
        const PodSpec *p = &pod->spec;

        /* The node's PID namespace is not the pod's user namespace's: the runtime, in that one, would
         * leave the container in the node's (the pod's network and IPC namespaces are always
         * the container's, whatever it asks). */
        if (p->userns == POD_NS_POD && sc && sc->namespace_options &&
            sc->namespace_options->pid == RUNTIME__V1__NAMESPACE_MODE__NODE)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "linux.security_context.namespace_options.pid: pod sandbox %s has a user namespace "
                                 "of its own, its containers cannot have the node's PID namespace", pod->id);
        if (!u)
                return 0;
        if ((PodNsMode) u->mode != p->userns)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options.mode %d is not the one of pod sandbox %s (%d): a container is in its pod's "
                                 "user namespace", (int) u->mode, pod->id, (int) p->userns);
        if (u->n_uids == 0 && u->n_gids == 0)
                return 0;
        for (size_t k = 0; k < 2; k++) {
                Runtime__V1__IDMapping *const *m = k == 0 ? u->uids : u->gids;
                size_t n = k == 0 ? u->n_uids : u->n_gids, pn = k == 0 ? p->n_uids : p->n_gids;
                const PodIdMap *pm = k == 0 ? p->uids : p->gids;
                bool same = n == pn;
                for (size_t i = 0; same && i < n; i++)
                        same = m[i]->container_id == pm[i].container_id && m[i]->host_id == pm[i].host_id &&
                               m[i]->length == pm[i].length;
                if (!same)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "userns_options.%s are not the mappings of pod sandbox %s", k == 0 ? "uids" : "gids",
                                         pod->id);
        }
        return 0;
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
        r = cri_ctr_spec_from_config(req->config, &spec, &error);
        if (r < 0) {
                if (!error_is_set(&error) && r == -ENOMEM)
                        goto out;
                (void) error_set(&error, ERROR_INVALID_ARGUMENT, r, "invalid container config");
                r = cri_finish_error(call, &error);
                goto out;
        }
        /* The pod's handler, as configured now: gone or unusable since RunPodSandbox (a restart with
         * another configuration), the pod cannot have containers: FAILED_PRECONDITION. */
        const CtrHandler *handler = ctr_handler_find(m->containers, pod->spec.runtime_handler);
        if (!handler || handler->why) {
                r = grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION,
                                     "pod sandbox %s: its runtime_handler %s cannot run containers now: %s", pod->id,
                                     QUOTE(pod->spec.runtime_handler),
                                     handler ? handler->why : "it is no longer configured");
                goto out;
        }
        for (size_t i = 0; i < spec.n_mounts; i++)
                if (spec.mounts[i].recursive_readonly && !ctr_handler_recursive_read_only(m->containers, handler)) {
                        r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                                             "mounts: %s: recursive_read_only is not supported here (the kernel's "
                                             "mount_setattr or the pod's OCI runtime's \"rro\" is missing; Status says so)",
                                             QUOTE(spec.mounts[i].container_path));
                        goto out;
                }
        r = check_userns(req->config, pod, &error);
        if (r < 0) {
                r = cri_finish_error(call, &error);
                goto out;
        }
        /* A user namespace's container gets idmapped copies of its mounts: a copy does not receive
         * what propagates to the host's mount later, nor sends back what the container mounts. As it
         * is, the node's root's files would be nobody's in it: refused, as bidirectional cannot work. */
        for (size_t i = 0; pod->spec.userns == POD_NS_POD && i < spec.n_mounts; i++)
                if (spec.mounts[i].propagation != 0) {
                        r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                                             "mounts: %s: %s propagation is not supported in pod sandbox %s, which has "
                                             "a user namespace of its own (its mounts are idmapped copies)",
                                             QUOTE(spec.mounts[i].container_path),
                                             spec.mounts[i].propagation == 1 ? "HostToContainer" : "Bidirectional",
                                             pod->id);
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

static int run_op(GrpcCall *call, Manager *m, const char *id, CtrCallKind kind, int64_t timeout) {
        Error error = ERROR_INIT;
        CtrOp *op = NULL;
        CriCall *cc;
        Container *c;
        int r;

        c = cri_find_container(call, m->containers, id, kind != CTR_CALL_START, &r);
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
        c = cri_find_container(call, ((Manager *) userdata)->containers, req->container_id, false, &r);
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

void cri_ctr_status_fill(Manager *m, const Container *c, CriCtrStatus *s) {
        Runtime__V1__ContainerStatus *st = &s->st;

        *s = (CriCtrStatus) {
                .st = RUNTIME__V1__CONTAINER_STATUS__INIT,
                .md = RUNTIME__V1__CONTAINER_METADATA__INIT,
                .image = RUNTIME__V1__IMAGE_SPEC__INIT,
                .resources = RUNTIME__V1__CONTAINER_RESOURCES__INIT,
                .linux_res = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT,
                .user = RUNTIME__V1__CONTAINER_USER__INIT,
                .linux_user = RUNTIME__V1__LINUX_CONTAINER_USER__INIT,
        };
        if (c->config_len)
                s->config = runtime__v1__container_config__unpack(NULL, c->config_len, (const uint8_t *) c->config);
        s->md.name = c->name;
        s->md.attempt = c->attempt;
        s->image.image = c->image_ref;
        st->id = (char *) c->id;
        st->metadata = &s->md;
        st->state = (Runtime__V1__ContainerState) ctr_reported_state(c);
        st->created_at = (int64_t) c->created_at_ns;
        st->started_at = (int64_t) c->started_at_ns;
        st->finished_at = (int64_t) c->finished_at_ns;
        st->exit_code = c->exit_code;
        st->image = &s->image;
        st->image_ref = (char *) image_ref_of(m, c);
        st->image_id = c->image_id;
        st->reason = c->reason ?: "";
        st->message = c->message ?: "";
        st->log_path = c->log_path;
        if (c->stop_signal > 0 && c->stop_signal < SIGRTMIN && sigabbrev_np(c->stop_signal)) {
                char name[32];
                const ProtobufCEnumValue *v;
                snprintf(name, sizeof name, "SIG%s", sigabbrev_np(c->stop_signal));
                v = protobuf_c_enum_descriptor_get_value_by_name(&runtime__v1__signal__descriptor, name);
                if (v)
                        st->stop_signal = (Runtime__V1__Signal) v->value;
        }
        st->labels = CRI_PAIRS_OUT(Runtime__V1__ContainerStatus__LabelsEntry, RUNTIME__V1__CONTAINER_STATUS__LABELS_ENTRY__INIT,
                                   c->labels, c->n_labels);
        st->n_labels = st->labels ? c->n_labels : 0;
        st->annotations = CRI_PAIRS_OUT(Runtime__V1__ContainerStatus__AnnotationsEntry,
                                        RUNTIME__V1__CONTAINER_STATUS__ANNOTATIONS_ENTRY__INIT, c->annotations,
                                        c->n_annotations);
        st->n_annotations = st->annotations ? c->n_annotations : 0;
        if (s->config) {
                st->mounts = s->config->mounts;
                st->n_mounts = s->config->n_mounts;
                if (s->config->linux && s->config->linux->resources) {
                        s->linux_res = *s->config->linux->resources;
                        s->resources.linux = &s->linux_res;
                        st->resources = &s->resources;
                }
        }
        /* What the container has now: as created, or as UpdateContainerResources left it (-1, no
         * limit, is the CRI's 0). */
        if (c->cpu_shares || c->cpu_quota || c->cpu_period || c->memory_limit || c->memory_swap_limit ||
            c->cpuset_cpus || c->cpuset_mems) {
                s->linux_res.cpu_shares = MAX(c->cpu_shares, 0);
                s->linux_res.cpu_quota = MAX(c->cpu_quota, 0);
                s->linux_res.cpu_period = MAX(c->cpu_period, 0);
                s->linux_res.memory_limit_in_bytes = MAX(c->memory_limit, 0);
                s->linux_res.memory_swap_limit_in_bytes = MAX(c->memory_swap_limit, 0);
                s->linux_res.cpuset_cpus = c->cpuset_cpus ?: (char *) "";
                s->linux_res.cpuset_mems = c->cpuset_mems ?: (char *) "";
                s->resources.linux = &s->linux_res;
                st->resources = &s->resources;
        }
        if (c->has_user) {
                /* The identity the process got: SupplementalGroupsPolicy's answer to kubelet. */
                s->linux_user.uid = c->uid;
                s->linux_user.gid = c->gid;
                s->linux_user.supplemental_groups = c->gids;
                s->linux_user.n_supplemental_groups = c->n_gids;
                s->user.linux = &s->linux_user;
                st->user = &s->user;
        }
}

void cri_ctr_status_done(CriCtrStatus *s) {
        cri_pairs_out_free(s->st.labels);
        cri_pairs_out_free(s->st.annotations);
        if (s->config)
                runtime__v1__container_config__free_unpacked(s->config, NULL);
        *s = (CriCtrStatus) {};
}

int cri_container_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ContainerStatusRequest *req = runtime__v1__container_status_request__unpack(NULL, len, msg);
        Runtime__V1__ContainerStatusResponse resp = RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INIT;
        Runtime__V1__ContainerStatusResponse__InfoEntry info = RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INFO_ENTRY__INIT;
        Runtime__V1__ContainerStatusResponse__InfoEntry *infos[1] = { &info };
        CriCtrStatus status = {};
        char *info_json = NULL;
        Container *c;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ContainerStatusRequest does not decode");
        c = cri_find_container(call, m->containers, req->container_id, false, &r);
        if (!c)
                goto out;
        cri_ctr_status_fill(m, c, &status);
        resp.status = &status.st;
        if (req->verbose && (info_json = ctr_info_json(c))) {
                info.key = "info";
                info.value = info_json;
                resp.info = infos;
                resp.n_info = 1;
        }
        r = cri_reply(call, &resp.base);
        cri_ctr_status_done(&status);
out:
        free(info_json);
        runtime__v1__container_status_request__free_unpacked(req, NULL);
        return r;
}

bool cri_ctr_matches(const Container *c, const Runtime__V1__ContainerFilter *f) {
        if (c->creating)
                return false; /* not there yet for kubelet */
        if (!f)
                return true;
        if (f->id && f->id[0] && strncmp(c->id, f->id, strlen(f->id)) != 0)
                return false;
        if (f->pod_sandbox_id && f->pod_sandbox_id[0] && strncmp(c->pod_id, f->pod_sandbox_id, strlen(f->pod_sandbox_id)) != 0)
                return false;
        if (f->state && f->state->state != (Runtime__V1__ContainerState) ctr_reported_state(c))
                return false;
        return CRI_LABELS_MATCH(c->labels, c->n_labels, f->label_selector, f->n_label_selector);
}

void cri_ctr_item_fill(Manager *m, const Container *c, CriCtrItem *s) {
        Runtime__V1__Container *it = &s->it;

        *s = (CriCtrItem) {
                .it = RUNTIME__V1__CONTAINER__INIT,
                .md = RUNTIME__V1__CONTAINER_METADATA__INIT,
                .image = RUNTIME__V1__IMAGE_SPEC__INIT,
        };
        s->md.name = c->name;
        s->md.attempt = c->attempt;
        s->image.image = c->image_ref;
        it->id = (char *) c->id;
        it->pod_sandbox_id = (char *) c->pod_id;
        it->metadata = &s->md;
        it->image = &s->image;
        it->image_ref = (char *) image_ref_of(m, c);
        it->image_id = c->image_id;
        it->state = (Runtime__V1__ContainerState) ctr_reported_state(c);
        it->created_at = (int64_t) c->created_at_ns;
        it->labels = CRI_PAIRS_OUT(Runtime__V1__Container__LabelsEntry, RUNTIME__V1__CONTAINER__LABELS_ENTRY__INIT, c->labels,
                                   c->n_labels);
        it->n_labels = it->labels ? c->n_labels : 0;
        it->annotations = CRI_PAIRS_OUT(Runtime__V1__Container__AnnotationsEntry, RUNTIME__V1__CONTAINER__ANNOTATIONS_ENTRY__INIT,
                                        c->annotations, c->n_annotations);
        it->n_annotations = it->annotations ? c->n_annotations : 0;
}

void cri_ctr_item_done(CriCtrItem *s) {
        cri_pairs_out_free(s->it.labels);
        cri_pairs_out_free(s->it.annotations);
        *s = (CriCtrItem) {};
}

int cri_list_containers(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ListContainersRequest *req = runtime__v1__list_containers_request__unpack(NULL, len, msg);
        Runtime__V1__ListContainersResponse resp = RUNTIME__V1__LIST_CONTAINERS_RESPONSE__INIT;
        CriCtrItem *items = NULL;
        Runtime__V1__Container **ptrs = NULL;
        size_t n = 0, cap;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ListContainersRequest does not decode");
        cap = m->containers->n_containers + 1;
        items = calloc(cap, sizeof *items);
        ptrs = calloc(cap, sizeof *ptrs);
        if (!items || !ptrs) {
                r = -ENOMEM;
                goto out;
        }
        for (Container *c = m->containers->containers; c; c = c->next) {
                if (!cri_ctr_matches(c, req->filter))
                        continue;
                cri_ctr_item_fill(m, c, &items[n]);
                ptrs[n] = &items[n].it;
                n++;
        }
        resp.containers = ptrs;
        resp.n_containers = n;
        r = cri_reply(call, &resp.base);
out:
        for (size_t i = 0; items && i < n; i++)
                cri_ctr_item_done(&items[i]);
        free(items);
        free(ptrs);
        runtime__v1__list_containers_request__free_unpacked(req, NULL);
        return r;
}

/* --- StreamContainers ---------------------------------------------------------------------------- */

static bool ctr_item_fill(Manager *m, const char *id, void *item) {
        Container *c = ctr_find(m->containers, id);

        if (!c || c->creating)
                return false;
        cri_ctr_item_fill(m, c, item);
        return true;
}

static void ctr_item_done(void *item) {
        cri_ctr_item_done(item);
}

static const CriChunkType containers_chunk = {
        .response = &runtime__v1__stream_containers_response__descriptor,
        .field = "containers",
        .item_size = sizeof(CriCtrItem),
        .fill = ctr_item_fill,
        .done = ctr_item_done,
};

int cri_stream_containers(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__StreamContainersRequest *req = runtime__v1__stream_containers_request__unpack(NULL, len, msg);
        char **ids = NULL;
        size_t n = 0;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StreamContainersRequest does not decode");
        ids = calloc(m->containers->n_containers + 1, sizeof *ids);
        if (!ids) {
                r = -ENOMEM;
                goto out;
        }
        for (Container *c = m->containers->containers; c; c = c->next)
                if (cri_ctr_matches(c, req->filter) && !(ids[n++] = strdup(c->id))) {
                        r = -ENOMEM;
                        goto out;
                }
        r = cri_chunk_stream(call, m, TAKE_PTR(ids), n, &containers_chunk);
out:
        strv_free(ids);
        runtime__v1__stream_containers_request__free_unpacked(req, NULL);
        return r;
}

/* --- UpdateContainerResources -------------------------------------------------------------------- */

static void update_done(Container *c, const Error *error, void *userdata) {
        cri_call_done_empty(userdata, error);
}

static void detach_update(void *op) {
        ctr_update_detach(op);
}

/* The request's LinuxContainerResources as a CtrResources (strings borrowed). What no update can
 * change is refused, what it does not change is said in rktlet(8): oom_score_adj (set at create
 * only), hugepage limits of 0 (kubelet lists every page size), unified "memory.oom.group" (kubelet's
 * on cgroup v2, ignored at create too). Of the rest of the unified map, "pids.max". */
static int resources_from_request(const Runtime__V1__LinuxContainerResources *l, CtrResources *ret, Error *error) {
        CtrResources r = {
                .cpu_shares = l->cpu_shares,
                .cpu_quota = l->cpu_quota,
                .cpu_period = l->cpu_period,
                .memory_limit = l->memory_limit_in_bytes,
                .memory_swap_limit = l->memory_swap_limit_in_bytes,
                .cpuset_cpus = l->cpuset_cpus && l->cpuset_cpus[0] ? l->cpuset_cpus : NULL,
                .cpuset_mems = l->cpuset_mems && l->cpuset_mems[0] ? l->cpuset_mems : NULL,
        };

        for (size_t i = 0; i < l->n_hugepage_limits; i++)
                if (l->hugepage_limits[i]->limit != 0)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "linux.hugepage_limits: rktlet does not limit hugepages (%s)",
                                         QUOTE(l->hugepage_limits[i]->page_size ?: ""));
        for (size_t i = 0; i < l->n_unified; i++) {
                const char *k = l->unified[i]->key ?: "", *v = l->unified[i]->value ?: "";
                char *end;

                /* kubelet sends it on cgroup v2 (singleProcessOOMKill false); rktlet sets it at create
                 * neither: an update does not refuse what a create ignored. */
                if (strcmp(k, "memory.oom.group") == 0)
                        continue;
                if (strcmp(k, "pids.max") != 0)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "linux.unified: rktlet updates only \"pids.max\", not %s", QUOTE(k));
                if (strcmp(v, "max") == 0)
                        r.pids_limit = -1;
                else {
                        errno = 0;
                        r.pids_limit = strtoll(v, &end, 10);
                        if (errno || end == v || *end || r.pids_limit <= 0)
                                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                                 "linux.unified[\"pids.max\"] %s is neither \"max\" nor a positive number",
                                                 QUOTE(v));
                }
        }
        *ret = r;
        return 0;
}

int cri_update_container_resources(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__UpdateContainerResourcesRequest *req =
                runtime__v1__update_container_resources_request__unpack(NULL, len, msg);
        Error error = ERROR_INIT;
        CtrResources res = {};
        CtrUpdate *u = NULL;
        CriCall *cc = NULL;
        Container *c;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                                        "UpdateContainerResourcesRequest does not decode");
        c = cri_find_container(call, m->containers, req->container_id, false, &r);
        if (!c)
                goto out;
        if (!req->linux) {
                r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                                     "linux is missing: rktlet updates Linux containers' resources only");
                goto out;
        }
        if (resources_from_request(req->linux, &res, &error) < 0) {
                r = cri_finish_error(call, &error);
                goto out;
        }
        cc = cri_call_new(call, m, 0, detach_update);
        if (!cc) {
                r = -ENOMEM;
                goto out;
        }
        r = ctr_update_resources(c, &res, update_done, cc, &error, &u);
        if (r < 0) {
                cc = cri_call_free(cc);
                r = cri_finish_error(call, &error);
                goto out;
        }
        r = cri_call_wait(TAKE_PTR(cc), u);
out:
        cri_call_free(cc);
        error_done(&error);
        runtime__v1__update_container_resources_request__free_unpacked(req, NULL);
        return r;
}

/* --- CheckpointContainer ------------------------------------------------------------------------- */

static void checkpoint_done(const Error *error, void *userdata) {
        cri_call_done_empty(userdata, error);
}

static void detach_checkpoint(void *op) {
        ctr_checkpoint_detach(op);
}

int cri_checkpoint_container(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__CheckpointContainerRequest *req = runtime__v1__checkpoint_container_request__unpack(NULL, len, msg);
        Error error = ERROR_INIT;
        CtrCheckpoint *cp = NULL;
        CriCall *cc = NULL;
        uint64_t timeout_usec = 0;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "CheckpointContainerRequest does not decode");
        if (req->timeout > 0)
                timeout_usec = (uint64_t) MIN(req->timeout, (int64_t) 24 * 3600) * 1000000ULL;
        cc = cri_call_new(call, m, 0, detach_checkpoint);
        if (!cc) {
                r = -ENOMEM;
                goto out;
        }
        r = ctr_checkpoint(m->containers, req->container_id, req->location, timeout_usec, checkpoint_done, cc, &error,
                           &cp);
        if (r < 0) {
                cc = cri_call_free(cc);
                r = cri_finish_error(call, &error);
                goto out;
        }
        r = cri_call_wait(TAKE_PTR(cc), cp);
out:
        cri_call_free(cc);
        error_done(&error);
        runtime__v1__checkpoint_container_request__free_unpacked(req, NULL);
        return r;
}
