/* Containers: the model, the table, and the asynchronous create/start/stop/remove that make a
 * container an overlayfs rootfs, an OCI bundle and a transient systemd service in its pod's slice
 * whose main process is the container itself. */
#pragma once

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "child.h"
#include "config.h"
#include "ctr-log.h"
#include "fs-sync.h"
#include "image-store.h"
#include "oci-spec.h"
#include "pod.h"
#include "stats.h"
#include "systemd-unit.h"

typedef enum CtrState { /* the CRI's ContainerState values */
        CTR_CREATED = 0,
        CTR_RUNNING = 1,
        CTR_EXITED = 2,
        CTR_UNKNOWN = 3,
        _CTR_STATE_MAX,
        _CTR_STATE_INVALID = -EINVAL,
} CtrState;

typedef struct CtrMount {
        char *container_path, *host_path;
        bool readonly;
        bool recursive_readonly; /* "rro": submounts read-only too (ctr_recursive_read_only()) */
        int propagation; /* the CRI's: 0 private, 1 rslave (host to container), 2 rshared */
} CtrMount;

typedef struct CtrDevice {
        char *container_path, *host_path, *permissions;
} CtrDevice;

/* What CreateContainer asked for, resolved against nothing yet. */
typedef struct CtrSpec {
        char *name;
        uint32_t attempt;
        char *image_ref; /* as asked */
        char **command, **args;
        char *working_dir;
        StrPair *envs;
        size_t n_envs;
        CtrMount *mounts;
        size_t n_mounts;
        CtrDevice *devices;
        size_t n_devices;
        StrPair *labels, *annotations;
        size_t n_labels, n_annotations;
        char *log_path; /* relative to the pod's log directory */
        bool stdin_, stdin_once, tty;
        int stop_signal; /* 0: the image's */

        /* security */
        bool privileged, readonly_rootfs, no_new_privs;
        bool has_run_as_user, has_run_as_group;
        int64_t run_as_user, run_as_group;
        char *run_as_username;
        int64_t *supplemental_groups;
        size_t n_supplemental_groups;
        bool supplemental_groups_strict; /* SupplementalGroupsPolicy Strict: no groups from the image */
        char **cap_add, **cap_drop;
        OciSeccomp seccomp;
        char *seccomp_profile; /* Localhost: the file */
        char *apparmor_profile;  /* "" none */
        char **masked_paths, **readonly_paths; /* NULL: the defaults */
        bool has_masked_paths, has_readonly_paths;
        PodNsMode pid; /* CONTAINER, POD, NODE, TARGET */
        char *pid_target;

        /* resources (0: unset) */
        int64_t cpu_period, cpu_quota, cpu_shares, memory_limit, memory_swap_limit;
        int64_t oom_score_adj;
        char *cpuset_cpus, *cpuset_mems;
} CtrSpec;

typedef struct CtrTable CtrTable;
typedef struct CtrOp CtrOp;
typedef struct CtrIo CtrIo;
typedef struct CtrUpdate CtrUpdate;
typedef struct CtrCriu CtrCriu;
typedef struct CtrCheckpoint CtrCheckpoint;

/* A live update of a running container's resources (UpdateContainerResources): 0 (NULL or "")
 * leaves a value as it is; -1 lifts a limit (cpu_quota, memory_limit, memory_swap_limit,
 * pids_limit). */
typedef struct CtrResources {
        int64_t cpu_shares, cpu_quota, cpu_period;
        int64_t memory_limit, memory_swap_limit; /* swap: memory + swap, as cgroup v1's memsw */
        int64_t pids_limit;
        char *cpuset_cpus, *cpuset_mems;
} CtrResources;

