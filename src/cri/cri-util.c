/* What the CRI handlers share to translate between protobuf-c messages and the model. */
#include "cri-util.h"

#include <assert.h>

#include "grpc-status.h"

int cri_finish_error(GrpcCall *call, const Error *error) {
        assert(call);
        assert(error_is_set(error));
        return grpc_call_finish(call, grpc_status_from_error(error), "%s", error_text(error));
}

char **cri_strv_dup(char **l, size_t n) {
        char **out = calloc(n + 1, sizeof(char *));

        for (size_t i = 0; out && i < n; i++)
                if (!(out[i] = strdup(l[i] ?: ""))) {
                        strv_free(out);
                        return NULL;
                }
        return out;
}

void cri_pairs_out_free(void *pe) {
        if (pe)
                free(((void **) pe)[0]);
        free(pe);
}

bool cri_pairs_has(const StrPair *pairs, size_t n, const char *key, const char *value) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(pairs[i].key, key ?: "") == 0 && strcmp(pairs[i].value, value ?: "") == 0)
                        return true;
        return false;
}

/* --- RunPodSandbox's config ---------------------------------------------------------------------- */

/* "" for a value the schema does not have: pod_spec_validate() refuses it. */
static const char *protocol_name(Runtime__V1__Protocol p) {
        switch (p) {
        case RUNTIME__V1__PROTOCOL__TCP:
                return "tcp";
        case RUNTIME__V1__PROTOCOL__UDP:
                return "udp";
        case RUNTIME__V1__PROTOCOL__SCTP:
                return "sctp";
        default:
                return "";
        }
}

static PodIdMap *idmaps_dup(Runtime__V1__IDMapping *const *m, size_t n) {
        PodIdMap *r = calloc(n + 1, sizeof *r);

        for (size_t i = 0; r && i < n; i++)
                r[i] = (PodIdMap) { .container_id = m[i]->container_id, .host_id = m[i]->host_id, .length = m[i]->length };
        return r;
}

int cri_pod_spec_from_config(const Runtime__V1__PodSandboxConfig *c, const char *handler, PodSpec *s) {
        const Runtime__V1__DNSConfig *dns = c->dns_config;
        const Runtime__V1__LinuxPodSandboxConfig *lx = c->linux;
        const Runtime__V1__NamespaceOption *ns = lx && lx->security_context ? lx->security_context->namespace_options
                                                                             : NULL;

        *s = (PodSpec) {
                .name = strdup(c->metadata->name ?: ""),
                .uid = strdup(c->metadata->uid ?: ""),
                .namespace = strdup(c->metadata->namespace_ ?: ""),
                .attempt = c->metadata->attempt,
                .hostname = strdup(c->hostname ?: ""),
                .log_directory = strdup(c->log_directory ?: ""),
                .runtime_handler = strdup(handler ?: ""),
                .cgroup_parent = strdup(lx && lx->cgroup_parent ? lx->cgroup_parent : ""),
                .dns_servers = cri_strv_dup(dns ? dns->servers : NULL, dns ? dns->n_servers : 0),
                .dns_searches = cri_strv_dup(dns ? dns->searches : NULL, dns ? dns->n_searches : 0),
                .dns_options = cri_strv_dup(dns ? dns->options : NULL, dns ? dns->n_options : 0),
                .network = ns ? (PodNsMode) ns->network : POD_NS_POD,
                .pid = ns ? (PodNsMode) ns->pid : POD_NS_CONTAINER,
                .ipc = ns ? (PodNsMode) ns->ipc : POD_NS_POD,
                /* No userns_options: the node's, as before kubelet knew of them. */
                .userns = ns && ns->userns_options ? (PodNsMode) ns->userns_options->mode : POD_NS_NODE,
        };
        const Runtime__V1__UserNamespace *u = ns ? ns->userns_options : NULL;
        s->uids = idmaps_dup(u ? u->uids : NULL, u ? u->n_uids : 0);
        s->gids = idmaps_dup(u ? u->gids : NULL, u ? u->n_gids : 0);
        s->n_uids = s->uids && u ? u->n_uids : 0;
        s->n_gids = s->gids && u ? u->n_gids : 0;
        s->ports = calloc(c->n_port_mappings + 1, sizeof *s->ports);
        for (size_t i = 0; s->ports && i < c->n_port_mappings; i++) {
                const Runtime__V1__PortMapping *p = c->port_mappings[i];
                s->ports[i] = (PodPort) {
                        .protocol = strdup(protocol_name(p->protocol)),
                        .container_port = p->container_port,
                        .host_port = p->host_port,
                        .host_ip = strdup(p->host_ip ?: ""),
                };
                s->n_ports++;
        }
        if (!s->name || !s->uid || !s->namespace || !s->hostname || !s->log_directory || !s->runtime_handler ||
            !s->cgroup_parent || !s->uids || !s->gids || !s->dns_servers || !s->dns_searches || !s->dns_options || !s->ports ||
            !CRI_PAIRS_DUP(c->labels, c->n_labels, &s->labels, &s->n_labels) ||
            !CRI_PAIRS_DUP(c->annotations, c->n_annotations, &s->annotations, &s->n_annotations) ||
            !CRI_PAIRS_DUP(lx ? lx->sysctls : NULL, lx ? lx->n_sysctls : 0, &s->sysctls, &s->n_sysctls))
                return -ENOMEM;
        return 0;
}

/* --- RunPodSandbox ------------------------------------------------------------------------------- */
