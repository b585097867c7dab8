/* CRI stats methods: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats,
 * ListMetricDescriptors and ListPodSandboxMetrics, translated from ctr/'s and sandbox/'s samples. */
#include "cri-stats.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cri-call.h"
#include "cri-service.h"
#include "cri-util.h"
#include "macro.h"
#include "manager.h"
#include "quote.h"
#include "strv.h"

/* --- one cgroup sample -------------------------------------------------------------------------- */

static Runtime__V1__UInt64Value *value(CriUsageMsg *u, uint64_t v) {
        assert(u->n_values < ELEMENTSOF(u->values));
        Runtime__V1__UInt64Value *p = &u->values[u->n_values++];
        *p = (Runtime__V1__UInt64Value) RUNTIME__V1__UINT64_VALUE__INIT;
        p->value = v;
        return p;
}

static Runtime__V1__PsiStats *psi(CriPsiMsg *m, const StatsPsi *p) {
        if (!p->has_some)
                return NULL;
        m->stats = (Runtime__V1__PsiStats) RUNTIME__V1__PSI_STATS__INIT;
        m->some = (Runtime__V1__PsiData) RUNTIME__V1__PSI_DATA__INIT;
        m->some.total = p->some.total;
        m->some.avg10 = p->some.avg10;
        m->some.avg60 = p->some.avg60;
        m->some.avg300 = p->some.avg300;
        m->stats.some = &m->some;
        if (p->has_full) {
                m->full = (Runtime__V1__PsiData) RUNTIME__V1__PSI_DATA__INIT;
                m->full.total = p->full.total;
                m->full.avg10 = p->full.avg10;
                m->full.avg60 = p->full.avg60;
                m->full.avg300 = p->full.avg300;
                m->stats.full = &m->full;
        }
        return &m->stats;
}

static void usage_fill(CriUsageMsg *u, const StatsCgroup *s, bool has_rate, uint64_t nano_cores) {
        uint64_t avail;

        *u = (CriUsageMsg) {
                .cpu = RUNTIME__V1__CPU_USAGE__INIT,
                .memory = RUNTIME__V1__MEMORY_USAGE__INIT,
                .swap = RUNTIME__V1__SWAP_USAGE__INIT,
                .io = RUNTIME__V1__IO_USAGE__INIT,
        };
        if (s->has_cpu) {
                u->has_cpu = true;
                u->cpu.timestamp = (int64_t) s->timestamp_ns;
                u->cpu.usage_core_nano_seconds = value(u, s->cpu_usage_ns);
                if (has_rate)
                        u->cpu.usage_nano_cores = value(u, nano_cores);
                u->cpu.psi = psi(&u->psi[0], &s->cpu_psi);
        }
        if (s->has_memory) {
                u->has_memory = true;
                u->memory.timestamp = (int64_t) s->timestamp_ns;
                u->memory.working_set_bytes = value(u, s->working_set);
                if (stats_memory_available(s, &avail))
                        u->memory.available_bytes = value(u, avail);
                u->memory.usage_bytes = value(u, s->memory_usage);
                u->memory.rss_bytes = value(u, s->rss);
                u->memory.page_faults = value(u, s->page_faults);
                u->memory.major_page_faults = value(u, s->major_page_faults);
                u->memory.psi = psi(&u->psi[1], &s->memory_psi);
        }
        if (s->has_swap) {
                u->has_swap = true;
                u->swap.timestamp = (int64_t) s->timestamp_ns;
                u->swap.swap_usage_bytes = value(u, s->swap_usage);
                if (s->has_swap_limit)
                        u->swap.swap_available_bytes =
                                value(u, s->swap_limit > s->swap_usage ? s->swap_limit - s->swap_usage : 0);
        }
        if (s->io_psi.has_some) {
                u->has_io = true;
                u->io.timestamp = (int64_t) s->timestamp_ns;
                u->io.psi = psi(&u->psi[2], &s->io_psi);
        }
}

/* --- one container ------------------------------------------------------------------------------ */

bool cri_ctr_stats_match(const Container *c, const Runtime__V1__ContainerStatsFilter *f) {
        if (c->creating || c->state != CTR_RUNNING)
                return false; /* as containerd: the containers with a task */
        if (!f)
                return true;
        if (f->id && f->id[0] && strncmp(c->id, f->id, strlen(f->id)) != 0)
                return false;
        if (f->pod_sandbox_id && f->pod_sandbox_id[0] && strncmp(c->pod_id, f->pod_sandbox_id, strlen(f->pod_sandbox_id)) != 0)
                return false;
        return CRI_LABELS_MATCH(c->labels, c->n_labels, f->label_selector, f->n_label_selector);
}

void cri_ctr_stats_done(CriCtrStatsMsg *msg) {
        cri_pairs_out_free(msg->attributes.labels);
        cri_pairs_out_free(msg->attributes.annotations);
        free(msg->layers_dir);
        *msg = (CriCtrStatsMsg) {};
}