typedef struct Container {
        CtrTable *table;
        struct Container *prev, *next;
        char id[65];
        char pod_id[65];
        char *name;
        uint32_t attempt;
        char *image_ref, *image_id;
        StrPair *labels, *annotations;
        size_t n_labels, n_annotations;
        char *log_path; /* absolute, "" none: log_dir + "/" + the request's log_path */
        char *log_dir;  /* the pod's log directory: the log is opened beneath it, through no symlink */
        char *config; /* the CRI's ContainerConfig as received, opaque here (for status) */
        size_t config_len;
        int stop_signal;
        bool tty, stdin_, stdin_once;
        int64_t cpu_shares, cpu_quota, cpu_period, memory_limit; /* unit properties, 0: unset */
        int64_t memory_swap_limit, pids_limit;                   /* 0: unset, -1: none */
        char *cpuset_cpus, *cpuset_mems;                         /* NULL: unset */
        CtrUpdate *update; /* an update of its resources under way (busy is set) */
        /* The identity its process runs with, as resolved at create (ContainerStatus.user). */
        bool has_user;
        int64_t uid, gid;
        int64_t *gids;
        size_t n_gids;

        CtrState state;
        bool creating; /* being made: recovery undoes it */
        bool removing; /* a removal began (saved before its first step): recovery finishes it */
        uint64_t created_at_ns, started_at_ns, finished_at_ns;
        int exit_code;
        char *reason, *message;
        uint32_t pid;
        char *memcg; /* the v1 memory cgroup (for OOM kills that systemd cannot see) */

        /* What exists and has to be undone. */
        bool rootfs_mounted, unit_started, runtime_created;
        /* The runtime handler it was made with, as it was then (a restart with another configuration
         * still runs and deletes it with these). */
        char *handler, *runtime, *runtime_root;
        char **runtime_options;

        SystemdWatch *watch;
        /* Read back at start as running (or starting), and systemd has not said yet what became of
         * it: reported CONTAINER_UNKNOWN until it does. */
        bool unconfirmed;
        CtrIo *io;
        bool busy;
        CtrOp *op;
        CtrOp *exit_waiter; /* a stop or remove waiting for the exit */

        /* Stats (ctr-stats.c): the CPU rate's last sample, and the writable layer's usage as the
         * last walk of upper/ found it (a child; layer_at_ns 0: none yet). */
        StatsRate cpu_rate;
        uint64_t layer_bytes, layer_inodes, layer_at_ns;
        uint64_t layer_walked_usec; /* CLOCK_MONOTONIC when the last walk began, 0: never */
        bool layer_wanted;          /* a walk is due, waiting for the one child at a time */
} Container;

/* What containers need from the daemon. */
/* What systemd's fd store gave back at start: containers' log pipes, by name ("ctr-<id>-out",
 * "ctr-<id>-err"). The Manager's; an adopted fd is taken out of it (-1 left in its place). */
typedef struct CtrStoredFds {
        int *fds;
        char **names;
        size_t n;
} CtrStoredFds;

typedef struct CtrEnv {
        struct ev_loop *loop;
        CtrStoredFds *stored;
        const char *state_dir, *root_dir;
        PodTable *pods;
        ImageStore *images;
        SystemdClient *(*systemd)(void *userdata);
        /* The systemd manager's root cgroup ("" for /), NULL while unknown. */
        const char *(*cgroup_root)(void *userdata);
        void *userdata;
} CtrEnv;

/* A RuntimeClass handler (ctr-handler.c): an OCI runtime offered by name. */
typedef struct CtrHandler {
        char *name;
        char *configured; /* as configured: a name in $PATH or a path */
        char *path;       /* absolute; NULL: not found */
        char *root;       /* its --root */
        char **options;   /* global options before the command */
        char *why;        /* why it cannot run containers here; NULL: it can */
        bool builtin;     /* runc or crun, found in $PATH, not configured */
        bool rro;         /* its `features` list the "rro" mount option */
        bool userns;      /* and the user namespace */
        Child *features_child;
} CtrHandler;

/* What the handlers are made from: [Runtime.<name>] sections and [Containers] Runtime=/DefaultRuntime=. */
typedef struct CtrHandlerConfig {
        const ConfigRuntime *runtimes;
        size_t n_runtimes;
        const char *legacy_runtime, *default_runtime;
} CtrHandlerConfig;

/* What became of a container, as the CRI's ContainerEventType counts it. */
typedef enum CtrEvent {
        CTR_EVENT_CREATED = 0,
        CTR_EVENT_STARTED = 1,
        CTR_EVENT_STOPPED = 2, /* an exit, a start that failed, an exit found at start */
        CTR_EVENT_DELETED = 3,
        _CTR_EVENT_MAX,
        _CTR_EVENT_INVALID = -EINVAL,
} CtrEvent;

/* Told once the model has changed (the container's fields say what happened; for DELETED it is out
 * of the table already), from the step or the unit signal that changed it. The ids are valid during
 * the call only. The observer must not change the table: it may read it and the pods. */
typedef void (*CtrObserver)(CtrTable *t, CtrEvent event, const char *container_id, const char *pod_id,
                            void *userdata);

