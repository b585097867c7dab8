/* A pod's persistent state: <root>/pods/<id>/state.json, written atomically, read back at start. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "pod-internal.h"
#include "record.h"

char *pod_root_dir(const Pod *pod) {
        char *p;
        return asprintf(&p, "%s/pods/%s", pod->table->env.root_dir, pod->id) < 0 ? NULL : p;
}

char *pod_run_dir(const Pod *pod) {
        char *p;
        return asprintf(&p, "%s/pods/%s", pod->table->env.state_dir, pod->id) < 0 ? NULL : p;
}

static void gen_raw(yajl_gen g, const char *key, const char *json) {
        yajl_val v = json ? json_parse(json, NULL, 0) : NULL;
        json_gen_str(g, key);
        json_gen_value(g, v);
        yajl_tree_free(v);
}


static char *records_dir(const PodTable *t) {
        char *p;
        return asprintf(&p, "%s/pods", t->env.root_dir) < 0 ? NULL : p;
}

int pod_save(const Pod *pod) {
        _cleanup_(yajl_gen_freep) yajl_gen g = NULL;
        _cleanup_free_ char *dir = NULL;
        const PodSpec *s;

        assert(pod && pod->table);
        s = &pod->spec;
        dir = records_dir(pod->table);
        g = yajl_gen_alloc(NULL);
        if (!dir || !g)
                return -ENOMEM;
        yajl_gen_config(g, yajl_gen_beautify, 1);
        yajl_gen_map_open(g);
        json_gen_key_str(g, "id", pod->id);
        json_gen_key_str(g, "state", pod_state_to_string(pod->state));
        json_gen_key_int(g, "createdAt", (long long) pod->created_at_ns);
        json_gen_key_str(g, "hostname", pod->hostname);
        json_gen_key_str(g, "slice", pod->slice);
        json_gen_key_bool(g, "sliceOwned", pod->slice_owned);
        json_gen_key_bool(g, "sliceStarted", pod->slice_started);
        json_gen_key_bool(g, "nsCreated", pod->ns_created);
        json_gen_key_bool(g, "cniAdded", pod->cni_added);
        json_gen_key_bool(g, "initStarted", pod->init_started);
        gen_raw(g, "cniNetwork", pod->cni_network);
        gen_raw(g, "cniResult", pod->cni_result);
        json_gen_key_strv(g, "ips", pod->ips);

        json_gen_str(g, "spec");
        yajl_gen_map_open(g);
        json_gen_key_str(g, "name", s->name);
        json_gen_key_str(g, "uid", s->uid);
        json_gen_key_str(g, "namespace", s->namespace);
        json_gen_key_int(g, "attempt", s->attempt);
        json_gen_key_str(g, "hostname", s->hostname);
        json_gen_key_str(g, "logDirectory", s->log_directory);
        json_gen_key_str(g, "runtimeHandler", s->runtime_handler);
        json_gen_key_str(g, "cgroupParent", s->cgroup_parent);
        json_gen_key_strv(g, "dnsServers", s->dns_servers);
        json_gen_key_strv(g, "dnsSearches", s->dns_searches);
        json_gen_key_strv(g, "dnsOptions", s->dns_options);
        json_gen_str(g, "ports");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < s->n_ports; i++) {
                yajl_gen_map_open(g);
                json_gen_key_str(g, "protocol", s->ports[i].protocol);
                json_gen_key_int(g, "containerPort", s->ports[i].container_port);
                json_gen_key_int(g, "hostPort", s->ports[i].host_port);
                json_gen_key_str(g, "hostIP", s->ports[i].host_ip);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        json_gen_key_pairs(g, "labels", s->labels, s->n_labels);
        json_gen_key_pairs(g, "annotations", s->annotations, s->n_annotations);
        json_gen_key_pairs(g, "sysctls", s->sysctls, s->n_sysctls);
        if (s->userns == POD_NS_POD && s->n_uids == 1 && s->n_gids == 1) { /* validated: one mapping each */
                json_gen_str(g, "userns");
                yajl_gen_map_open(g);
                json_gen_key_int(g, "uidHost", s->uids[0].host_id);
                json_gen_key_int(g, "gidHost", s->gids[0].host_id);
                json_gen_key_int(g, "uidLength", s->uids[0].length);
                json_gen_key_int(g, "gidLength", s->gids[0].length);
                yajl_gen_map_close(g);
        }
        json_gen_key_int(g, "network", s->network);
        json_gen_key_int(g, "pid", s->pid);
        json_gen_key_int(g, "ipc", s->ipc);
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);

        return record_write(dir, pod->id, g, true);
}

static char *dup_raw(yajl_val obj, const char *key) {
        yajl_val v = json_get(obj, key);
        yajl_gen g;
        char *s;

        if (!v || YAJL_IS_NULL(v))
                return NULL;
        g = yajl_gen_alloc(NULL);
        if (!g)
                return NULL;
        json_gen_value(g, v);
        s = json_gen_steal(g);
        yajl_gen_free(g);
        return s;
}

static Pod *pod_unlinked_free(Pod *pod) {
        if (pod)
                pod_free(pod);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Pod *, pod_unlinked_free);

