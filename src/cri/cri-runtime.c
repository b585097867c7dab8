/* RuntimeService methods about the runtime itself: Version, Status, RuntimeConfig. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "build-config.h"
#include "api.pb-c.h"
#include "cri-service.h"
#include "json-util.h"
#include "log.h"
#include "manager.h"
#include "systemd-manager.h"
#include "time-util.h"

#define STATUS_SYSTEMD_TIMEOUT_USEC (10 * USEC_PER_SEC)
/* VersionResponse.version: "Version of the kubelet runtime API", which has been 0.1.0 since the CRI
 * began (containerd and CRI-O answer the same); the project's own version is runtime_version. */
#define KUBELET_RUNTIME_API_VERSION "0.1.0"

int cri_version(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__VersionRequest *req = runtime__v1__version_request__unpack(NULL, len, msg);
        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "VersionRequest does not decode");
        runtime__v1__version_request__free_unpacked(req, NULL);

        Runtime__V1__VersionResponse resp = RUNTIME__V1__VERSION_RESPONSE__INIT;
        resp.version = (char *) KUBELET_RUNTIME_API_VERSION;
        resp.runtime_name = (char *) PROJECT_NAME;
        resp.runtime_version = (char *) PROJECT_VERSION;
        resp.runtime_api_version = (char *) "v1";
        return cri_reply(call, &resp.base);
}

int cri_runtime_config(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__RuntimeConfigRequest *req = runtime__v1__runtime_config_request__unpack(NULL, len, msg);
        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "RuntimeConfigRequest does not decode");
        runtime__v1__runtime_config_request__free_unpacked(req, NULL);

        Runtime__V1__LinuxRuntimeConfiguration linux_config = RUNTIME__V1__LINUX_RUNTIME_CONFIGURATION__INIT;
        Runtime__V1__RuntimeConfigResponse resp = RUNTIME__V1__RUNTIME_CONFIG_RESPONSE__INIT;
        linux_config.cgroup_driver = RUNTIME__V1__CGROUP_DRIVER__SYSTEMD;
        resp.linux = &linux_config;
        return cri_reply(call, &resp.base);
}

/* A Status call in flight: it waits for systemd to answer. */
typedef struct StatusCall {
        GrpcCall *call;
        Manager *manager;
        sd_bus_slot *slot;
        bool verbose;
} StatusCall;

static void status_call_free(StatusCall *s) {
        sd_bus_slot_unref(s->slot);
        grpc_call_unref(s->call);
        free(s);
}

static void status_cancel(GrpcCall *call, void *userdata) {
        StatusCall *s = userdata;
        log_debug("Status: call ended before systemd answered; cancelling the D-Bus call.");
        status_call_free(s); /* unref'ing the slot cancels the pending D-Bus call */
}

static char *systemd_info_json(Manager *m) {
        char *s;
        yajl_gen g = yajl_gen_alloc(NULL);

        if (!g)
                return NULL;
        yajl_gen_map_open(g);
        json_gen_key_str(g, "version", m->systemd_version ?: "");
        json_gen_key_str(g, "bus", m->config.user_bus ? "user" : "system");
        yajl_gen_map_close(g);
        s = json_gen_steal(g);
        yajl_gen_free(g);
        return s;
}

/* The default handler's OCI runtime: the path rktlet runs it by, that path with symlinks resolved,
 * its name, and what [Containers] Runtime= asked for ("" to detect); then every handler. No
 * version: learning it means running the binary, and nothing here waits on a child. */
static void gen_handler(yajl_gen g, const CtrTable *t, const CtrHandler *h) {
        yajl_gen_map_open(g);
        json_gen_key_str(g, "name", h->name);
        json_gen_key_str(g, "configured", h->configured);
        json_gen_key_str(g, "path", h->path ?: "");
        json_gen_key_str(g, "root", h->root);
        json_gen_key_strv(g, "options", h->options);
        json_gen_key_bool(g, "builtin", h->builtin);
        json_gen_key_bool(g, "usable", !h->why);
        if (h->why)
                json_gen_key_str(g, "error", h->why);
        json_gen_key_bool(g, "recursiveReadOnlyMounts", ctr_handler_recursive_read_only(t, h));
        yajl_gen_map_close(g);
}

