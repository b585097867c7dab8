/* The stats messages of one container and of one pod, each filled on its own so that a list can be
 * sent whole (List*Stats) or in chunks (Stream*Stats). */
#pragma once

#include <stdbool.h>

#include "api.pb-c.h"
#include "ctr.h"
#include "pod.h"
#include "sandbox.h"

typedef struct Manager Manager;

typedef struct CriPsiMsg {
        Runtime__V1__PsiStats stats;
        Runtime__V1__PsiData some, full;
} CriPsiMsg;

/* CPU, memory, swap and io of one cgroup sample, and the values they point to. */
typedef struct CriUsageMsg {
        Runtime__V1__CpuUsage cpu;
        Runtime__V1__MemoryUsage memory;
        Runtime__V1__SwapUsage swap;
        Runtime__V1__IoUsage io;
        CriPsiMsg psi[3];
        Runtime__V1__UInt64Value values[12];
        size_t n_values;
        bool has_cpu, has_memory, has_swap, has_io;
} CriUsageMsg;

typedef struct CriCtrStatsMsg {
        Runtime__V1__ContainerStats stats;
        Runtime__V1__ContainerAttributes attributes;
        Runtime__V1__ContainerMetadata metadata;
        CriUsageMsg usage;
        Runtime__V1__FilesystemUsage layer;
        Runtime__V1__FilesystemIdentifier layer_fs;
        Runtime__V1__UInt64Value layer_values[2];
        char *layers_dir;
        CtrStats sample;
} CriCtrStatsMsg;

/* One ContainerStats for c (sampled now: its cgroup, its CPU rate, its writable layer's last usage)
 * in msg->stats, pointing into msg and c: c must outlive it. what: figures to read besides the
 * CRI's (0; the metrics want STATS_READ_PIDS | STATS_READ_IO). -ENOMEM; msg is then done already. */
int cri_ctr_stats_fill(Manager *m, Container *c, StatsRead what, CriCtrStatsMsg *msg);
void cri_ctr_stats_done(CriCtrStatsMsg *msg);
/* Whether ListContainerStats (and StreamContainerStats) with filter f reports c: running, and
 * matching the id and pod prefixes and the label selector. */
bool cri_ctr_stats_match(const Container *c, const Runtime__V1__ContainerStatsFilter *f);

typedef struct CriPodStatsMsg {
        Runtime__V1__PodSandboxStats stats;
        Runtime__V1__PodSandboxAttributes attributes;
        Runtime__V1__PodSandboxMetadata metadata;
        Runtime__V1__LinuxPodSandboxStats linux;
        CriUsageMsg usage;
        Runtime__V1__ProcessUsage process;
        Runtime__V1__UInt64Value process_count;
        Runtime__V1__NetworkUsage network;
        Runtime__V1__NetworkInterfaceUsage *ifs, **ifps;
        Runtime__V1__UInt64Value *if_values;
        Runtime__V1__NetworkInterfaceUsage default_if;
        Runtime__V1__UInt64Value default_values[4];
        CriCtrStatsMsg *containers;
        Runtime__V1__ContainerStats **container_ptrs;
        size_t n_containers;
        SandboxPodStats sample;
} CriPodStatsMsg;

/* One PodSandboxStats for pod: its slice, its network (none on the host's), its running containers. */
int cri_pod_stats_fill(Manager *m, Pod *pod, StatsRead what, CriPodStatsMsg *msg);
void cri_pod_stats_done(CriPodStatsMsg *msg);
bool cri_pod_stats_match(const Pod *pod, const Runtime__V1__PodSandboxStatsFilter *f);