int cri_ctr_stats_fill(Manager *m, Container *c, StatsRead what, CriCtrStatsMsg *msg) {
        CtrStats *s = &msg->sample;

        *msg = (CriCtrStatsMsg) {
                .stats = RUNTIME__V1__CONTAINER_STATS__INIT,
                .attributes = RUNTIME__V1__CONTAINER_ATTRIBUTES__INIT,
                .metadata = RUNTIME__V1__CONTAINER_METADATA__INIT,
        };
        ctr_stats(c, what, s);
        msg->metadata.name = c->name;
        msg->metadata.attempt = c->attempt;
        msg->attributes.id = c->id;
        msg->attributes.metadata = &msg->metadata;
        msg->attributes.labels = CRI_PAIRS_OUT(Runtime__V1__ContainerAttributes__LabelsEntry,
                                               RUNTIME__V1__CONTAINER_ATTRIBUTES__LABELS_ENTRY__INIT, c->labels, c->n_labels);
        msg->attributes.n_labels = msg->attributes.labels ? c->n_labels : 0;
        msg->attributes.annotations = CRI_PAIRS_OUT(Runtime__V1__ContainerAttributes__AnnotationsEntry,
                                                    RUNTIME__V1__CONTAINER_ATTRIBUTES__ANNOTATIONS_ENTRY__INIT,
                                                    c->annotations, c->n_annotations);
        msg->attributes.n_annotations = msg->attributes.annotations ? c->n_annotations : 0;
        msg->layers_dir = ctr_layers_dir(m->containers);
        if (!msg->attributes.labels || !msg->attributes.annotations || !msg->layers_dir) {
                cri_ctr_stats_done(msg);
                return -ENOMEM;
        }
        msg->stats.attributes = &msg->attributes;
        if (s->has_cgroup) {
                usage_fill(&msg->usage, &s->cgroup, s->has_nano_cores, s->nano_cores);
                msg->stats.cpu = msg->usage.has_cpu ? &msg->usage.cpu : NULL;
                msg->stats.memory = msg->usage.has_memory ? &msg->usage.memory : NULL;
                msg->stats.swap = msg->usage.has_swap ? &msg->usage.swap : NULL;
                msg->stats.io = msg->usage.has_io ? &msg->usage.io : NULL;
        }
        if (s->has_layer) {
                msg->layer = (Runtime__V1__FilesystemUsage) RUNTIME__V1__FILESYSTEM_USAGE__INIT;
                msg->layer_fs = (Runtime__V1__FilesystemIdentifier) RUNTIME__V1__FILESYSTEM_IDENTIFIER__INIT;
                msg->layer_fs.mountpoint = msg->layers_dir;
                msg->layer_values[0] = (Runtime__V1__UInt64Value) RUNTIME__V1__UINT64_VALUE__INIT;
                msg->layer_values[0].value = s->layer_bytes;
                msg->layer_values[1] = (Runtime__V1__UInt64Value) RUNTIME__V1__UINT64_VALUE__INIT;
                msg->layer_values[1].value = s->layer_inodes;
                msg->layer.timestamp = (int64_t) s->layer_at_ns;
                msg->layer.fs_id = &msg->layer_fs;
                msg->layer.used_bytes = &msg->layer_values[0];
                msg->layer.inodes_used = &msg->layer_values[1];
                msg->stats.writable_layer = &msg->layer;
        }
        return 0;
}

/* --- one pod ------------------------------------------------------------------------------------ */

bool cri_pod_stats_match(const Pod *pod, const Runtime__V1__PodSandboxStatsFilter *f) {
        if (pod_state(pod) != POD_READY)
                return false;
        if (!f)
                return true;
        if (f->id && f->id[0] && strncmp(pod->id, f->id, strlen(f->id)) != 0)
                return false;
        return CRI_LABELS_MATCH(pod->spec.labels, pod->spec.n_labels, f->label_selector, f->n_label_selector);
}

void cri_pod_stats_done(CriPodStatsMsg *msg) {
        for (size_t i = 0; i < msg->n_containers; i++)
                cri_ctr_stats_done(&msg->containers[i]);
        free(msg->containers);
        free(msg->container_ptrs);
        free(msg->ifs);
        free(msg->ifps);
        free(msg->if_values);
        cri_pairs_out_free(msg->attributes.labels);
        cri_pairs_out_free(msg->attributes.annotations);
        sandbox_pod_stats_done(&msg->sample);
        *msg = (CriPodStatsMsg) {};
}

static void interface_fill(Runtime__V1__NetworkInterfaceUsage *it, Runtime__V1__UInt64Value v[4], const StatsNetIf *n) {
        *it = (Runtime__V1__NetworkInterfaceUsage) RUNTIME__V1__NETWORK_INTERFACE_USAGE__INIT;
        for (size_t k = 0; k < 4; k++)
                v[k] = (Runtime__V1__UInt64Value) RUNTIME__V1__UINT64_VALUE__INIT;
        v[0].value = n->rx_bytes;
        v[1].value = n->rx_errors;
        v[2].value = n->tx_bytes;
        v[3].value = n->tx_errors;
        it->name = (char *) n->name;
        it->rx_bytes = &v[0];
        it->rx_errors = &v[1];
        it->tx_bytes = &v[2];
        it->tx_errors = &v[3];
}