static char *oci_runtime_info_json(Manager *m) {
        const CtrTable *t = m->containers;
        const CtrHandler *d = t ? t->default_handler : NULL;
        const char *path = d && !d->why ? d->path : "", *name = strrchr(path, '/');
        char resolved[PATH_MAX];
        char *s;
        yajl_gen g = yajl_gen_alloc(NULL);

        if (!g)
                return NULL;
        name = name ? name + 1 : path;
        if (!path[0] || !realpath(path, resolved))
                snprintf(resolved, sizeof resolved, "%s", path);
        yajl_gen_map_open(g);
        json_gen_key_str(g, "name", name);
        json_gen_key_str(g, "path", path);
        json_gen_key_str(g, "resolvedPath", resolved);
        json_gen_key_str(g, "configured", m->config.oci_runtime);
        if (!path[0])
                /* Containers cannot start: say why, as the start-up warning did. */
                json_gen_key_str(g, "error", d ? d->why : "neither runc nor crun is in $PATH");
        json_gen_key_str(g, "defaultHandler", d ? d->name : "");
        json_gen_str(g, "handlers");
        yajl_gen_array_open(g);
        for (size_t i = 0; t && i < t->n_handlers; i++)
                gen_handler(g, t, &t->handlers[i]);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
        s = json_gen_steal(g);
        yajl_gen_free(g);
        return s;
}

