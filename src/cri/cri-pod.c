/* CRI pod sandbox methods: translation between runtime.v1 messages and the pod and sandbox modules. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.pb-c.h"
#include "cri-call.h"
#include "cri-service.h"
#include "cri-util.h"
#include "parse-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "quote.h"
#include "macro.h"
#include "manager.h"
#include "sandbox.h"

static void detach_pod_op(void *op) {
        pod_op_detach(op);
}

static void detach_sandbox_op(void *op) {
        sandbox_op_detach(op);
}

static void detach_cni_op(void *op) {
        cni_op_cancel(op);
}



static void run_done(Pod *pod, const Error *error, void *userdata) {
        CriCall *cc = userdata;
        Runtime__V1__RunPodSandboxResponse resp = RUNTIME__V1__RUN_POD_SANDBOX_RESPONSE__INIT;

        if (error_is_set(error))
                (void) cri_finish_error(cc->call, error);
        else {
                resp.pod_sandbox_id = pod->id;
                (void) cri_reply(cc->call, &resp.base);
        }
        cri_call_done(cc);
}

int cri_run_pod_sandbox(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__RunPodSandboxRequest *req = runtime__v1__run_pod_sandbox_request__unpack(NULL, len, msg);
        Error error = ERROR_INIT;
        const char *why = "the container table is missing";
        PodSpec spec;
        PodOp *op = NULL;
        CriCall *cc;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "RunPodSandboxRequest does not decode");
        if (!req->config || !req->config->metadata) {
                runtime__v1__run_pod_sandbox_request__free_unpacked(req, NULL);
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "config.metadata is missing");
        }
        r = cri_pod_spec_from_config(req->config, req->runtime_handler, &spec);
        runtime__v1__run_pod_sandbox_request__free_unpacked(req, NULL);
        if (r < 0) {
                pod_spec_done(&spec);
                return r;
        }
        r = pod_spec_validate(&spec, &error);
        if (r >= 0) {
                /* Its containers will run with this handler: unknown is INVALID_ARGUMENT, one that
                 * cannot run here FAILED_PRECONDITION, as containerd fails the sandbox. */
                const CtrHandler *h;
                r = m->containers ? ctr_handler_get(m->containers, spec.runtime_handler, &h, &error)
                                  : error_set(&error, ERROR_UNAVAILABLE, EAGAIN, "the containers are not loaded yet");
                /* While the probe runs the answer is not known yet: a retry will have it. */
                if (r >= 0 && spec.userns == POD_NS_POD && !ctr_handler_user_namespaces(m->containers, h, &why))
                        r = ctr_handler_probing(m->containers, h)
                                    ? error_set(&error, ERROR_UNAVAILABLE, EAGAIN,
                                                "userns_options: %s; retry", why)
                                    : error_set(&error, ERROR_WRONG_STATE, EOPNOTSUPP,
                                                "userns_options: pods cannot have user namespaces of their own here: %s",
                                                why);
        }
        if (r >= 0 && !sandbox_network_ready(m->pods, &spec, &error))
                r = -ENETDOWN;
        if (r < 0) {
                pod_spec_done(&spec);
                r = cri_finish_error(call, &error);
                error_done(&error);
                return r;
        }

        cc = cri_call_new(call, m, 0, detach_pod_op);
        if (!cc) {
                pod_spec_done(&spec);
                return -ENOMEM;
        }
        r = pod_run(m->pods, &spec, run_done, cc, &error, &op);
        if (r < 0) {
                cri_call_free(cc);
                r = cri_finish_error(call, &error);
                error_done(&error);
                return r;
        }
        return cri_call_wait(cc, op);
}

/* --- StopPodSandbox / RemovePodSandbox ----------------------------------------------------------- */

/* The pod's containers go first, then the pod: sandbox_stop() and sandbox_remove(). */

static void teardown_done(const Error *error, SandboxStep step, void *userdata) {
        CriCall *cc = userdata;

        if (error_is_set(error))
                (void) cri_finish_error(cc->call, error);
        else
                (void) cri_reply_empty(cc->call);
        cri_call_done(cc);
}

static int stop_or_remove(GrpcCall *call, Manager *m, const char *id, bool remove) {
        Error error = ERROR_INIT;
        SandboxOp *op = NULL;
        CriCall *cc;
        Pod *pod;
        int r;

        pod = cri_find_pod(call, m->pods, id, true, &r); /* nothing left to reclaim: the CRI asks for success */
        if (!pod)
                return r;
        cc = cri_call_new(call, m, 0, detach_sandbox_op);
        if (!cc)
                return -ENOMEM;
        r = remove ? sandbox_remove(m->containers, pod, teardown_done, cc, &error, &op)
                   : sandbox_stop(m->containers, pod, teardown_done, cc, &error, &op);
        if (r < 0) {
                cri_call_free(cc);
                if (r != -ENOMEM)
                        r = cri_finish_error(call, &error);
                error_done(&error);
                return r;
        }
        return cri_call_wait(cc, op);
}