int cri_pod_stats_fill(Manager *m, Pod *pod, StatsRead what, CriPodStatsMsg *msg) {
        SandboxPodStats *s = &msg->sample;
        size_t n = 0;
        int r;

        *msg = (CriPodStatsMsg) {
                .stats = RUNTIME__V1__POD_SANDBOX_STATS__INIT,
                .attributes = RUNTIME__V1__POD_SANDBOX_ATTRIBUTES__INIT,
                .metadata = RUNTIME__V1__POD_SANDBOX_METADATA__INIT,
                .linux = RUNTIME__V1__LINUX_POD_SANDBOX_STATS__INIT,
        };
        sandbox_pod_stats(m->containers, pod, what, s);
        msg->metadata.name = pod->spec.name;
        msg->metadata.uid = pod->spec.uid;
        msg->metadata.namespace_ = pod->spec.namespace;
        msg->metadata.attempt = pod->spec.attempt;
        msg->attributes.id = pod->id;
        msg->attributes.metadata = &msg->metadata;
        msg->attributes.labels = CRI_PAIRS_OUT(Runtime__V1__PodSandboxAttributes__LabelsEntry,
                                               RUNTIME__V1__POD_SANDBOX_ATTRIBUTES__LABELS_ENTRY__INIT, pod->spec.labels,
                                               pod->spec.n_labels);
        msg->attributes.n_labels = msg->attributes.labels ? pod->spec.n_labels : 0;
        msg->attributes.annotations = CRI_PAIRS_OUT(Runtime__V1__PodSandboxAttributes__AnnotationsEntry,
                                                    RUNTIME__V1__POD_SANDBOX_ATTRIBUTES__ANNOTATIONS_ENTRY__INIT,
                                                    pod->spec.annotations, pod->spec.n_annotations);
        msg->attributes.n_annotations = msg->attributes.annotations ? pod->spec.n_annotations : 0;
        if (!msg->attributes.labels || !msg->attributes.annotations)
                goto oom;
        msg->stats.attributes = &msg->attributes;
        msg->stats.linux = &msg->linux;

        if (s->has_cgroup) {
                usage_fill(&msg->usage, &s->cgroup, s->has_nano_cores, s->nano_cores);
                msg->linux.cpu = msg->usage.has_cpu ? &msg->usage.cpu : NULL;
                msg->linux.memory = msg->usage.has_memory ? &msg->usage.memory : NULL;
                msg->linux.io = msg->usage.has_io ? &msg->usage.io : NULL;
                if (s->cgroup.has_pids) {
                        msg->process = (Runtime__V1__ProcessUsage) RUNTIME__V1__PROCESS_USAGE__INIT;
                        msg->process_count = (Runtime__V1__UInt64Value) RUNTIME__V1__UINT64_VALUE__INIT;
                        msg->process_count.value = s->cgroup.pids;
                        msg->process.timestamp = (int64_t) s->cgroup.timestamp_ns;
                        msg->process.process_count = &msg->process_count;
                        msg->linux.process = &msg->process;
                }
        }
        if (s->has_net) {
                const StatsNetIf *def = stats_net_default(&s->net);
                msg->network = (Runtime__V1__NetworkUsage) RUNTIME__V1__NETWORK_USAGE__INIT;
                msg->network.timestamp = (int64_t) s->net.timestamp_ns;
                msg->ifs = calloc(s->net.n_ifs + 1, sizeof *msg->ifs);
                msg->ifps = calloc(s->net.n_ifs + 1, sizeof *msg->ifps);
                msg->if_values = calloc(4 * (s->net.n_ifs + 1), sizeof *msg->if_values);
                if (!msg->ifs || !msg->ifps || !msg->if_values)
                        goto oom;
                for (size_t i = 0; i < s->net.n_ifs; i++) {
                        interface_fill(&msg->ifs[i], &msg->if_values[4 * i], &s->net.ifs[i]);
                        msg->ifps[i] = &msg->ifs[i];
                }
                msg->network.interfaces = msg->ifps;
                msg->network.n_interfaces = s->net.n_ifs;
                if (def) {
                        interface_fill(&msg->default_if, msg->default_values, def);
                        msg->network.default_interface = &msg->default_if;
                }
                msg->linux.network = &msg->network;
        }

        for (Container *c = m->containers->containers; c; c = c->next)
                n += strcmp(c->pod_id, pod->id) == 0 && cri_ctr_stats_match(c, NULL);
        msg->containers = calloc(n + 1, sizeof *msg->containers);
        msg->container_ptrs = calloc(n + 1, sizeof *msg->container_ptrs);
        if (!msg->containers || !msg->container_ptrs)
                goto oom;
        for (Container *c = m->containers->containers; c && msg->n_containers < n; c = c->next) {
                if (strcmp(c->pod_id, pod->id) != 0 || !cri_ctr_stats_match(c, NULL))
                        continue;
                r = cri_ctr_stats_fill(m, c, what, &msg->containers[msg->n_containers]);
                if (r < 0)
                        goto oom;
                msg->container_ptrs[msg->n_containers] = &msg->containers[msg->n_containers].stats;
                msg->n_containers++;
        }
        msg->linux.containers = msg->container_ptrs;
        msg->linux.n_containers = msg->n_containers;
        return 0;
oom:
        cri_pod_stats_done(msg);
        return -ENOMEM;
}