int pod_load(PodTable *t, const char *id, Pod **ret) {
        _cleanup_(pod_unlinked_freep) Pod *pod = NULL;
        _cleanup_(yajl_tree_freep) yajl_val v = NULL;
        _cleanup_free_ char *dir = NULL;
        yajl_val spec, ports;
        long long created = 0;
        int r;

        assert(t && id && ret);
        dir = records_dir(t);
        if (!dir)
                return -ENOMEM;
        r = record_read(dir, id, &v);
        if (r < 0)
                return r;
        if (!json_get_str(v, "id") || strcmp(json_get_str(v, "id"), id) != 0 || !YAJL_IS_OBJECT(json_get(v, "spec")))
                return -EBADMSG;
        pod = calloc(1, sizeof *pod);
        if (!pod)
                return -ENOMEM;
        snprintf(pod->id, sizeof pod->id, "%s", id);
        pod->state = pod_state_from_string(json_get_str(v, "state"));
        if (pod->state < 0)
                pod->state = POD_NOTREADY;
        (void) json_get_int(v, "createdAt", &created);
        pod->created_at_ns = (uint64_t) created;
        pod->slice = json_dup_str(v, "slice");
        pod->slice_owned = json_get_true(v, "sliceOwned");
        pod->slice_started = json_get_true(v, "sliceStarted");
        pod->ns_created = json_get_true(v, "nsCreated");
        pod->cni_added = json_get_true(v, "cniAdded");
        pod->init_started = json_get_true(v, "initStarted");
        pod->cni_network = dup_raw(v, "cniNetwork");
        pod->cni_result = dup_raw(v, "cniResult");
        pod->ips = json_get_strv(v, "ips");
        pod->n_ips = strv_length(pod->ips);

        spec = json_get(v, "spec");
        PodSpec *s = &pod->spec;
        s->name = json_dup_str(spec, "name");
        s->uid = json_dup_str(spec, "uid");
        s->namespace = json_dup_str(spec, "namespace");
        s->attempt = (uint32_t) (int) json_get_int_or_zero(spec, "attempt");
        s->hostname = json_dup_str(spec, "hostname");
        s->log_directory = json_dup_str(spec, "logDirectory");
        s->runtime_handler = json_dup_str(spec, "runtimeHandler");
        s->cgroup_parent = json_dup_str(spec, "cgroupParent");
        s->dns_servers = json_get_strv(spec, "dnsServers");
        s->dns_searches = json_get_strv(spec, "dnsSearches");
        s->dns_options = json_get_strv(spec, "dnsOptions");
        ports = json_get(spec, "ports");
        if (YAJL_IS_ARRAY(ports)) {
                s->ports = calloc(ports->u.array.len + 1, sizeof *s->ports);
                for (size_t i = 0; s->ports && i < ports->u.array.len; i++) {
                        yajl_val p = ports->u.array.values[i];
                        s->ports[i] = (PodPort) {
                                .protocol = json_dup_str(p, "protocol"),
                                .container_port = (int) json_get_int_or_zero(p, "containerPort"),
                                .host_port = (int) json_get_int_or_zero(p, "hostPort"),
                                .host_ip = json_dup_str(p, "hostIP"),
                        };
                        s->n_ports++;
                }
        }
        s->labels = json_get_pairs(spec, "labels", &s->n_labels);
        s->annotations = json_get_pairs(spec, "annotations", &s->n_annotations);
        s->sysctls = json_get_pairs(spec, "sysctls", &s->n_sysctls);
        s->network = (PodNsMode) (int) json_get_int_or_zero(spec, "network");
        s->pid = (PodNsMode) (int) json_get_int_or_zero(spec, "pid");
        s->ipc = (PodNsMode) (int) json_get_int_or_zero(spec, "ipc");
        s->userns = POD_NS_NODE;
        yajl_val u = json_get(spec, "userns");
        if (YAJL_IS_OBJECT(u)) {
                s->userns = POD_NS_POD;
                s->uids = calloc(1, sizeof *s->uids);
                s->gids = calloc(1, sizeof *s->gids);
                if (!s->uids || !s->gids)
                        return -ENOMEM;
                s->n_uids = s->n_gids = 1;
                s->uids[0] = (PodIdMap) { .host_id = (uint32_t) json_get_int_or_zero(u, "uidHost"),
                                          .length = (uint32_t) json_get_int_or_zero(u, "uidLength") };
                s->gids[0] = (PodIdMap) { .host_id = (uint32_t) json_get_int_or_zero(u, "gidHost"),
                                          .length = (uint32_t) json_get_int_or_zero(u, "gidLength") };
        }
        pod->hostname = json_dup_str(v, "hostname");
        if (!pod->hostname && s->name)
                /* A record from before the host name was saved: what that daemon gave the pod. */
                pod->hostname = strdup(s->hostname && s->hostname[0] ? s->hostname : s->name);
        if (!s->name || !s->uid || !s->namespace || !pod->slice || !pod->hostname)
                return -EBADMSG;
        pod_link(t, pod);
        *ret = TAKE_PTR(pod);
        return 0;
}