struct CtrTable {
        CtrEnv env;
        CtrObserver observer;
        void *observer_userdata;
        Container *containers;
        unsigned n_containers;
        bool can_lower_oom_score;
        int own_oom_score_adj;
        FsSync *sync; /* records are saved on the loop and made durable off it */
        unsigned n_unconfirmed; /* containers whose unit systemd has not answered for since the start */
        void (*all_confirmed)(void *userdata); /* when that count drops to 0, with env.userdata */
        struct Child *layer_child; /* the walk of one writable layer, at most one at a time */
        char layer_id[65];         /* whose */
        CtrCriu *criu; /* whether criu works here, once asked (ctr-checkpoint.c) */
        bool kernel_rro; /* mount_setattr(AT_RECURSIVE) (ctr-handler.c) */
        CtrHandler *handlers;
        size_t n_handlers;
        const CtrHandler *default_handler; /* what "" means; NULL: none can run */
        char *legacy_runtime; /* the binary records from before handlers were made with */
        bool kernel_userns;  /* an overlay of idmapped layers works (ctr-userns.c) */
        char *userns_reason; /* why not, from the kernel's probe */
        Child *userns_child;
};

/* error: NULL on success, else what failed (valid during the call only). */
typedef void (*CtrDone)(Container *c, const Error *error, void *userdata);

int ctr_table_new(const CtrEnv *env, CtrTable **ret);
CtrTable *ctr_table_free(CtrTable *t);
/* Reads the persisted containers; watches their units; half-made ones are removed. */
int ctr_table_load(CtrTable *t);
/* systemd is reachable again: watch the units of containers loaded while it was not (the
 * watches made before move to the new bus by themselves). */
void ctr_table_watch_missing(CtrTable *t);

/* One observer of every container's events (the CRI's GetContainerEvents hub); NULL removes it. */
void ctr_table_set_observer(CtrTable *t, CtrObserver observer, void *userdata);

Container *ctr_find(CtrTable *t, const char *id);
int ctr_find_prefix(CtrTable *t, const char *prefix, Container **ret);

const char *ctr_state_to_string(CtrState s);
/* The state as the CRI reports it: UNKNOWN while being created or not yet confirmed by systemd. */
CtrState ctr_reported_state(const Container *c);
char *ctr_unit_name(const Container *c);
/* JSON for verbose status: unit, bundle, pid, runtime. */
char *ctr_info_json(const Container *c);

void ctr_spec_done(CtrSpec *s);

/* The entry points fail with *error filled: ERROR_CONFLICT while the container is busy with another
 * operation (the caller may try again), ERROR_WRONG_STATE when its state does not allow it. */

/* Creates the container (spec taken over, also on failure; config copied). ERROR_EXISTS when the
 * pod has a container of that name and attempt. done() once it is CREATED or was rolled back. */
int ctr_create(CtrTable *t, Pod *pod, Image *image, CtrSpec *spec, const void *config, size_t config_len,
               CtrDone done, void *userdata, Error *error, CtrOp **ret_op);
/* Only once, from CREATED. done() gets ERROR_START when the OCI runtime did not start it. */
int ctr_start(Container *c, CtrDone done, void *userdata, Error *error, CtrOp **ret_op);
/* The stop signal, then SIGKILL after timeout_sec; done once it exited. Idempotent. */
int ctr_stop(Container *c, int64_t timeout_sec, CtrDone done, void *userdata, Error *error, CtrOp **ret_op);
/* Stops if running, then deletes every trace; c is freed before done() (which gets NULL). */
int ctr_remove(Container *c, CtrDone done, void *userdata, Error *error, CtrOp **ret_op);
/* Reopens the log file (rotated by kubelet): ERROR_WRONG_STATE when the container does not run, its
 * pipes were lost, or its log_path now goes through a symlink or out of the pod's log directory. */
int ctr_reopen_log(Container *c, Error *error);
/* The fds (and names) systemd passed back at start: log pipes a previous daemon stored. The arrays
 * stay the caller's; adopted fds are set to -1 in them. */
void ctr_op_detach(CtrOp *op);
/* ExecSync: cmd run in the running container c with its process settings (ctr-exec.c). done()
 * gets the exit code and output (valid during the call only), or an error: ERROR_TIMEOUT when
 * timeout_usec (0: none) passed and the command was killed, ERROR_START when the runtime could not
 * start it. At most max_output bytes of stdout and stderr together are kept; the command goes on
 * past them. */
typedef struct CtrExec CtrExec;
typedef struct CtrExecResult {
        int exit_code; /* 128 + the signal when killed */
        const char *out, *err;
        size_t out_len, err_len;
        bool truncated;
} CtrExecResult;
typedef void (*CtrExecDone)(const Error *error, const CtrExecResult *result, void *userdata);
int ctr_exec_sync(Container *c, char *const *cmd, uint64_t timeout_usec, size_t max_output, CtrExecDone done,
                  void *userdata, CtrExec **ret, Error *error);