/* --- ContainerStats / ListContainerStats -------------------------------------------------------- */

int cri_container_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ContainerStatsRequest *req = runtime__v1__container_stats_request__unpack(NULL, len, msg);
        Runtime__V1__ContainerStatsResponse resp = RUNTIME__V1__CONTAINER_STATS_RESPONSE__INIT;
        CriCtrStatsMsg item;
        Container *c;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ContainerStatsRequest does not decode");
        c = cri_find_container(call, m->containers, req->container_id, false, &r);
        if (c && c->creating) {
                r = grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "container_id %s does not exist", QUOTE(req->container_id));
                c = NULL;
        }
        if (c) {
                r = cri_ctr_stats_fill(m, c, 0, &item);
                if (r >= 0) {
                        resp.stats = &item.stats;
                        r = cri_reply(call, &resp.base);
                        cri_ctr_stats_done(&item);
                }
        }
        runtime__v1__container_stats_request__free_unpacked(req, NULL);
        return r;
}

int cri_list_container_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ListContainerStatsRequest *req = runtime__v1__list_container_stats_request__unpack(NULL, len, msg);
        Runtime__V1__ListContainerStatsResponse resp = RUNTIME__V1__LIST_CONTAINER_STATS_RESPONSE__INIT;
        CriCtrStatsMsg *items = NULL;
        Runtime__V1__ContainerStats **ptrs = NULL;
        size_t n = 0;
        int r = 0;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ListContainerStatsRequest does not decode");
        items = calloc(m->containers->n_containers + 1, sizeof *items);
        ptrs = calloc(m->containers->n_containers + 1, sizeof *ptrs);
        if (!items || !ptrs) {
                r = -ENOMEM;
                goto out;
        }
        for (Container *c = m->containers->containers; c && n < m->containers->n_containers; c = c->next) {
                if (!cri_ctr_stats_match(c, req->filter))
                        continue;
                r = cri_ctr_stats_fill(m, c, 0, &items[n]);
                if (r < 0)
                        goto out;
                ptrs[n] = &items[n].stats;
                n++;
        }
        resp.stats = ptrs;
        resp.n_stats = n;
        r = cri_reply(call, &resp.base);
out:
        for (size_t i = 0; i < n; i++)
                cri_ctr_stats_done(&items[i]);
        free(items);
        free(ptrs);
        runtime__v1__list_container_stats_request__free_unpacked(req, NULL);
        return r;
}

/* --- PodSandboxStats / ListPodSandboxStats ------------------------------------------------------ */

int cri_pod_sandbox_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__PodSandboxStatsRequest *req = runtime__v1__pod_sandbox_stats_request__unpack(NULL, len, msg);
        Runtime__V1__PodSandboxStatsResponse resp = RUNTIME__V1__POD_SANDBOX_STATS_RESPONSE__INIT;
        CriPodStatsMsg item;
        Pod *pod;
        int r;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "PodSandboxStatsRequest does not decode");
        pod = cri_find_pod(call, m->pods, req->pod_sandbox_id, false, &r);
        if (pod) {
                r = cri_pod_stats_fill(m, pod, 0, &item);
                if (r >= 0) {
                        resp.stats = &item.stats;
                        r = cri_reply(call, &resp.base);
                        cri_pod_stats_done(&item);
                }
        }
        runtime__v1__pod_sandbox_stats_request__free_unpacked(req, NULL);
        return r;
}

int cri_list_pod_sandbox_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ListPodSandboxStatsRequest *req = runtime__v1__list_pod_sandbox_stats_request__unpack(NULL, len, msg);
        Runtime__V1__ListPodSandboxStatsResponse resp = RUNTIME__V1__LIST_POD_SANDBOX_STATS_RESPONSE__INIT;
        CriPodStatsMsg *items = NULL;
        Runtime__V1__PodSandboxStats **ptrs = NULL;
        size_t n = 0;
        int r = 0;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ListPodSandboxStatsRequest does not decode");
        items = calloc(m->pods->n_pods + 1, sizeof *items);
        ptrs = calloc(m->pods->n_pods + 1, sizeof *ptrs);
        if (!items || !ptrs) {
                r = -ENOMEM;
                goto out;
        }
        for (Pod *pod = m->pods->pods; pod && n < m->pods->n_pods; pod = pod->next) {
                if (!cri_pod_stats_match(pod, req->filter))
                        continue;
                r = cri_pod_stats_fill(m, pod, 0, &items[n]);
                if (r < 0)
                        goto out;
                ptrs[n] = &items[n].stats;
                n++;
        }
        resp.stats = ptrs;
        resp.n_stats = n;
        r = cri_reply(call, &resp.base);
