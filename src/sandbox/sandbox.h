/* Sandboxes: a pod and its containers, above pod/ and ctr/. What concerns both: which containers a
 * pod takes and with which PID namespace, and stopping or removing a pod after its containers. */
#pragma once

#include <stdbool.h>

#include "ctr.h"
#include "pod.h"

/* Where a sandbox operation failed: the pod's kill, one of its containers, the pod's own teardown. */
typedef enum SandboxStep {
        SANDBOX_STEP_KILL,
        SANDBOX_STEP_CONTAINERS,
        SANDBOX_STEP_POD,
        _SANDBOX_STEP_MAX,
        _SANDBOX_STEP_INVALID = -EINVAL,
} SandboxStep;

typedef struct SandboxOp SandboxOp;
/* error: NULL on success, else what failed (valid during the call only) and the step that failed. */
typedef void (*SandboxDone)(const Error *error, SandboxStep step, void *userdata);

/* A pod with a network of its own needs CNI to be ready; otherwise false, and *error
 * (ERROR_WRONG_STATE) says why not. */
bool sandbox_network_ready(PodTable *pods, const PodSpec *spec, Error *error);

/* Whether a pod takes new containers: only while it is READY. */
bool sandbox_takes_containers(const Pod *pod);
/* The PID namespace of a container of pod that asked for pid (_POD_NS_UNSET: no namespace options):
 * the pod's when unset, its own when the pod has no PID namespace to share. */
PodNsMode sandbox_container_pid(const Pod *pod, PodNsMode pid);
/* ctr_create() in pod, once the pod takes containers (ERROR_WRONG_STATE otherwise), with the spec's
 * PID namespace resolved against the pod's. */
int sandbox_create_container(CtrTable *t, Pod *pod, Image *image, CtrSpec *spec, const void *config,
                             size_t config_len, CtrDone done, void *userdata, Error *error, CtrOp **ret_op);

/* A container of pod that is busy with another operation, or NULL. */
Container *sandbox_busy_container(CtrTable *t, const Pod *pod);

/* StopPodSandbox and RemovePodSandbox, as the CRI has them (they forcibly terminate what runs in the
 * pod): pod_kill(), then the pod's containers stopped (those running, with no grace period) or
 * removed, then pod_stop() or pod_remove(). ERROR_CONFLICT when a container of the pod, or the pod,
 * is busy. A container that fails does not stop the others: the first failure is reported
 * (SANDBOX_STEP_CONTAINERS, as ERROR_INTERNAL) and the pod is left as it is. A pod removed
 * by someone else meanwhile is a success. done() may run before these return (then *ret_op is
 * NULL). */
int sandbox_stop(CtrTable *t, Pod *pod, SandboxDone done, void *userdata, Error *error, SandboxOp **ret_op);
int sandbox_remove(CtrTable *t, Pod *pod, SandboxDone done, void *userdata, Error *error, SandboxOp **ret_op);
/* The caller is gone. During the kill, the kill completes and nothing follows (the pod is NOTREADY:
 * kubelet stops it again); later, the containers' and the pod's teardown complete. done() is not
 * called. NULL is fine. */
void sandbox_op_detach(SandboxOp *op);


/* A pod's stats: its slice's cgroup (its containers and its init together) with the CPU rate since
 * the previous sample, and the counters of the interfaces of its network namespace (netlink in the
 * pinned namespace, no process). A pod on the host's network has no network stats (as containerd:
 * the host's interfaces are not the pod's). Only while the pod is READY. */
typedef struct SandboxPodStats {
        bool has_cgroup;
        StatsCgroup cgroup;
        bool has_nano_cores;
        uint64_t nano_cores;
        bool has_net;
        StatsNet net;
} SandboxPodStats;
/* what: besides what is always read (pids.current is, for the process count). */
void sandbox_pod_stats(CtrTable *t, Pod *pod, StatsRead what, SandboxPodStats *ret);
void sandbox_pod_stats_done(SandboxPodStats *s);