static int status_reply(GrpcCall *call, Manager *m, bool verbose, bool runtime_ready, const char *runtime_message) {
        Runtime__V1__RuntimeCondition runtime = RUNTIME__V1__RUNTIME_CONDITION__INIT;
        Runtime__V1__RuntimeCondition network = RUNTIME__V1__RUNTIME_CONDITION__INIT;
        Runtime__V1__RuntimeCondition *conditions[] = { &runtime, &network };
        Runtime__V1__RuntimeStatus status = RUNTIME__V1__RUNTIME_STATUS__INIT;
        _cleanup_free_ Runtime__V1__RuntimeHandlerFeatures *handler_features = NULL;
        _cleanup_free_ Runtime__V1__RuntimeHandler *handler = NULL;
        _cleanup_free_ Runtime__V1__RuntimeHandler **handlers = NULL;
        Runtime__V1__RuntimeFeatures features = RUNTIME__V1__RUNTIME_FEATURES__INIT;
        Runtime__V1__StatusResponse__InfoEntry info_config = RUNTIME__V1__STATUS_RESPONSE__INFO_ENTRY__INIT;
        Runtime__V1__StatusResponse__InfoEntry info_systemd = RUNTIME__V1__STATUS_RESPONSE__INFO_ENTRY__INIT;
        Runtime__V1__StatusResponse__InfoEntry info_oci = RUNTIME__V1__STATUS_RESPONSE__INFO_ENTRY__INIT;
        Runtime__V1__StatusResponse__InfoEntry *info[] = { &info_config, &info_systemd, &info_oci };
        Runtime__V1__StatusResponse resp = RUNTIME__V1__STATUS_RESPONSE__INIT;
        _cleanup_free_ char *systemd_json = NULL, *oci_json = NULL;

        runtime.type = (char *) "RuntimeReady";
        runtime.status = runtime_ready;
        if (!runtime_ready) {
                runtime.reason = (char *) "SystemdUnreachable";
                runtime.message = (char *) runtime_message;
        }
        const char *net_reason = "NetworkPluginNotReady", *net_message = "CNI is not set up";
        network.type = (char *) "NetworkReady";
        network.status = m->cni && cni_ready(m->cni, &net_reason, &net_message);
        if (!network.status) {
                network.reason = (char *) net_reason;
                network.message = (char *) net_message;
        }
        status.conditions = conditions;
        status.n_conditions = ELEMENTSOF(conditions);
        resp.status = &status;

        /* "" (the default) first, then every handler that can run, by name, each with what its
         * containers' mounts and users can have (rktlet(8), RUNTIME HANDLERS, USER NAMESPACES). */
        const CtrTable *t = m->containers;
        size_t n = 0, max = t ? t->n_handlers + 1 : 0;
        handler_features = calloc(max ?: 1, sizeof *handler_features);
        handler = calloc(max ?: 1, sizeof *handler);
        handlers = calloc(max ?: 1, sizeof *handlers);
        if (!handler_features || !handler || !handlers)
                return grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "Status: out of memory");
        for (size_t i = 0; i < max; i++) {
                const CtrHandler *h = i == 0 ? t->default_handler : &t->handlers[i - 1];
                if (!h || h->why)
                        continue;
                runtime__v1__runtime_handler_features__init(&handler_features[n]);
                runtime__v1__runtime_handler__init(&handler[n]);
                handler[n].name = i == 0 ? (char *) "" : h->name;
                handler_features[n].recursive_read_only_mounts = ctr_handler_recursive_read_only(t, h);
                handler_features[n].user_namespaces = ctr_handler_user_namespaces(t, h, NULL);
                handler[n].features = &handler_features[n];
                handlers[n] = &handler[n];
                n++;
        }
        features.supplemental_groups_policy = true;
        features.user_namespaces_host_network = false;
        resp.runtime_handlers = handlers;
        resp.n_runtime_handlers = n;
        resp.features = &features;

        if (verbose) {
                systemd_json = systemd_info_json(m);
                info_config.key = (char *) "config";
                info_config.value = m->config_json;
                info_systemd.key = (char *) "systemd";
                info_systemd.value = systemd_json ? systemd_json : (char *) "{}";
                oci_json = oci_runtime_info_json(m);
                info_oci.key = (char *) "ociRuntime";
                info_oci.value = oci_json ? oci_json : (char *) "{}";
                resp.info = info;
                resp.n_info = ELEMENTSOF(info);
        }
        return cri_reply(call, &resp.base);
}

static void status_systemd_done(const Error *error, const char *version, void *userdata) {
        StatusCall *s = userdata;
        Manager *m = s->manager;
        char buf[512];

        grpc_call_set_cancel(s->call, NULL, NULL);
        if (!error) {
                free(m->systemd_version);
                m->systemd_version = strdup(version);
                (void) status_reply(s->call, m, s->verbose, true, NULL);
        } else {
                snprintf(buf, sizeof buf, "systemd on the %s bus did not answer: %s",
                         m->config.user_bus ? "user" : "system", error_text(error));
                (void) status_reply(s->call, m, s->verbose, false, buf);
        }
        status_call_free(s);
}

int cri_status(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__StatusRequest *req = runtime__v1__status_request__unpack(NULL, len, msg);
        bool verbose;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StatusRequest does not decode");
        verbose = req->verbose;
        runtime__v1__status_request__free_unpacked(req, NULL);

        /* RuntimeReady is what systemd says now, not what it said at start-up. */
        sd_bus *bus = manager_get_bus(m);
        if (!bus)
                return status_reply(call, m, verbose, false, m->bus_error);

        StatusCall *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->manager = m;
        s->verbose = verbose;
        r = systemd_get_version(bus, STATUS_SYSTEMD_TIMEOUT_USEC, status_systemd_done, s, &s->slot);
        if (r < 0) {
                free(s);
                char buf[256];
                snprintf(buf, sizeof buf, "cannot call systemd: %s", strerror(-r));
                return status_reply(call, m, verbose, false, buf);
        }
        s->call = grpc_call_ref(call);
        grpc_call_set_cancel(call, status_cancel, s);
        return 0;
}