int cri_stop_pod_sandbox(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__StopPodSandboxRequest *req = runtime__v1__stop_pod_sandbox_request__unpack(NULL, len, msg);
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StopPodSandboxRequest does not decode");
        r = stop_or_remove(call, userdata, req->pod_sandbox_id, false);
        runtime__v1__stop_pod_sandbox_request__free_unpacked(req, NULL);
        return r;
}

int cri_remove_pod_sandbox(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__RemovePodSandboxRequest *req = runtime__v1__remove_pod_sandbox_request__unpack(NULL, len, msg);
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "RemovePodSandboxRequest does not decode");
        r = stop_or_remove(call, userdata, req->pod_sandbox_id, true);
        runtime__v1__remove_pod_sandbox_request__free_unpacked(req, NULL);
        return r;
}

/* --- PodSandboxStatus / ListPodSandbox ----------------------------------------------------------- */

static Runtime__V1__PodSandboxState cri_state(const Pod *pod) {
        return pod_state(pod) == POD_READY ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
                                           : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
}


void cri_pod_status_fill(const Pod *pod, CriPodStatus *s) {
        Runtime__V1__PodSandboxStatus *st = &s->st;
        bool ready = pod_state(pod) == POD_READY;

        *s = (CriPodStatus) {
                .st = RUNTIME__V1__POD_SANDBOX_STATUS__INIT,
                .md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT,
                .net = RUNTIME__V1__POD_SANDBOX_NETWORK_STATUS__INIT,
                .lx = RUNTIME__V1__LINUX_POD_SANDBOX_STATUS__INIT,
                .ns = RUNTIME__V1__NAMESPACE__INIT,
                .nso = RUNTIME__V1__NAMESPACE_OPTION__INIT,
        };
        s->md.name = pod->spec.name;
        s->md.uid = pod->spec.uid;
        s->md.namespace_ = pod->spec.namespace;
        s->md.attempt = pod->spec.attempt;
        st->id = (char *) pod->id;
        st->metadata = &s->md;
        st->state = cri_state(pod);
        st->created_at = (int64_t) pod->created_at_ns;
        if (ready && pod->n_ips > 0) {
                s->net.ip = pod->ips[0];
                s->extra = calloc(pod->n_ips, sizeof *s->extra);
                s->extra_p = calloc(pod->n_ips, sizeof *s->extra_p);
                if (s->extra && s->extra_p) {
                        for (size_t i = 1; i < pod->n_ips; i++) {
                                s->extra[i - 1] = (Runtime__V1__PodIP) RUNTIME__V1__POD_IP__INIT;
                                s->extra[i - 1].ip = pod->ips[i];
                                s->extra_p[i - 1] = &s->extra[i - 1];
                        }
                        s->net.n_additional_ips = pod->n_ips - 1;
                        s->net.additional_ips = s->extra_p;
                }
        }
        st->network = &s->net;
        s->nso.network = (Runtime__V1__NamespaceMode) pod->spec.network;
        s->nso.pid = (Runtime__V1__NamespaceMode) pod->spec.pid;
        s->nso.ipc = (Runtime__V1__NamespaceMode) pod->spec.ipc;
        s->ns.options = &s->nso;
        s->lx.namespaces = &s->ns;
        st->linux = &s->lx;
        st->labels = CRI_PAIRS_OUT(Runtime__V1__PodSandboxStatus__LabelsEntry,
                                   RUNTIME__V1__POD_SANDBOX_STATUS__LABELS_ENTRY__INIT, pod->spec.labels, pod->spec.n_labels);
        st->n_labels = st->labels ? pod->spec.n_labels : 0;
        st->annotations = CRI_PAIRS_OUT(Runtime__V1__PodSandboxStatus__AnnotationsEntry,
                                        RUNTIME__V1__POD_SANDBOX_STATUS__ANNOTATIONS_ENTRY__INIT, pod->spec.annotations,
                                        pod->spec.n_annotations);
        st->n_annotations = st->annotations ? pod->spec.n_annotations : 0;
        st->runtime_handler = pod->spec.runtime_handler;
}