/* The caller went away: the command is killed, done() is not called. */
void ctr_exec_cancel(CtrExec *e);
/* Daemon shutdown: every command is killed. */
void ctr_exec_abort_all(void);
unsigned ctr_exec_count(void);
/* At load: kills what execs a killed daemon left in c, and forgets them. */
void ctr_exec_cleanup(Container *c);

/* Stats (ctr-stats.c). A sample of the container's own cgroup (has_cgroup false when it has none:
 * not running, or systemd's root cgroup not known yet), the CPU rate since the previous sample (as
 * containerd: none on the first), and its writable layer's usage from the last background walk of
 * its upper directory (has_layer false before the first). Asks for a new walk when the last is
 * older than CTR_LAYER_WALK_INTERVAL_USEC; walks run one at a time in a child, never on the loop. */
#define CTR_LAYER_WALK_INTERVAL_USEC (10ULL * 1000 * 1000)
typedef struct CtrStats {
        bool has_cgroup;
        StatsCgroup cgroup;
        bool has_nano_cores;
        uint64_t nano_cores;
        bool has_layer;
        uint64_t layer_bytes, layer_inodes, layer_at_ns;
} CtrStats;
void ctr_stats(Container *c, StatsRead what, CtrStats *ret);
/* The container's cgroup as systemd names it (the manager's root, the pod's slice, the unit), or
 * NULL (OOM, or the root not known yet). */
char *ctr_cgroup_path(const Container *c);
/* Where the containers' writable layers are: <root>/containers. */
char *ctr_layers_dir(const CtrTable *t);
/* The writable layers together, as their last walks found them (ImageFsInfo's container
 * filesystem); a layer not walked yet is asked for. */
void ctr_layers_usage(CtrTable *t, uint64_t *ret_bytes, uint64_t *ret_inodes);
/* Drops a walk in flight (the table is going). */
void ctr_stats_stop(CtrTable *t);

/* Checks r (ERROR_INVALID_ARGUMENT naming the field): shares 2…262144, quota ≥ 1000 µs or -1,
 * period 1000…1000000 µs, memory and swap positive or -1 (swap not below memory), pids positive or
 * -1, cpusets lists like "0-3,7". */
int ctr_resources_check(const CtrResources *r, Error *error);
void ctr_resources_done(CtrResources *r);
/* Changes a running container's resources live (ctr-update.c): the unit's properties first
 * (SetUnitProperties, runtime), so that systemd's view stays the truth, then the OCI runtime's
 * `update` for the cgroup controllers systemd does not own. A failure puts back what was applied
 * (the old limits stay) and reports the first error: the runtime's with its text, ERROR_WRONG_STATE
 * (EBUSY) when the kernel refused a memory limit below the usage. ERROR_WRONG_STATE when c does not
 * run, ERROR_CONFLICT when it is busy. On success c holds the new values, saved. r is copied. */
int ctr_update_resources(Container *c, const CtrResources *r, CtrDone done, void *userdata, Error *error,
                         CtrUpdate **ret);
/* The caller went away: the update completes without calling back. */
void ctr_update_detach(CtrUpdate *u);
/* Daemon shutdown: dropped without a callback (a runtime child is abandoned). */
void ctr_update_abort(CtrUpdate *u);

/* ctr-handler.c. The handlers: runc and crun where found (not offered where they cannot run on this
 * host's cgroups), then Runtime=, then the sections (a section replaces a handler of its name). The
 * default is DefaultRuntime=, else Runtime='s, else the first that can run. -EINVAL and a message
 * when DefaultRuntime= names none. */
int ctr_handlers_init(CtrTable *t, const CtrHandlerConfig *config, char **ret_error);
void ctr_handlers_free(CtrTable *t);
/* At start, what the kernel and each runtime offer (a runtime's answer comes from a child, a moment
 * later: false until then). */
void ctr_handlers_probe(CtrTable *t);
/* The handler name means ("" or NULL: the default, which may be NULL), or NULL. */
const CtrHandler *ctr_handler_find(const CtrTable *t, const char *name);
/* The handler to run containers with: ERROR_INVALID_ARGUMENT for an unknown name (naming the
 * configured ones), ERROR_WRONG_STATE for one that cannot run here (saying why) or no default. */