out:
        for (size_t i = 0; i < n; i++)
                cri_pod_stats_done(&items[i]);
        free(items);
        free(ptrs);
        runtime__v1__list_pod_sandbox_stats_request__free_unpacked(req, NULL);
        return r;
}

/* --- ListMetricDescriptors / ListPodSandboxMetrics ---------------------------------------------- */

/* cAdvisor's names, as kubelet reads them when the stats come from the CRI, and containerd's label
 * keys: a container's metrics carry its id and name; a pod's network metrics the pod's id and name
 * and the interface. */
typedef enum MetricId {
        M_CPU_USAGE,
        M_MEMORY_USAGE,
        M_MEMORY_WORKING_SET,
        M_MEMORY_RSS,
        M_MEMORY_SWAP,
        M_MEMORY_FAILURES,
        M_SPEC_MEMORY_LIMIT,
        M_PROCESSES,
        M_FS_USAGE,
        M_FS_INODES_USED,
        M_FS_READS_BYTES,
        M_FS_WRITES_BYTES,
        M_FS_READS,
        M_FS_WRITES,
        M_NET_RX_BYTES,
        M_NET_RX_PACKETS,
        M_NET_RX_DROPPED,
        M_NET_RX_ERRORS,
        M_NET_TX_BYTES,
        M_NET_TX_PACKETS,
        M_NET_TX_DROPPED,
        M_NET_TX_ERRORS,
        _M_MAX,
} MetricId;

typedef struct MetricDef {
        const char *name, *help;
        Runtime__V1__MetricType type;
        const char *labels[4];
} MetricDef;

#define COUNTER RUNTIME__V1__METRIC_TYPE__COUNTER
#define GAUGE RUNTIME__V1__METRIC_TYPE__GAUGE
static const MetricDef metric_defs[_M_MAX] = {
        [M_CPU_USAGE] = { "container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", COUNTER, { "id", "name" } },
        [M_MEMORY_USAGE] = { "container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", GAUGE, { "id", "name" } },
        [M_MEMORY_WORKING_SET] = { "container_memory_working_set_bytes", "Current working set in bytes.", GAUGE, { "id", "name" } },
        [M_MEMORY_RSS] = { "container_memory_rss", "Size of RSS in bytes.", GAUGE, { "id", "name" } },
        [M_MEMORY_SWAP] = { "container_memory_swap", "Container swap usage in bytes.", GAUGE, { "id", "name" } },
        [M_MEMORY_FAILURES] = { "container_memory_failures_total", "Cumulative count of memory allocation failures.", COUNTER, { "id", "name", "failure_type", "scope" } },
        [M_SPEC_MEMORY_LIMIT] = { "container_spec_memory_limit_bytes", "Memory limit for the container.", GAUGE, { "id", "name" } },
        [M_PROCESSES] = { "container_processes", "Number of processes running inside the container.", GAUGE, { "id", "name" } },
        [M_FS_USAGE] = { "container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", GAUGE, { "id", "name", "device" } },
        [M_FS_INODES_USED] = { "container_fs_inodes_used", "Number of inodes used by the container on this filesystem.", GAUGE, { "id", "name", "device" } },
        [M_FS_READS_BYTES] = { "container_fs_reads_bytes_total", "Cumulative count of bytes read", COUNTER, { "id", "name", "device" } },
        [M_FS_WRITES_BYTES] = { "container_fs_writes_bytes_total", "Cumulative count of bytes written", COUNTER, { "id", "name", "device" } },
        [M_FS_READS] = { "container_fs_reads_total", "Cumulative count of reads completed", COUNTER, { "id", "name", "device" } },
        [M_FS_WRITES] = { "container_fs_writes_total", "Cumulative count of writes completed", COUNTER, { "id", "name", "device" } },
        [M_NET_RX_BYTES] = { "container_network_receive_bytes_total", "Cumulative count of bytes received", COUNTER, { "id", "name", "interface" } },
        [M_NET_RX_PACKETS] = { "container_network_receive_packets_total", "Cumulative count of packets received", COUNTER, { "id", "name", "interface" } },
        [M_NET_RX_DROPPED] = { "container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", COUNTER, { "id", "name", "interface" } },
        [M_NET_RX_ERRORS] = { "container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", COUNTER, { "id", "name", "interface" } },
        [M_NET_TX_BYTES] = { "container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", COUNTER, { "id", "name", "interface" } },
        [M_NET_TX_PACKETS] = { "container_network_transmit_packets_total", "Cumulative count of packets transmitted", COUNTER, { "id", "name", "interface" } },
        [M_NET_TX_DROPPED] = { "container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", COUNTER, { "id", "name", "interface" } },
        [M_NET_TX_ERRORS] = { "container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", COUNTER, { "id", "name", "interface" } },
};

static size_t n_labels(const MetricDef *d) {
        size_t n = 0;
        while (n < ELEMENTSOF(d->labels) && d->labels[n])
                n++;
        return n;
}