void cri_pod_status_done(CriPodStatus *s) {
        cri_pairs_out_free(s->st.labels);
        cri_pairs_out_free(s->st.annotations);
        free(s->extra);
        free(s->extra_p);
        *s = (CriPodStatus) {};
}

static int status_reply(GrpcCall *call, Manager *m, Pod *pod, bool verbose, const char *check) {
        Runtime__V1__PodSandboxStatusResponse resp = RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INIT;
        Runtime__V1__PodSandboxStatusResponse__InfoEntry info = RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INFO_ENTRY__INIT;
        Runtime__V1__PodSandboxStatusResponse__InfoEntry *infos[] = { &info };
        CriPodStatus status;
        struct timespec ts;
        char *info_json = NULL;
        int r;

        cri_pod_status_fill(pod, &status);
        resp.status = &status.st;
        clock_gettime(CLOCK_REALTIME, &ts);
        resp.timestamp = (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;

        if (verbose) {
                char *base = pod_info_json(pod);
                yajl_val v = base ? json_parse(base, NULL, 0) : NULL;
                yajl_gen g = yajl_gen_alloc(NULL);

                if (g && v) {
                        yajl_gen_map_open(g);
                        for (size_t i = 0; i < v->u.object.len; i++) {
                                json_gen_str(g, v->u.object.keys[i]);
                                json_gen_value(g, v->u.object.values[i]);
                        }
                        json_gen_key_str(g, "cniCheck", check);
                        yajl_gen_map_close(g);
                        info_json = json_gen_steal(g);
                }
                if (g)
                        yajl_gen_free(g);
                yajl_tree_free(v);
                free(base);
                info.key = (char *) "info";
                info.value = info_json ?: (char *) "{}";
                resp.info = infos;
                resp.n_info = 1;
        }
        r = cri_reply(call, &resp.base);
        cri_pod_status_done(&status);
        free(info_json);
        return r;
}

static void status_check_done(const Error *error, const char *result, const char *network, void *userdata) {
        CriCall *cc = userdata;
        Pod *pod = pod_find(cc->manager->pods, cc->id);

        if (!pod)
                (void) grpc_call_finish(cc->call, GRPC_STATUS_NOT_FOUND, "pod sandbox %s was removed meanwhile", cc->id);
        else
                (void) status_reply(cc->call, cc->manager, pod, true, error_is_set(error) ? error_text(error) : "ok");
        cri_call_done(cc);
}

int cri_pod_sandbox_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__PodSandboxStatusRequest *req = runtime__v1__pod_sandbox_status_request__unpack(NULL, len, msg);
        Pod *pod;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "PodSandboxStatusRequest does not decode");
        if (!req->pod_sandbox_id || !req->pod_sandbox_id[0]) {
                runtime__v1__pod_sandbox_status_request__free_unpacked(req, NULL);
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "pod_sandbox_id is empty");
        }
        r = pod_find_prefix(m->pods, req->pod_sandbox_id, &pod);
        if (r < 0) {
                r = grpc_call_finish(call, r == -ENOTUNIQ ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_NOT_FOUND,
                                     r == -ENOTUNIQ ? "pod_sandbox_id prefix %s is ambiguous"
                                                    : "pod_sandbox_id %s not found",
                                     QUOTE(req->pod_sandbox_id));
                runtime__v1__pod_sandbox_status_request__free_unpacked(req, NULL);
                return r;
        }
        bool verbose = req->verbose;
        runtime__v1__pod_sandbox_status_request__free_unpacked(req, NULL);

        if (!verbose || !pod->cni_added || pod_state(pod) != POD_READY || pod->busy)
                return status_reply(call, m, pod, verbose, NULL);

        /* verbose on a networked pod: CNI CHECK first, its outcome goes into the info. */
        _cleanup_free_ char *netns = pod_ns_path(pod, "net");
        CniPortMapping none[1];
        CniOp *op = NULL;
        CriCall *cc = cri_call_new(call, m, 0, detach_cni_op);
        if (!cc || !(cc->id = strdup(pod->id))) {
                cri_call_free(cc);
                return -ENOMEM;
        }
        CniPod cp = {
                .id = pod->id, .netns = netns, .name = pod->spec.name, .namespace = pod->spec.namespace,
                .uid = pod->spec.uid, .ports = none, .n_ports = 0,
        };
        r = cni_check(m->cni, &cp, pod->cni_network, pod->cni_result, status_check_done, cc, &op);
        if (r < 0) {
                cri_call_free(cc);
                return status_reply(call, m, pod, true, strerror(-r));
        }
        return cri_call_wait(cc, op);
}