int ctr_handler_get(const CtrTable *t, const char *name, const CtrHandler **ret, Error *error);
/* Recursive read-only mounts with h: mount_setattr(2) with AT_RECURSIVE, and the runtime's "rro". */
bool ctr_handler_recursive_read_only(const CtrTable *t, const CtrHandler *h);
/* Whether pods with handler h may have user namespaces of their own (rktlet(8) USER NAMESPACES):
 * the kernel's part (an overlay of idmapped layers) and the runtime's ("user" in its features); if
 * not, why (ret_reason may be NULL). */
bool ctr_handler_user_namespaces(const CtrTable *t, const CtrHandler *h, const char **ret_reason);
/* Whether what ctr_handler_user_namespaces() answers may change: h's runtime or the kernel is still
 * being probed. */
bool ctr_handler_probing(const CtrTable *t, const CtrHandler *h);

/* CheckpointContainer (ctr-checkpoint.c): whether criu works here comes first (`criu check`, run
 * once, in a child, on the first call; the answer is kept): ERROR_UNSUPPORTED naming what is missing
 * ("criu not found in $PATH", "criu check failed: …"). Then the container id (or unique prefix) is
 * looked up (ERROR_NOT_FOUND, ERROR_INVALID_ARGUMENT), must run (ERROR_WRONG_STATE), and
 * `<runtime> checkpoint --leave-running` writes criu's images, which tar puts in the file location
 * (an absolute path), all as children within timeout_usec each (0: a minute). */
typedef void (*CtrCheckpointDone)(const Error *error, void *userdata);
int ctr_checkpoint(CtrTable *t, const char *id, const char *location, uint64_t timeout_usec, CtrCheckpointDone done,
                   void *userdata, Error *error, CtrCheckpoint **ret);
/* The caller went away: the checkpoint completes without calling back. */
void ctr_checkpoint_detach(CtrCheckpoint *cp);
CtrCriu *ctr_criu_free(CtrCriu *k);

/* "SIGTERM", "TERM", "15", "RTMIN+3", "SIGRTMINPLUS3"… → the signal number, or -EINVAL. */
int ctr_signal_from_string(const char *s);

/* Exec: cmd run as ctr_exec_sync() runs it, with its stdio for the caller (ctr-exec.c). started()
 * gets the fds once the command runs (the caller's then; -1 where there is none): with tty the pty
 * master (the runtime's --console-socket) and no pipes, else in_fd (when in) is the write end of
 * the command's stdin and out_fd, err_fd the read ends of its stdout and stderr. done() follows
 * with the exit code (no output), or an error; ctr_exec_cancel() kills it. */
typedef struct CtrExecIo {
        int in_fd, out_fd, err_fd, pty_fd;
} CtrExecIo;
typedef void (*CtrExecStarted)(const CtrExecIo *io, void *userdata);
int ctr_exec_interactive(Container *c, char *const *cmd, bool in, bool tty, CtrExecStarted started, CtrExecDone done,
                         void *userdata, CtrExec **ret, Error *error);

/* Attach (ctr-io.c): what the running container c writes from now on, fanned out from what the log
 * writer reads (it stays the only reader of the pipes, or of the pty master), and its stdin.
 * output() gets each chunk read (valid during the call only; a tty's output is all CRI_STDOUT);
 * ended() says the container exited (its last output came first) or its stdio went, after which
 * nothing more is called; stdin_closed() says the container's stdin was closed by another attach
 * (stdin_once). Each may call ctr_attach_free() on its attachment (and on others). *ret_in_fd gets
 * a new fd writing to the container's stdin (its pipe, or the pty master), or -1 when the container
 * has none (or no more). ERROR_WRONG_STATE when its stdio was lost (a restart outside systemd) or
 * both its output pipes ended. */
typedef struct CtrAttach CtrAttach;
typedef struct CtrAttachOps {
        void (*output)(CriStream stream, const void *data, size_t len, void *userdata);
        void (*ended)(void *userdata);
        void (*stdin_closed)(void *userdata);
} CtrAttachOps;
int ctr_attach(Container *c, const CtrAttachOps *ops, void *userdata, int *ret_in_fd, CtrAttach **ret, Error *error);
CtrAttach *ctr_attach_free(CtrAttach *a);
/* A tty container's terminal size (TIOCSWINSZ on the pty master); -ENOTTY without one. */
int ctr_attach_resize(CtrAttach *a, unsigned short cols, unsigned short rows);
/* stdin_once: closes the container's stdin for good (the daemon's end, the fd store's, and every
 * other attachment's, through its stdin_closed()). */
void ctr_attach_close_stdin(CtrAttach *a);