int cri_list_metric_descriptors(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Runtime__V1__ListMetricDescriptorsResponse resp = RUNTIME__V1__LIST_METRIC_DESCRIPTORS_RESPONSE__INIT;
        Runtime__V1__MetricDescriptor descs[_M_MAX], *ptrs[_M_MAX];

        (void) msg;
        (void) len;
        (void) userdata;
        for (size_t i = 0; i < _M_MAX; i++) {
                descs[i] = (Runtime__V1__MetricDescriptor) RUNTIME__V1__METRIC_DESCRIPTOR__INIT;
                descs[i].name = (char *) metric_defs[i].name;
                descs[i].help = (char *) metric_defs[i].help;
                descs[i].label_keys = (char **) metric_defs[i].labels;
                descs[i].n_label_keys = n_labels(&metric_defs[i]);
                ptrs[i] = &descs[i];
        }
        resp.descriptors = ptrs;
        resp.n_descriptors = _M_MAX;
        return cri_reply(call, &resp.base);
}

/* One Metric with its value and label values (pointing into the model), freed with free(). */
typedef struct MetricMsg {
        Runtime__V1__Metric metric;
        Runtime__V1__UInt64Value value;
        char *labels[4];
} MetricMsg;

typedef struct MetricList {
        Runtime__V1__Metric **items;
        size_t n, cap;
        bool oom;
} MetricList;

static void metric_add(MetricList *l, MetricId id, int64_t ts, uint64_t v, ...) {
        const MetricDef *d = &metric_defs[id];
        size_t k = n_labels(d);
        MetricMsg *mm;
        va_list ap;

        if (l->oom)
                return;
        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 16;
                Runtime__V1__Metric **items = realloc(l->items, cap * sizeof *items);
                if (!items) {
                        l->oom = true;
                        return;
                }
                l->items = items;
                l->cap = cap;
        }
        mm = malloc(sizeof *mm);
        if (!mm) {
                l->oom = true;
                return;
        }
        *mm = (MetricMsg) { .metric = RUNTIME__V1__METRIC__INIT, .value = RUNTIME__V1__UINT64_VALUE__INIT };
        va_start(ap, v);
        for (size_t i = 0; i < k; i++)
                mm->labels[i] = va_arg(ap, char *);
        va_end(ap);
        mm->value.value = v;
        mm->metric.name = (char *) d->name;
        mm->metric.timestamp = ts;
        mm->metric.metric_type = d->type;
        mm->metric.label_values = mm->labels;
        mm->metric.n_label_values = k;
        mm->metric.value = &mm->value;
        l->items[l->n++] = &mm->metric;
}

static void metric_list_done(MetricList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i]); /* the Metric is a MetricMsg's first member */
        free(l->items);
        *l = (MetricList) {};
}

static void container_metrics(MetricList *l, const CriCtrStatsMsg *cs, Container *c) {
        const StatsCgroup *s = &cs->sample.cgroup;
        int64_t ts = (int64_t) s->timestamp_ns;

        if (cs->sample.has_cgroup && s->has_cpu)
                metric_add(l, M_CPU_USAGE, ts, s->cpu_usage_ns / 1000000000ULL, c->id, c->name);
        if (cs->sample.has_cgroup && s->has_memory) {
                metric_add(l, M_MEMORY_USAGE, ts, s->memory_usage, c->id, c->name);
                metric_add(l, M_MEMORY_WORKING_SET, ts, s->working_set, c->id, c->name);
                metric_add(l, M_MEMORY_RSS, ts, s->rss, c->id, c->name);
                metric_add(l, M_MEMORY_FAILURES, ts, s->page_faults, c->id, c->name, "pgfault", "container");
                metric_add(l, M_MEMORY_FAILURES, ts, s->major_page_faults, c->id, c->name, "pgmajfault", "container");
                if (s->has_memory_limit)
                        metric_add(l, M_SPEC_MEMORY_LIMIT, ts, s->memory_limit, c->id, c->name);
        }
        if (cs->sample.has_cgroup && s->has_swap)
                metric_add(l, M_MEMORY_SWAP, ts, s->swap_usage, c->id, c->name);
        if (cs->sample.has_cgroup && s->has_pids)
                metric_add(l, M_PROCESSES, ts, s->pids, c->id, c->name);
        if (cs->sample.has_cgroup && s->has_io) {
                /* device "": every block device together (io.stat or blkio, summed) */
                metric_add(l, M_FS_READS_BYTES, ts, s->io_read_bytes, c->id, c->name, "");
                metric_add(l, M_FS_WRITES_BYTES, ts, s->io_write_bytes, c->id, c->name, "");
                metric_add(l, M_FS_READS, ts, s->io_reads, c->id, c->name, "");
                metric_add(l, M_FS_WRITES, ts, s->io_writes, c->id, c->name, "");
        }
        if (cs->sample.has_layer) {
                metric_add(l, M_FS_USAGE, (int64_t) cs->sample.layer_at_ns, cs->sample.layer_bytes, c->id, c->name,
                           cs->layers_dir);
                metric_add(l, M_FS_INODES_USED, (int64_t) cs->sample.layer_at_ns, cs->sample.layer_inodes, c->id, c->name,
                           cs->layers_dir);
        }
}