bool cri_pod_matches(const Pod *p, const Runtime__V1__PodSandboxFilter *f) {
        if (!f)
                return true;
        if (f->id && f->id[0] && strncmp(p->id, f->id, strlen(f->id)) != 0)
                return false;
        if (f->state && f->state->state != cri_state(p))
                return false;
        return CRI_LABELS_MATCH(p->spec.labels, p->spec.n_labels, f->label_selector, f->n_label_selector);
}

void cri_pod_item_fill(const Pod *p, CriPodItem *s) {
        Runtime__V1__PodSandbox *it = &s->it;

        *s = (CriPodItem) {
                .it = RUNTIME__V1__POD_SANDBOX__INIT,
                .md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT,
        };
        s->md.name = p->spec.name;
        s->md.uid = p->spec.uid;
        s->md.namespace_ = p->spec.namespace;
        s->md.attempt = p->spec.attempt;
        it->id = (char *) p->id;
        it->metadata = &s->md;
        it->state = cri_state(p);
        it->created_at = (int64_t) p->created_at_ns;
        it->labels = CRI_PAIRS_OUT(Runtime__V1__PodSandbox__LabelsEntry, RUNTIME__V1__POD_SANDBOX__LABELS_ENTRY__INIT,
                                   p->spec.labels, p->spec.n_labels);
        it->n_labels = it->labels ? p->spec.n_labels : 0;
        it->annotations = CRI_PAIRS_OUT(Runtime__V1__PodSandbox__AnnotationsEntry, RUNTIME__V1__POD_SANDBOX__ANNOTATIONS_ENTRY__INIT,
                                        p->spec.annotations, p->spec.n_annotations);
        it->n_annotations = it->annotations ? p->spec.n_annotations : 0;
        it->runtime_handler = p->spec.runtime_handler;
}

void cri_pod_item_done(CriPodItem *s) {
        cri_pairs_out_free(s->it.labels);
        cri_pairs_out_free(s->it.annotations);
        *s = (CriPodItem) {};
}

int cri_list_pod_sandbox(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ListPodSandboxRequest *req = runtime__v1__list_pod_sandbox_request__unpack(NULL, len, msg);
        Runtime__V1__ListPodSandboxResponse resp = RUNTIME__V1__LIST_POD_SANDBOX_RESPONSE__INIT;
        size_t n = 0, cap = m->pods->n_pods + 1;
        Runtime__V1__PodSandbox **itemp;
        CriPodItem *items;
        int r = -ENOMEM;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ListPodSandboxRequest does not decode");
        items = calloc(cap, sizeof *items);
        itemp = calloc(cap, sizeof *itemp);
        if (!items || !itemp)
                goto out;
        for (Pod *p = m->pods->pods; p; p = p->next) {
                if (!cri_pod_matches(p, req->filter))
                        continue;
                cri_pod_item_fill(p, &items[n]);
                itemp[n] = &items[n].it;
                n++;
        }
        resp.items = itemp;
        resp.n_items = n;
        r = cri_reply(call, &resp.base);
        for (size_t i = 0; i < n; i++)
                cri_pod_item_done(&items[i]);
out:
        free(items);
        free(itemp);
        runtime__v1__list_pod_sandbox_request__free_unpacked(req, NULL);
        return r;
}

/* --- StreamPodSandboxes -------------------------------------------------------------------------- */

static bool pod_item_fill(Manager *m, const char *id, void *item) {
        Pod *p = pod_find(m->pods, id);

        if (!p)
                return false;
        cri_pod_item_fill(p, item);
        return true;
}

static void pod_item_done(void *item) {
        cri_pod_item_done(item);
}

static const CriChunkType pods_chunk = {
        .response = &runtime__v1__stream_pod_sandboxes_response__descriptor,
        .field = "pod_sandboxes",
        .item_size = sizeof(CriPodItem),
        .fill = pod_item_fill,
        .done = pod_item_done,
};

int cri_stream_pod_sandboxes(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__StreamPodSandboxesRequest *req = runtime__v1__stream_pod_sandboxes_request__unpack(NULL, len, msg);
        char **ids = NULL;
        size_t n = 0;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StreamPodSandboxesRequest does not decode");
        ids = calloc(m->pods->n_pods + 1, sizeof *ids);
        if (!ids) {
                r = -ENOMEM;
                goto out;
        }
        for (Pod *p = m->pods->pods; p; p = p->next)
                if (cri_pod_matches(p, req->filter) && !(ids[n++] = strdup(p->id))) {
                        r = -ENOMEM;
                        goto out;
                }
        r = cri_chunk_stream(call, m, TAKE_PTR(ids), n, &pods_chunk);
out:
        strv_free(ids);
        runtime__v1__stream_pod_sandboxes_request__free_unpacked(req, NULL);
        return r;
}

