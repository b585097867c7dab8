/* Pod sandboxes: the model, the table, and the asynchronous run/stop/remove that make a pod a
 * systemd slice with namespaces pinned by bind mounts and a CNI network. */
#pragma once

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cni.h"
#include "error-chain.h"
#include "stats.h"
#include "strv.h"
#include "systemd-unit.h"


typedef enum PodNsMode { /* the CRI's NamespaceMode values */
        POD_NS_POD = 0,
        POD_NS_CONTAINER = 1,
        POD_NS_NODE = 2,
        POD_NS_TARGET = 3,
        _POD_NS_UNSET = -1, /* not given */
} PodNsMode;

/* One line of a user namespace's uid_map or gid_map. */
typedef struct PodIdMap {
        uint32_t container_id, host_id, length;
} PodIdMap;

typedef struct PodPort {
        char *protocol; /* "tcp", "udp", "sctp" */
        int container_port, host_port;
        char *host_ip;
} PodPort;

/* What RunPodSandbox asked for. */
typedef struct PodSpec {
        char *name, *uid, *namespace;
        uint32_t attempt;
        char *hostname, *log_directory, *runtime_handler, *cgroup_parent;
        char **dns_servers, **dns_searches, **dns_options; /* NULL-terminated */
        PodPort *ports;
        size_t n_ports;
        StrPair *labels, *annotations, *sysctls;
        size_t n_labels, n_annotations, n_sysctls;
        PodNsMode network, pid, ipc;
        /* POD: a user namespace of the pod's own, with these mappings (one each once validated),
         * which owns its network, UTS and IPC namespaces; NODE: the node's (no mappings). */
        PodNsMode userns;
        PodIdMap *uids, *gids;
        size_t n_uids, n_gids;
} PodSpec;

typedef enum PodState {
        POD_CREATING,
        POD_READY,
        POD_NOTREADY,
        _POD_STATE_MAX,
        _POD_STATE_INVALID = -EINVAL,
} PodState;

typedef struct Pod Pod;
typedef struct PodTable PodTable;

struct Pod {
        PodTable *table;
        Pod *prev, *next;
        char id[65];
        PodSpec spec;
        PodState state;
        uint64_t created_at_ns;
        char *hostname; /* the spec's, else the node's when the pod ran (as containerd): UTS, files */

        char *slice;      /* the pod's systemd slice */
        bool slice_owned; /* we created it, so we stop it */
        /* What exists and has to be undone: the truth for stop, remove and recovery. */
        bool slice_started, ns_created, cni_added, init_started;
        char *cni_network; /* the CNI configuration list ADD used (JSON) */
        char *cni_result;  /* the final ADD result (JSON) */
        char **ips;        /* from the CNI result, first is the pod's IP */
        size_t n_ips;

        bool busy; /* an operation runs */
        struct PodOp *op;

        StatsRate cpu_rate; /* the slice's CPU rate between stats samples */
};

/* What pods need from the daemon. */
typedef struct PodEnv {
        struct ev_loop *loop;
        const char *state_dir; /* /run/rktlet: namespaces and files, gone at reboot */
        const char *root_dir;  /* /var/lib/rktlet: persistent state */
        Cni *cni;
        const char *pod_init; /* rktlet-pod-init, for pods sharing a PID namespace */
        SystemdClient *(*systemd)(void *userdata); /* NULL when systemd is unreachable */
        void *userdata;
} PodEnv;

struct PodTable {
        PodEnv env;
        pid_t pid; /* the daemon's, for its children to die with it */
        Pod *pods;
        unsigned n_pods;
};

typedef struct PodOp PodOp;
/* error: NULL on success, else what failed, its message naming the pod and the step (valid during
 * the call only). */
typedef void (*PodDone)(Pod *pod, const Error *error, void *userdata);

int pod_table_new(const PodEnv *env, PodTable **ret);
PodTable *pod_table_free(PodTable *t);
/* Reads the persisted pods; pods caught half-made are cleaned up in the background. */
int pod_table_load(PodTable *t);

Pod *pod_find(PodTable *t, const char *id);
/* id or a unique prefix of one; -ENOENT, or -ENOTUNIQ when the prefix is ambiguous. */
int pod_find_prefix(PodTable *t, const char *prefix, Pod **ret);

/* Checks a spec: ERROR_INVALID_ARGUMENT naming the field for bad input. */
int pod_spec_validate(const PodSpec *spec, Error *error);
void pod_spec_done(PodSpec *spec);

/* The reported state: READY only while the pod's namespaces are there. */
PodState pod_state(const Pod *pod);
const char *pod_state_to_string(PodState s);
/* Paths of the pod's pinned namespaces, "net", "uts", "ipc", "pid" or "user" (NULL for namespaces
 * the pod does not have of its own). */
char *pod_ns_path(const Pod *pod, const char *ns);
/* The service running the pod's PID 1, for pods sharing a PID namespace. */
char *pod_init_unit(const Pod *pod);

/* UpdatePodSandboxResources (pod-resources.c): the slice's CPUWeight, CPUQuotaPerSecUSec and
 * CPUQuotaPeriodUSec, MemoryMax, AllowedCPUs and AllowedMemoryNodes set live (SetUnitProperties,
 * runtime) to resources + overhead (NULL: none); a value 0 leaves the slice's as it is.
 * ERROR_INVALID_ARGUMENT for negative values or bad cpusets, ERROR_WRONG_STATE when the pod is not
 * ready. done() gets the pod (NULL if it went meanwhile) and systemd's error. */
typedef struct PodResources {
        int64_t cpu_shares, cpu_quota, cpu_period, memory_limit;
        char *cpuset_cpus, *cpuset_mems;
} PodResources;
typedef struct PodUpdate PodUpdate;
int pod_update_resources(Pod *pod, const PodResources *resources, const PodResources *overhead, PodDone done,
                         void *userdata, Error *error, PodUpdate **ret);
/* The caller went away: the update completes without calling back. */
void pod_update_detach(PodUpdate *u);

/* Creates the pod from spec (taken over, also on failure). ERROR_EXISTS when a pod with the same
 * metadata exists. done() is called once the pod is ready, or was rolled back. */
int pod_run(PodTable *t, PodSpec *spec, PodDone done, void *userdata, Error *error, PodOp **ret_op);
/* The first step of StopPodSandbox and RemovePodSandbox, before the pod's containers are stopped or
 * removed: the pod is NOTREADY from now on, and every process still in it is SIGKILLed (its slice
 * when rktlet made it, else its init service), so that no stop that follows waits on one ignoring
 * SIGTERM. pod_stop() and pod_remove() do it again first. Idempotent. */
int pod_kill(Pod *pod, PodDone done, void *userdata, Error *error, PodOp **ret_op);
/* Idempotent: a stopped pod stops again at once. These three fail with ERROR_CONFLICT while the pod
 * is busy with another operation. */
int pod_stop(Pod *pod, PodDone done, void *userdata, Error *error, PodOp **ret_op);
/* Stops if needed, then deletes every trace; pod is freed before done() (which gets NULL). */
int pod_remove(Pod *pod, PodDone done, void *userdata, Error *error, PodOp **ret_op);
/* The caller is no longer interested (its call was cancelled); the operation still completes. */
void pod_op_detach(PodOp *op);

/* The pod's state as JSON for verbose status (unit, netns, CNI result). */
char *pod_info_json(const Pod *pod);

/* rktlet-pod-init next to our own binary (a build tree), else where meson installs it. */
char *pod_find_init_binary(void);