static void pod_metrics(MetricList *l, const CriPodStatsMsg *ps, Pod *pod) {
        const StatsNet *n = &ps->sample.net;
        int64_t ts = (int64_t) n->timestamp_ns;

        if (!ps->sample.has_net)
                return;
        for (size_t i = 0; i < n->n_ifs; i++) {
                const StatsNetIf *it = &n->ifs[i];
                char *ifname = (char *) it->name;
                metric_add(l, M_NET_RX_BYTES, ts, it->rx_bytes, pod->id, pod->spec.name, ifname);
                metric_add(l, M_NET_RX_PACKETS, ts, it->rx_packets, pod->id, pod->spec.name, ifname);
                metric_add(l, M_NET_RX_DROPPED, ts, it->rx_dropped, pod->id, pod->spec.name, ifname);
                metric_add(l, M_NET_RX_ERRORS, ts, it->rx_errors, pod->id, pod->spec.name, ifname);
                metric_add(l, M_NET_TX_BYTES, ts, it->tx_bytes, pod->id, pod->spec.name, ifname);
                metric_add(l, M_NET_TX_PACKETS, ts, it->tx_packets, pod->id, pod->spec.name, ifname);
                metric_add(l, M_NET_TX_DROPPED, ts, it->tx_dropped, pod->id, pod->spec.name, ifname);
                metric_add(l, M_NET_TX_ERRORS, ts, it->tx_errors, pod->id, pod->spec.name, ifname);
        }
}

/* One pod's PodSandboxMetrics and what it points to. */
typedef struct PodMetricsMsg {
        Runtime__V1__PodSandboxMetrics pm;
        CriPodStatsMsg stats;
        MetricList pod;
        MetricList *ctrs;
        Runtime__V1__ContainerMetrics *cms, **cmps;
} PodMetricsMsg;

static void pod_metrics_done(PodMetricsMsg *p) {
        for (size_t i = 0; p->ctrs && i < p->stats.n_containers; i++)
                metric_list_done(&p->ctrs[i]);
        free(p->ctrs);
        free(p->cms);
        free(p->cmps);
        metric_list_done(&p->pod);
        cri_pod_stats_done(&p->stats);
}

static int pod_metrics_fill(Manager *m, Pod *pod, PodMetricsMsg *p) {
        size_t n;
        int r;

        *p = (PodMetricsMsg) { .pm = RUNTIME__V1__POD_SANDBOX_METRICS__INIT };
        r = cri_pod_stats_fill(m, pod, STATS_READ_PIDS | STATS_READ_IO, &p->stats);
        if (r < 0)
                return r;
        n = p->stats.n_containers;
        p->ctrs = calloc(n + 1, sizeof *p->ctrs);
        p->cms = calloc(n + 1, sizeof *p->cms);
        p->cmps = calloc(n + 1, sizeof *p->cmps);
        if (!p->ctrs || !p->cms || !p->cmps)
                goto oom;
        pod_metrics(&p->pod, &p->stats, pod);
        if (p->pod.oom)
                goto oom;
        for (size_t i = 0; i < n; i++) {
                Container *c = ctr_find(m->containers, p->stats.containers[i].attributes.id);
                if (c)
                        container_metrics(&p->ctrs[i], &p->stats.containers[i], c);
                if (p->ctrs[i].oom)
                        goto oom;
                p->cms[i] = (Runtime__V1__ContainerMetrics) RUNTIME__V1__CONTAINER_METRICS__INIT;
                p->cms[i].container_id = p->stats.containers[i].attributes.id;
                p->cms[i].metrics = p->ctrs[i].items;
                p->cms[i].n_metrics = p->ctrs[i].n;
                p->cmps[i] = &p->cms[i];
        }
        p->pm.pod_sandbox_id = pod->id;
        p->pm.metrics = p->pod.items;
        p->pm.n_metrics = p->pod.n;
        p->pm.container_metrics = p->cmps;
        p->pm.n_container_metrics = n;
        return 0;
oom:
        pod_metrics_done(p);
        return -ENOMEM;
}

int cri_list_pod_sandbox_metrics(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__ListPodSandboxMetricsResponse resp = RUNTIME__V1__LIST_POD_SANDBOX_METRICS_RESPONSE__INIT;
        PodMetricsMsg *items;
        Runtime__V1__PodSandboxMetrics **ptrs;
        size_t n = 0;
        int r = 0;

        (void) msg;
        (void) len;
        items = calloc(m->pods->n_pods + 1, sizeof *items);
        ptrs = calloc(m->pods->n_pods + 1, sizeof *ptrs);
        if (!items || !ptrs) {
                r = -ENOMEM;
                goto out;
        }
        for (Pod *pod = m->pods->pods; pod && n < m->pods->n_pods; pod = pod->next) {
                if (!cri_pod_stats_match(pod, NULL))
                        continue;
                r = pod_metrics_fill(m, pod, &items[n]);
                if (r < 0)
                        goto out;
                ptrs[n] = &items[n].pm;
                n++;
        }
        resp.pod_metrics = ptrs;
        resp.n_pod_metrics = n;
        r = cri_reply(call, &resp.base);
out:
        for (size_t i = 0; i < n; i++)
                pod_metrics_done(&items[i]);
        free(items);
        free(ptrs);
        return r;
}