/* --- UpdateRuntimeConfig ------------------------------------------------------------------------- */

int cri_update_runtime_config(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__UpdateRuntimeConfigRequest *req = runtime__v1__update_runtime_config_request__unpack(NULL, len, msg);
        Runtime__V1__UpdateRuntimeConfigResponse resp = RUNTIME__V1__UPDATE_RUNTIME_CONFIG_RESPONSE__INIT;
        const char *cidr;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "UpdateRuntimeConfigRequest does not decode");
        cidr = req->runtime_config && req->runtime_config->network_config
                       ? req->runtime_config->network_config->pod_cidr
                       : NULL;
        if (cidr && cidr[0]) {
                /* One CIDR, or an IPv4 and an IPv6 one (dual stack), comma-separated, nothing else. */
                char field[64];
                bool bad = false;
                for (const char *p = cidr, *comma; p && !bad; p = comma ? comma + 1 : NULL) {
                        comma = strchr(p, ',');
                        size_t n = comma ? (size_t) (comma - p) : strlen(p);
                        if (n == 0 || n >= sizeof field)
                                bad = true;
                        else {
                                memcpy(field, p, n);
                                field[n] = '\0';
                                bad = parse_cidr(field, NULL) < 0;
                        }
                }
                if (bad) {
                        int r = grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                                                 "runtime_config.network_config.pod_cidr: %s is not a CIDR, or two "
                                                 "comma-separated (an IPv4 or IPv6 address, '/', a prefix length within its size)",
                                                 QUOTE(cidr));
                        runtime__v1__update_runtime_config_request__free_unpacked(req, NULL);
                        return r;
                }
                if (!m->pod_cidr || strcmp(m->pod_cidr, cidr) != 0) {
                        Error error = ERROR_INIT;
                        log_info("Pod CIDR is now %s.", cidr);
                        free(m->pod_cidr);
                        m->pod_cidr = strdup(cidr);
                        manager_save_runtime_state(m);
                        if (cni_render_template(m->config.cni_conf_template, m->config.cni_conf_dir, m->pod_cidr,
                                                &error) < 0) {
                                /* The node's configuration, not the request, is what is wrong. */
                                int r = grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION, "%s", error_text(&error));
                                error_done(&error);
                                runtime__v1__update_runtime_config_request__free_unpacked(req, NULL);
                                return r;
                        }
                }
        }
        runtime__v1__update_runtime_config_request__free_unpacked(req, NULL);
        return cri_reply(call, &resp.base);
}

/* --- UpdatePodSandboxResources ------------------------------------------------------------------- */

static void pod_update_done(Pod *pod, const Error *error, void *userdata) {
        cri_call_done_empty(userdata, error);
}

static void detach_pod_update(void *op) {
        pod_update_detach(op);
}

static PodResources pod_resources_of(const Runtime__V1__LinuxContainerResources *l) {
        if (!l)
                return (PodResources) {};
        return (PodResources) {
                .cpu_shares = l->cpu_shares,
                .cpu_quota = l->cpu_quota,
                .cpu_period = l->cpu_period,
                .memory_limit = l->memory_limit_in_bytes,
                .cpuset_cpus = l->cpuset_cpus,
                .cpuset_mems = l->cpuset_mems,
        };
}

int cri_update_pod_sandbox_resources(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__UpdatePodSandboxResourcesRequest *req =
                runtime__v1__update_pod_sandbox_resources_request__unpack(NULL, len, msg);
        PodResources res, overhead;
        Error error = ERROR_INIT;
        PodUpdate *u = NULL;
        CriCall *cc = NULL;
        Pod *pod;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                                        "UpdatePodSandboxResourcesRequest does not decode");
        pod = cri_find_pod(call, m->pods, req->pod_sandbox_id, false, &r);
        if (!pod)
                goto out;
        res = pod_resources_of(req->resources);
        overhead = pod_resources_of(req->overhead);
        cc = cri_call_new(call, m, 0, detach_pod_update);
        if (!cc) {
                r = -ENOMEM;
                goto out;
        }
        r = pod_update_resources(pod, &res, &overhead, pod_update_done, cc, &error, &u);
        if (r < 0) {
                cc = cri_call_free(cc);
                r = cri_finish_error(call, &error);
                goto out;
        }
        r = cri_call_wait(TAKE_PTR(cc), u);
out:
        cri_call_free(cc);
        error_done(&error);
        runtime__v1__update_pod_sandbox_resources_request__free_unpacked(req, NULL);
        return r;
}