/* --- StreamContainerStats, StreamPodSandboxStats, StreamPodSandboxMetrics ----------------------- */
/* Their List twins' items, in flow-controlled chunks (cri_chunk_stream()): the ids are taken when the
 * call comes, each object sampled when its chunk is made; one no longer running (or ready) then is
 * left out. */

static bool ctr_stats_item_fill(Manager *m, const char *id, void *item) {
        Container *c = ctr_find(m->containers, id);
        return c && cri_ctr_stats_match(c, NULL) && cri_ctr_stats_fill(m, c, 0, item) >= 0;
}

static void ctr_stats_item_done(void *item) {
        cri_ctr_stats_done(item);
}

static bool pod_stats_item_fill(Manager *m, const char *id, void *item) {
        Pod *pod = pod_find(m->pods, id);
        return pod && cri_pod_stats_match(pod, NULL) && cri_pod_stats_fill(m, pod, 0, item) >= 0;
}

static void pod_stats_item_done(void *item) {
        cri_pod_stats_done(item);
}

static bool pod_metrics_item_fill(Manager *m, const char *id, void *item) {
        Pod *pod = pod_find(m->pods, id);
        return pod && cri_pod_stats_match(pod, NULL) && pod_metrics_fill(m, pod, item) >= 0;
}

static void pod_metrics_item_done(void *item) {
        pod_metrics_done(item);
}

static const CriChunkType ctr_stats_chunk = {
        .response = &runtime__v1__stream_container_stats_response__descriptor,
        .field = "container_stats",
        .item_size = sizeof(CriCtrStatsMsg),
        .fill = ctr_stats_item_fill,
        .done = ctr_stats_item_done,
};

static const CriChunkType pod_stats_chunk = {
        .response = &runtime__v1__stream_pod_sandbox_stats_response__descriptor,
        .field = "pod_sandbox_stats",
        .item_size = sizeof(CriPodStatsMsg),
        .fill = pod_stats_item_fill,
        .done = pod_stats_item_done,
};

static const CriChunkType pod_metrics_chunk = {
        .response = &runtime__v1__stream_pod_sandbox_metrics_response__descriptor,
        .field = "pod_sandbox_metrics",
        .item_size = sizeof(PodMetricsMsg),
        .fill = pod_metrics_item_fill,
        .done = pod_metrics_item_done,
};

/* The ids of the pods that ListPodSandboxStats (filter f) or ListPodSandboxMetrics (NULL) reports. */
static char **pod_ids(Manager *m, const Runtime__V1__PodSandboxStatsFilter *f, size_t *ret_n) {
        char **ids = calloc(m->pods->n_pods + 1, sizeof *ids);
        size_t n = 0;

        if (!ids)
                return NULL;
        for (Pod *pod = m->pods->pods; pod && n < m->pods->n_pods; pod = pod->next)
                if (cri_pod_stats_match(pod, f) && !(ids[n++] = strdup(pod->id))) {
                        strv_free(ids);
                        return NULL;
                }
        *ret_n = n;
        return ids;
}

int cri_stream_container_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__StreamContainerStatsRequest *req =
                runtime__v1__stream_container_stats_request__unpack(NULL, len, msg);
        char **ids;
        size_t n = 0;
        int r = -ENOMEM;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StreamContainerStatsRequest does not decode");
        ids = calloc(m->containers->n_containers + 1, sizeof *ids);
        for (Container *c = ids ? m->containers->containers : NULL; c && n < m->containers->n_containers; c = c->next)
                if (cri_ctr_stats_match(c, req->filter) && !(ids[n++] = strdup(c->id)))
                        goto out;
        if (ids)
                r = cri_chunk_stream(call, m, TAKE_PTR(ids), n, &ctr_stats_chunk);
out:
        strv_free(ids);
        runtime__v1__stream_container_stats_request__free_unpacked(req, NULL);
        return r;
}

int cri_stream_pod_sandbox_stats(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        Runtime__V1__StreamPodSandboxStatsRequest *req =
                runtime__v1__stream_pod_sandbox_stats_request__unpack(NULL, len, msg);
        char **ids;
        size_t n = 0;
        int r = -ENOMEM;

        if (!req)
                return grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "StreamPodSandboxStatsRequest does not decode");
        ids = pod_ids(m, req->filter, &n);
        if (ids)
                r = cri_chunk_stream(call, m, ids, n, &pod_stats_chunk);
        runtime__v1__stream_pod_sandbox_stats_request__free_unpacked(req, NULL);
        return r;
}

int cri_stream_pod_sandbox_metrics(GrpcCall *call, const uint8_t *msg, size_t len, void *userdata) {
        Manager *m = userdata;
        char **ids;
        size_t n = 0;

        (void) msg;
        (void) len;
        ids = pod_ids(m, NULL, &n);
        return ids ? cri_chunk_stream(call, m, ids, n, &pod_metrics_chunk) : -ENOMEM;
}
