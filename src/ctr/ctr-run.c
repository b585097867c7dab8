/* Creating, starting, stopping and removing containers: asynchronous step machines over mount
 * children, systemd jobs and the unit's PropertiesChanged signals. The container's service runs
 * `<runtime> create` as ExecStart (Type=forking: the PID file names the container's init, which
 * becomes the unit's main process) and `<runtime> start` as ExecStartPost, so systemd knows the
 * main process before it runs and records its exit however quick. RemainAfterExit keeps the unit,
 * its exit status and its times until the container is removed. */
#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>

#include "child.h"
#include "ctr-internal.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "op.h"
#include "quote.h"
#include "record.h"
#include "time-util.h"
#include "trash.h"

/* How long a SIGKILLed container may take to be seen gone. */
#define KILL_WAIT_USEC (30ULL * USEC_PER_SEC)

typedef enum CtrOpKind { OP_CREATE, OP_START, OP_STOP, OP_REMOVE, _OP_KIND_MAX } CtrOpKind;

typedef enum Step {
        /* create */
        STEP_MOUNT,
        STEP_CONFIG,
        STEP_CREATED,
        /* start */
        STEP_UNIT,
        STEP_STARTED, /* the job ended: waiting for the unit's properties */
        /* stop */
        STEP_SIGNAL,
        STEP_WAIT_EXIT,
        STEP_KILL,
        STEP_WAIT_KILLED,
        STEP_STOPPED,
        /* remove, and a failed create's rollback */
        STEP_RM_KILL,
        STEP_RM_WAIT,
        STEP_RM_STOP_UNIT,
        STEP_RM_RESET,
        STEP_RM_RUNTIME,
        STEP_RM_UMOUNT,
        STEP_RM_DELETE,
        STEP_END,
} Step;

/* The generic machine (op.h) and what a container's operations need beside it. */
struct CtrOp {
        Op op;
        Container *c; /* NULL once a removal freed it */
        CtrDone done;
        void *userdata;
        SystemdOp *sd;
        ev_timer timer;
        bool timer_armed;
        uint64_t timeout_usec; /* stop: the grace period before SIGKILL (0: none) */
        bool job_failed;
        int job_error; /* -ECONNRESET: the bus dropped before systemd took the job */
        char *job_message;
        /* create */
        CtrSpec spec;
        Image *image;
        yajl_val image_config; /* parsed once (NULL: unreadable, STEP_CONFIG fails) */
        CtrRootfs rootfs;
        char *target; /* umount */
};

static const OpKind kinds[_OP_KIND_MAX];

static CtrOp *ctr_op(Op *o) {
        return container_of(o, CtrOp, op);
}

static bool op_is(const CtrOp *op, CtrOpKind kind) {
        return op->op.kind == &kinds[kind];
}

static SystemdClient *systemd_of(Container *c) {
        CtrEnv *env = &c->table->env;
        return env->systemd(env->userdata);
}

/* A save outside an operation's steps (an exit, a start decided at recovery). */
static void save(Container *c) {
        int r = ctr_save(c);
        if (r < 0)
                log_warning_errno(r, "container %s: cannot save its state: %m", c->id);
}

static uint64_t now_ns(void) {
        return now_usec(CLOCK_REALTIME) * 1000ULL;
}

static void timer_stop(CtrOp *op) {
        if (op->timer_armed && op->c) {
                ev_timer_stop(op->c->table->env.loop, &op->timer);
                op->timer_armed = false;
        }
}

/* --- the operation's class (op.h) ------------------------------------------------------------------ */

static void op_unlink(Op *o, bool aborted) {
        CtrOp *op = ctr_op(o);
        Container *c = op->c;

        timer_stop(op);
        if (!c)
                return;
        c->busy = false;
        c->op = NULL;
        if (aborted || c->exit_waiter == op)
                c->exit_waiter = NULL;
        if (!aborted && op_is(op, OP_REMOVE))
                ctr_confirmed(c); /* a removal finished at start failed: its state is known */
}

static void op_notify(Op *o, const Error *error) {
        CtrOp *op = ctr_op(o);
        if (op->done)
                op->done(op->c, error, op->userdata);
}

static void op_cancel(Op *o) {
        systemd_op_cancel(TAKE_PTR(ctr_op(o)->sd));
}

static int op_save_record(Op *o) {
        CtrOp *op = ctr_op(o);
        return op->c ? ctr_save(op->c) : 0;
}

static void op_free(Op *o) {
        CtrOp *op = ctr_op(o);

        timer_stop(op);
        ctr_spec_done(&op->spec);
        yajl_tree_free(op->image_config);
        ctr_rootfs_done(&op->rootfs);
        free(op->target);
        free(op->job_message);
        free(op);
}

static const OpClass ctr_op_class = {
        .noun = "container",
        .id_field = "CONTAINER_ID",
        .unlink = op_unlink,
        .notify = op_notify,
        .cancel = op_cancel,
        .save = op_save_record,
        .free = op_free,
};

void ctr_op_detach(CtrOp *op) {
        if (op)
                op_detach(&op->op);
}

CtrTable *ctr_table_free(CtrTable *t) {
        if (!t)
                return NULL;
        while (t->containers) {
                Container *c = t->containers;
                if (c->op)
                        op_abort(&c->op->op);
                ctr_update_abort(c->update);
                ctr_free(c);
        }
        ctr_stats_stop(t);
        ctr_criu_free(t->criu);
        ctr_handlers_free(t);
        if (t->userns_child)
                child_abandon(t->userns_child);
        free(t->userns_reason);
        fs_sync_free(t->sync);
        free(t);
        return NULL;
}

/* --- exits --------------------------------------------------------------------------------------- */

/* The container's v1 memory cgroup, from its init's /proc/<pid>/cgroup. */
static char *memcg_of(uint32_t pid) {
        char path[64], *text = NULL, *line, *save_ptr = NULL, *out = NULL;

        snprintf(path, sizeof path, "/proc/%u/cgroup", pid);
        if (read_file(path, 64 * 1024, &text, NULL) < 0)
                return NULL;
        for (line = strtok_r(text, "\n", &save_ptr); line; line = strtok_r(NULL, "\n", &save_ptr)) {
                char *ctrls = strchr(line, ':'), *p;
                if (!ctrls || !(p = strchr(ctrls + 1, ':')))
                        continue;
                *p = '\0';
                if (strcmp(ctrls + 1, "memory") == 0) {
                        if (asprintf(&out, "/sys/fs/cgroup/memory%s", p + 1) < 0)
                                out = NULL;
                        break;
                }
        }
        free(text);
        return out;
}

static bool memcg_oom_killed(const char *memcg) {
        char *path = NULL, *text = NULL, *p;
        bool killed = false;

        if (!memcg || asprintf(&path, "%s/memory.oom_control", memcg) < 0)
                return false;
        if (read_file(path, 4096, &text, NULL) >= 0 && (p = strstr(text, "oom_kill ")))
                killed = strtoull(p + strlen("oom_kill "), NULL, 10) > 0;
        free(text);
        free(path);
        return killed;
}

static void record_exit(Container *c, const SystemdServiceInfo *info) {
        char id_field[sizeof("CONTAINER_ID=") + 64];
        const char *fields[] = { id_field, NULL };
        bool oom;

        if (info->gone || info->exec_main_start_usec == 0) {
                /* systemd no longer knows the unit: the node rebooted (transient units do not survive
                 * it), or someone reset it. What containerd reports for a container whose task is
                 * gone: EXITED, 255, "Unknown", finished now. EXITED, not UNKNOWN: kubelet takes an
                 * UNKNOWN container for one that may still run and keeps trying to kill it, where an
                 * exited one is restarted or removed as its pod's policy says. */
                c->exit_code = 255;
                (void) free_and_strdup(&c->reason, "Unknown");
                (void) free_and_strdup(&c->message,
                                       "the container's unit is gone (the node rebooted?): its exit status is unknown");
                c->finished_at_ns = now_ns();
        } else {
                if (info->exec_main_code == CLD_EXITED)
                        c->exit_code = info->exec_main_status;
                else
                        c->exit_code = 128 + info->exec_main_status;
                c->finished_at_ns = info->exec_main_exit_usec ? info->exec_main_exit_usec * 1000ULL : now_ns();
                /* 137 however it came: a SIGKILL, or an exit with 128 + 9 from a main process that
                 * saw its child killed (what systemd takes for the main process may be a parent). */
                oom = strcmp(info->result, "oom-kill") == 0 ||
                      (c->exit_code == 128 + SIGKILL && memcg_oom_killed(c->memcg));
                (void) free_and_strdup(&c->reason, oom ? "OOMKilled" : c->exit_code == 0 ? "Completed" : "Error");
        }
        c->state = CTR_EXITED;
        save(c);
        ctr_io_exited(c->io); /* attach sessions end */
        snprintf(id_field, sizeof id_field, "CONTAINER_ID=%s", c->id);
        log_fields(LOG_INFO, fields, "container %s: exited with %d (%s).", c->id, c->exit_code, c->reason);
        ctr_emit(c->table, CTR_EVENT_STOPPED, c->id, c->pod_id);
        if (c->exit_waiter) {
                CtrOp *op = c->exit_waiter;
                c->exit_waiter = NULL;
                timer_stop(op);
                op_next(&op->op);
        }
}

/* The last error the OCI runtime logged (--log-format json), or NULL. */
static char *runtime_error(Container *c) {
        char *path = ctr_path(c, true, "runtime.log"), *text = NULL, *out = NULL, *line, *save_ptr = NULL;

        if (!path || read_file(path, 1024 * 1024, &text, NULL) < 0) {
                free(path);
                return NULL;
        }
        for (line = strtok_r(text, "\n", &save_ptr); line; line = strtok_r(NULL, "\n", &save_ptr)) {
                yajl_val v = json_parse(line, NULL, 0);
                const char *level = json_get_str(v, "level"), *msg = json_get_str(v, "msg");
                if (level && msg && (strcmp(level, "error") == 0 || strcmp(level, "fatal") == 0))
                        (void) free_and_strdup(&out, msg);
                yajl_tree_free(v);
        }
        free(text);
        free(path);
        return out;
}

/* Why a start job failed: the OCI runtime's last error, else systemd's word for the job; and a
 * full state directory, which holds the runtime's --log file and state (a full disk loses the real
 * error, the runtime then writing it only to the container's stderr, and leaves a later one such
 * as "Failed to remove cgroup" as the last). */
static char *start_failure(Container *c, const char *runtime_err, const char *job_message) {
        const char *runtime = strrchr(c->runtime, '/');
        struct statvfs st;
        char *out, space[256] = "";

        runtime = runtime ? runtime + 1 : c->runtime;
        /* Less than a megabyte left: the runtime's state and log writes are what fail first. */
        if (statvfs(c->table->env.state_dir, &st) >= 0 && (uint64_t) st.f_bavail * st.f_frsize < 1024 * 1024)
                snprintf(space, sizeof space, "; the state directory %s has %llu KiB free (%s?)",
                         c->table->env.state_dir, (unsigned long long) st.f_bavail * st.f_frsize / 1024,
                         strerror(ENOSPC));
        int r = runtime_err ? asprintf(&out, "%s create failed: %s%s", runtime, runtime_err, space)
                            : asprintf(&out, "%s create failed (%s)%s; its own words are in the container's log, on "
                                       "stderr", runtime, job_message ?: "the unit did not start", space);
        if (r < 0)
                return NULL;
        return out;
}

/* What a started unit says: running, already exited, or never started. */
static void start_decide(Container *c, const SystemdServiceInfo *info, CtrOp *op) {
        char *err = runtime_error(c);

        if (!info->gone && info->exec_main_start_usec != 0 && !(op && op->job_failed && err)) {
                c->state = CTR_RUNNING;
                c->started_at_ns = info->exec_main_start_usec * 1000ULL;
                c->pid = info->main_pid ?: info->exec_main_pid;
                if (info->main_pid && !c->memcg)
                        c->memcg = memcg_of(info->main_pid);
                save(c);
                ctr_emit(c->table, CTR_EVENT_STARTED, c->id, c->pod_id);
                if (info->main_pid == 0)
                        record_exit(c, info);
        } else {
                /* A job systemd never took: the runtime never ran, its message is the bus's. */
                bool lost = op && op->job_failed && op->job_error == -ECONNRESET;
                if (op && !lost) {
                        char *why = start_failure(c, err, op->job_message);
                        if (why) {
                                free(err);
                                err = why;
                        }
                }
                c->state = CTR_EXITED;
                c->exit_code = 128;
                c->finished_at_ns = now_ns();
                (void) free_and_strdup(&c->reason, "StartError");
                (void) free_and_strdup(&c->message, err                   ? err
                                     : op && op->job_message ? op->job_message
                                     : !op                   ? "rktlet stopped while starting it, and systemd never ran it"
                                                             : "the OCI runtime did not start it");
                save(c);
                ctr_emit(c->table, CTR_EVENT_STOPPED, c->id, c->pod_id);
                if (op && lost && !err)
                        op_fail(&op->op, -ECONNRESET, "start %s: %s", c->id, c->message);
                else if (op) /* a StartError: no kind says more */
                        op_fail_kind(&op->op, ERROR_START, EIO, "start %s: %s", c->id, c->message);
        }
        free(err);
}

static void unit_decide(Container *c, const SystemdServiceInfo *info) {
        if (c->op && op_is(c->op, OP_START)) {
                if (c->op->op.step == STEP_STARTED) {
                        CtrOp *op = c->op;
                        start_decide(c, info, op);
                        op_goto(&op->op, STEP_END);
                }
                return;
        }
        if (c->state == CTR_CREATED && c->unit_started) {
                /* A daemon stopped while starting it: decide from what systemd knows, once systemd
                 * knows it. While the OCI runtime's create (ExecStart=, the control process of a
                 * forking service) still runs, the unit is activating and has no main process yet:
                 * the container stays CREATED until the next change of the unit says how it went. */
                if (!info->gone && info->exec_main_start_usec == 0 && info->control_pid != 0) {
                        log_debug("container %s: systemd is still starting it (create as pid %" PRIu32 ").", c->id,
                                  info->control_pid);
                        return;
                }
                start_decide(c, info, NULL);
                return;
        }
        if (c->state != CTR_RUNNING)
                return;
        if (info->main_pid != 0 && !info->gone) {
                c->pid = info->main_pid;
                return;
        }
        if (!info->gone && info->exec_main_start_usec != 0 && info->exec_main_exit_usec == 0)
                return; /* between states */
        record_exit(c, info);
}

static void unit_changed(SystemdWatch *w, const SystemdServiceInfo *info, void *userdata) {
        Container *c = userdata;

        /* First: deciding may end an operation whose caller frees c. The state is decided before
         * the loop serves anything again. */
        if (!c->removing)
                ctr_confirmed(c); /* one being removed is, once the removal ends */
        unit_decide(c, info);
}

static int watch(Container *c) {
        SystemdClient *sd;
        char *unit;
        int r;

        if (c->watch)
                return 0;
        sd = systemd_of(c);
        if (!sd)
                return -ENOTCONN;
        unit = ctr_unit_name(c);
        if (!unit)
                return -ENOMEM;
        r = systemd_watch_service(sd, unit, unit_changed, c, &c->watch);
        free(unit);
        return r;
}

/* --- create -------------------------------------------------------------------------------------- */

static void mounted(Child *child, const ChildResult *res, void *userdata) {
        CtrOp *op = userdata;

        op->op.child = NULL;
        if (res->exit_code != 0) {
                /* rootfs_mounted stays: a child that failed (or was killed at its timeout) may have
                 * mounted the overlay or some volumes before, which the rollback's umount step
                 * unmounts (not mounted is no failure there) before the bundle is deleted. */
                op_fail(&op->op, -EIO, "mount the rootfs of container %s: %.*s", op->op.id, (int) res->err_len,
                        res->err_len ? res->err : "failed");
        }
        op_next(&op->op);
}

static void step_mount(Op *o) {
        CtrOp *op = ctr_op(o);
        ChildSpec spec = {
                .setup = ctr_rootfs_mount_child,
                .setup_userdata = &op->rootfs,
                .timeout_usec = CTR_CHILD_TIMEOUT_USEC,
                .max_output = 16 * 1024,
        };
        int r = ctr_rootfs_prepare(op->c, pod_find(op->c->table->env.pods, op->c->pod_id), &op->spec,
                                   op->c->table->env.images, op->image, &op->rootfs);

        if (r >= 0)
                r = child_spawn(op->c->table->env.loop, &spec, mounted, op, &op->op.child);
        if (r < 0) {
                op->c->rootfs_mounted = false;
                op_fail(&op->op, r, "mount the rootfs of container %s: %s", op->op.id, strerror(-r));
                op_next(&op->op);
        }
}

static void step_config(Op *o) {
        CtrOp *op = ctr_op(o);
        Container *c = op->c;
        Pod *pod = pod_find(c->table->env.pods, c->pod_id);
        Error error = ERROR_INIT;
        int r;

        if (!pod) {
                op_fail(&op->op, -ENOENT, "pod sandbox %s was removed while container %s was being created", c->pod_id,
                        c->id);
                op_next(&op->op);
                return;
        }
        r = ctr_write_oci_config(c, pod, op->image, op->image_config, &op->spec, &error);
        if (r < 0) {
                error_wrap(&error, "container %s", c->id);
                op_fail_error(&op->op, &error);
        }
        error_done(&error);
        op_next(&op->op);
}

/* --- start --------------------------------------------------------------------------------------- */

typedef struct StartArgs {
        Container *c;
        const char *slice;
        int fds[3];
} StartArgs;

static int append_exec(sd_bus_message *m, const char *property, char **argv) {
        int r;

        r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", property);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", argv[0]);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "b", 0);
        for (int i = 0; i < 4 && r >= 0; i++)
                r = sd_bus_message_close_container(m);
        return r;
}

static int unit_properties(sd_bus_message *m, void *userdata) {
        StartArgs *a = userdata;
        Container *c = a->c;
        char *bundle = ctr_run_dir(c), *pidfile = ctr_path(c, true, "pid"), *log = ctr_path(c, true, "runtime.log");
        char **create = NULL, **start = NULL, description[512];
        int r = -ENOMEM;

        if (!bundle || !pidfile || !log)
                goto out;
        {
                char *create_args[] = { "--log", log, "--log-format", "json", "create", "--bundle", bundle,
                                        "--pid-file", pidfile, c->id, NULL };
                char *start_args[] = { "--log", log, "--log-format", "json", "start", c->id, NULL };
                create = ctr_runtime_argv(c, create_args);
                start = ctr_runtime_argv(c, start_args);
                if (!create || !start)
                        goto out;

                /* As the pod's slice is named: Kubernetes namespace/pod/container, then the ID. */
                const Pod *pod = pod_find(c->table->env.pods, c->pod_id);
                if (pod)
                        snprintf(description, sizeof description, "rktlet container %s/%s/%s (%.12s)",
                                 pod->spec.namespace, pod->spec.name, c->name, c->id);
                else
                        snprintf(description, sizeof description, "rktlet container %s (%.12s) of pod %.12s", c->name,
                                 c->id, c->pod_id);
                r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)", "Description", "s", description,
                                          "Slice", "s", a->slice, "Type", "s", "forking", "PIDFile", "s", pidfile,
                                          "RemainAfterExit", "b", 1, "Delegate", "b", 1, "KillSignal", "i",
                                          (int32_t) c->stop_signal, "TimeoutStartUSec", "t", 60 * USEC_PER_SEC,
                                          "CollectMode", "s", "inactive");
                if (r >= 0)
                        r = append_exec(m, "ExecStart", create);
                if (r >= 0)
                        r = append_exec(m, "ExecStartPost", start);
        }
        if (r >= 0 && a->fds[0] >= 0)
                r = sd_bus_message_append(m, "(sv)", "StandardInputFileDescriptor", "h", a->fds[0]);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)(sv)", "StandardOutputFileDescriptor", "h", a->fds[1],
                                          "StandardErrorFileDescriptor", "h", a->fds[2]);
        /* Resources: systemd applies them to the unit's cgroup and updates them live. */
        if (r >= 0)
                r = systemd_append_limits(m, c->cpu_shares, c->cpu_quota, c->cpu_period, c->memory_limit);
out:
        free(bundle);
        free(pidfile);
        free(log);
        strv_free(create);
        strv_free(start);
        return r;
}

static void unit_started(const Error *error, void *userdata) {
        CtrOp *op = userdata;

        op->sd = NULL;
        if (error_is_set(error)) {
                op->job_failed = true;
                op->job_error = error_to_errno(error);
                op->job_message = strdup(error->message ?: "the unit did not start");
        }
        /* Whatever the job's result: the unit's properties tell whether the container runs. */
        op_next(&op->op);
}

/* Waits for the unit's properties (unit_decide()); without a watch, decides from nothing. */
static void step_started(Op *o) {
        CtrOp *op = ctr_op(o);

        if (op->c->watch)
                systemd_watch_refresh(op->c->watch);
        else
                op_next(o);
}

/* The log_path kubelet gave does not lead to a file rktlet may write: the file system is not as it
 * must be for the request, so ERROR_WRONG_STATE (FAILED_PRECONDITION), naming the field. */
static void log_open_failed(CtrOp *op, int r) {
        Container *c = op->c;
        const char *rel = ctr_log_relative(c);

        switch (r) {
        case -ELOOP:
                op_fail_kind(&op->op, ERROR_WRONG_STATE, r,
                             "container %s: log_path %s goes through a symlink beneath the pod's log directory "
                             "%s: rktlet follows none there",
                             c->id, QUOTE(rel), QUOTE(c->log_dir));
                break;
        case -EXDEV:
                op_fail_kind(&op->op, ERROR_WRONG_STATE, r,
                             "container %s: log_path %s leads out of the pod's log directory %s", c->id, QUOTE(rel),
                             QUOTE(c->log_dir));
                break;
        case -EINVAL:
        case -EISDIR:
                op_fail_kind(&op->op, ERROR_WRONG_STATE, r, "container %s: log_path %s beneath %s is no regular file",
                             c->id, QUOTE(rel), QUOTE(c->log_dir));
                break;
        default:
                op_fail(&op->op, r, "container %s: cannot open its log_path %s beneath %s: %s", c->id, QUOTE(rel),
                        QUOTE(c->log_dir), strerror(-r));
        }
}

static void step_unit(Op *o) {
        CtrOp *op = ctr_op(o);
        Container *c = op->c;
        Pod *pod = pod_find(c->table->env.pods, c->pod_id);
        SystemdClient *sd = systemd_of(c);
        StartArgs a = { .c = c, .fds = { -1, -1, -1 } };
        char *unit = ctr_unit_name(c), *pidfile = ctr_path(c, true, "pid"), *log = ctr_path(c, true, "runtime.log");
        int r;

        if (!unit || !pidfile || !log) {
                r = -ENOMEM;
                op_fail(&op->op, r, "start %s: out of memory", c->id);
                goto out;
        }
        if (!pod || pod_state(pod) != POD_READY) {
                r = -EIO;
                op_fail_kind(&op->op, ERROR_WRONG_STATE, 0, "pod sandbox %s of container %s is not ready", c->pod_id,
                             c->id);
                goto out;
        }
        if (!sd) {
                r = -ENOTCONN;
                op_fail_kind(&op->op, ERROR_UNAVAILABLE, r, "start %s: systemd is unreachable", c->id);
                goto out;
        }
        (void) unlink(pidfile);
        (void) unlink(log);
        c->io = ctr_io_free(c->io);
        r = ctr_io_new(c->table->env.loop, c->id, c->log_dir, ctr_log_relative(c), c->tty, c->stdin_, &c->io, a.fds);
        if (r < 0) {
                log_open_failed(op, r);
                goto out;
        }
        r = watch(c);
        if (r < 0) {
                op_fail(&op->op, r, "container %s: cannot watch its unit: %s", c->id, strerror(-r));
                goto out;
        }
        /* On disk before systemd hears of it: a crash from here on finds the unit to undo. */
        c->unit_started = c->runtime_created = true;
        op_save(o);
        a.slice = pod->slice;
        r = systemd_start_transient_unit(sd, unit, unit_properties, &a, CTR_SYSTEMD_TIMEOUT_USEC, unit_started, op,
                                         &op->sd);
        if (r < 0)
                op_fail(&op->op, r, "start %s: %s", unit, strerror(-r));
out:
        /* systemd holds its own copies of the fds now. */
        for (int i = 0; i < 3; i++)
                safe_close(a.fds[i]);
        free(unit);
        free(pidfile);
        free(log);
        if (r < 0) {
                op_goto(&op->op, STEP_END);
        }
}

/* --- stop ---------------------------------------------------------------------------------------- */

static void op_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
        CtrOp *op = container_of(w, CtrOp, timer);

        op->timer_armed = false;
        if (op->c && op->c->exit_waiter == op)
                op->c->exit_waiter = NULL;
        if (op->op.step == STEP_WAIT_EXIT) {
                op_goto(&op->op, STEP_KILL); /* the grace period is over */
                return;
        }
        op_fail(&op->op, -ETIMEDOUT, "container %s did not exit after SIGKILL", op->op.id);
        op_goto(&op->op, op_is(op, OP_REMOVE) ? STEP_RM_STOP_UNIT : STEP_END);
}

static void wait_exit(CtrOp *op, uint64_t usec) {
        Container *c = op->c;

        if (c->state != CTR_RUNNING) {
                op_next(&op->op);
                return;
        }
        c->exit_waiter = op;
        ev_timer_init(&op->timer, op_timeout, (double) usec / USEC_PER_SEC, 0.);
        ev_timer_start(c->table->env.loop, &op->timer);
        op->timer_armed = true;
        /* A change may have come before the signal was sent: ask again. */
        systemd_watch_refresh(c->watch);
}

static void killed(const Error *error, void *userdata) {
        CtrOp *op = userdata;

        op->sd = NULL;
        /* "No main process" and the like: it exited meanwhile, the properties will say. */
        if (error_is_set(error))
                log_debug("container %s: KillUnit: %s", op->op.id, error_text(error));
        op_next(&op->op);
}

static void step_kill(CtrOp *op, const char *who, int sig) {
        SystemdClient *sd = systemd_of(op->c);
        char *unit = ctr_unit_name(op->c);
        int r = -ENOMEM;

        /* A stop signals a running container only. A removal kills whatever the unit still runs,
         * whatever rktlet thinks of it (a process that ignores SIGTERM would hold the unit's stop
         * for systemd's 90 s): a unit that runs nothing just says so. */
        if (op_is(op, OP_REMOVE) ? !op->c->unit_started : op->c->state != CTR_RUNNING) {
                free(unit);
                op_next(&op->op);
                return;
        }
        if (!sd)
                r = -ENOTCONN;
        else if (unit)
                r = systemd_kill_unit(sd, unit, who, sig, CTR_SYSTEMD_TIMEOUT_USEC, killed, op, &op->sd);
        free(unit);
        if (r == -ENOTCONN)
                op_fail_kind(&op->op, ERROR_UNAVAILABLE, r, "signal container %s: systemd is unreachable", op->op.id);
        if (r < 0) {
                op_fail(&op->op, r, "signal container %s: %s", op->op.id, strerror(-r));
                op_goto(&op->op, STEP_END);
        }
}

/* --- remove -------------------------------------------------------------------------------------- */

static void unit_gone(const Error *error, void *userdata) {
        CtrOp *op = userdata;

        op->sd = NULL;
        if (error_is_set(error) && error->errno_value != ENOENT && op->op.step == STEP_RM_STOP_UNIT) {
                op_fail_wrap(&op->op, error, "stop the unit of container %s", op->op.id);
                op_goto(&op->op, STEP_END);
                return;
        }
        /* ResetFailedUnit fails for units that are not failed, or gone: fine. */
        op_next(&op->op);
}

static void step_unit_down(CtrOp *op, bool reset) {
        SystemdClient *sd = systemd_of(op->c);
        char *unit = ctr_unit_name(op->c);
        int r = -ENOMEM;

        if (!sd)
                r = -ENOTCONN;
        else if (unit)
                r = reset ? systemd_reset_failed_unit(sd, unit, CTR_SYSTEMD_TIMEOUT_USEC, unit_gone, op, &op->sd)
                          : systemd_stop_unit(sd, unit, CTR_SYSTEMD_TIMEOUT_USEC, unit_gone, op, &op->sd);
        free(unit);
        if (r == -ENOTCONN)
                op_fail_kind(&op->op, ERROR_UNAVAILABLE, r, "remove the unit of container %s: systemd is unreachable",
                             op->op.id);
        if (r < 0) {
                op_fail(&op->op, r, "remove the unit of container %s: %s", op->op.id, strerror(-r));
                op_goto(&op->op, STEP_END);
        }
}

static void runtime_deleted(Child *child, const ChildResult *res, void *userdata) {
        CtrOp *op = userdata;

        op->op.child = NULL;
        /* "container does not exist" is what a container that never ran says: fine too. */
        if (res->exit_code != 0 && !(res->err && strstr(res->err, "does not exist")) &&
            !(res->out && strstr(res->out, "does not exist")))
                log_warning("container %s: %s delete: %.*s", op->op.id, op->c->runtime, (int) res->err_len,
                            res->err ?: "");
        op->c->runtime_created = false;
        op_next(&op->op);
}

static void step_runtime_delete(CtrOp *op) {
        Container *c = op->c;
        char *args[] = { "delete", "--force", c->id, NULL };
        _cleanup_(strv_freep) char **argv = ctr_runtime_argv(c, args);
        int r = -ENOMEM;

        if (argv) {
                ChildSpec spec = { .argv = argv, .timeout_usec = CTR_CHILD_TIMEOUT_USEC, .max_output = 16 * 1024 };
                r = child_spawn(c->table->env.loop, &spec, runtime_deleted, op, &op->op.child);
        }
        if (r < 0) {
                op_fail(&op->op, r, "delete container %s in the OCI runtime: %s", op->op.id, strerror(-r));
                op_goto(&op->op, STEP_END);
        }
}

static void unmounted(Child *child, const ChildResult *res, void *userdata) {
        CtrOp *op = userdata;

        op->op.child = NULL;
        if (res->exit_code != 0) {
                op_fail(&op->op, -EIO, "unmount the rootfs of container %s: %.*s", op->op.id, (int) res->err_len,
                        res->err ?: "");
                op_goto(&op->op, STEP_END);
                return;
        }
        op->c->rootfs_mounted = false;
        op_next(&op->op);
}

static void step_umount(CtrOp *op) {
        ChildSpec spec = {
                .setup = ctr_rootfs_umount_child,
                .timeout_usec = CTR_CHILD_TIMEOUT_USEC,
                .max_output = 16 * 1024,
        };
        int r = -ENOMEM;

        op->target = ctr_path(op->c, true, "rootfs");
        if (op->target) {
                spec.setup_userdata = op->target;
                r = child_spawn(op->c->table->env.loop, &spec, unmounted, op, &op->op.child);
        }
        if (r < 0) {
                op_fail(&op->op, r, "unmount the rootfs of container %s: %s", op->op.id, strerror(-r));
                op_goto(&op->op, STEP_END);
        }
}

/* A container's root directory, off the loop (see trash.h); where it cannot be renamed, deleted
 * here. */
static int trash_ctr(CtrTable *t, const char *root, const char *id) {
        _cleanup_free_ char *bin = NULL, *name = NULL;
        int r;

        if (asprintf(&bin, "%s/trash", t->env.root_dir) < 0 || asprintf(&name, "container-%s", id) < 0)
                return -ENOMEM;
        r = trash_tree(t->env.loop, bin, root, name);
        if (r < 0) {
                log_debug_errno(r, "container %s: cannot move %s to the trash, deleting it in place: %m", id, root);
                r = rm_rf(root);
        }
        return r;
}

static void step_delete(Op *o) {
        CtrOp *op = ctr_op(o);
        Container *c = op->c;
        char *run = ctr_run_dir(c), *root = ctr_root_dir(c);
        Image *img;
        int r = -ENOMEM;

        if (run && root) {
                /* The state directory's part is small (an empty mount point, the bundle); the
                 * root's holds the writable layer, which may be gigabytes: out of its place at once
                 * (the record with it), deleted by a child. */
                r = rm_rf(run);
                if (r >= 0)
                        r = trash_ctr(c->table, root, c->id);
        }
        if (r < 0)
                op_fail(&op->op, r, "delete %s: %s", run ?: "the container's state", strerror(-r));
        else {
                img = image_store_find(c->table->env.images, c->image_id);
                if (img && img->users > 0)
                        img->users--;
                CtrTable *t = c->table;
                char id[sizeof c->id], pod_id[sizeof c->pod_id];
                bool announced = !c->creating; /* one whose create never finished was never told of */

                memcpy(id, c->id, sizeof id);
                memcpy(pod_id, c->pod_id, sizeof pod_id);
                ctr_io_forget(c->id);
                fs_sync_request(t->sync);
                ctr_free(c);
                op->c = NULL;
                if (announced)
                        ctr_emit(t, CTR_EVENT_DELETED, id, pod_id);
        }
        free(run);
        free(root);
        op_goto(&op->op, STEP_END);
}

/* --- the machine --------------------------------------------------------------------------------- */

static void step_created(Op *o) {
        Container *c = ctr_op(o)->c;

        c->state = CTR_CREATED;
        c->creating = false;
        op_dirty(o);
        ctr_emit(c->table, CTR_EVENT_CREATED, c->id, c->pod_id);
        op_goto(o, STEP_END);
}

static void step_signal(Op *o) {
        CtrOp *op = ctr_op(o);

        if (op->timeout_usec == 0) {
                op_goto(o, STEP_KILL);
                return;
        }
        step_kill(op, "main", op->c->stop_signal);
}

static void step_wait_exit(Op *o) {
        CtrOp *op = ctr_op(o);
        wait_exit(op, op->timeout_usec);
}

static void step_kill_all(Op *o) {
        step_kill(ctr_op(o), "all", SIGKILL);
}

static void step_wait_killed(Op *o) {
        wait_exit(ctr_op(o), KILL_WAIT_USEC);
}

static void step_stopped(Op *o) {
        op_goto(o, STEP_END);
}

static void step_stop_unit(Op *o) {
        CtrOp *op = ctr_op(o);

        if (!op->c->unit_started) {
                op_goto(o, STEP_RM_RUNTIME);
                return;
        }
        step_unit_down(op, false);
}

static void step_reset_unit(Op *o) {
        CtrOp *op = ctr_op(o);

        op->c->unit_started = false;
        step_unit_down(op, true);
}

static void step_rm_runtime(Op *o) {
        CtrOp *op = ctr_op(o);

        if (!op->c->runtime_created) {
                op_next(o);
                return;
        }
        step_runtime_delete(op);
}

static void step_rm_umount(Op *o) {
        CtrOp *op = ctr_op(o);

        if (!op->c->rootfs_mounted) {
                op_next(o);
                return;
        }
        step_umount(op);
}

static const OpStep create_steps[STEP_END] = {
        [STEP_MOUNT] = { "mount", step_mount },
        [STEP_CONFIG] = { "config", step_config },
        [STEP_CREATED] = { "created", step_created },
        /* the rollback of a failed create */
        [STEP_RM_UMOUNT] = { "umount", step_rm_umount },
        [STEP_RM_DELETE] = { "delete", step_delete },
};

static const OpStep start_steps[STEP_END] = {
        [STEP_UNIT] = { "unit", step_unit },
        [STEP_STARTED] = { "started", step_started },
};

static const OpStep stop_steps[STEP_END] = {
        [STEP_SIGNAL] = { "signal", step_signal },
        [STEP_WAIT_EXIT] = { "wait-exit", step_wait_exit },
        [STEP_KILL] = { "kill", step_kill_all },
        [STEP_WAIT_KILLED] = { "wait-killed", step_wait_killed },
        [STEP_STOPPED] = { "stopped", step_stopped },
};

static const OpStep remove_steps[STEP_END] = {
        [STEP_RM_KILL] = { "kill", step_kill_all },
        [STEP_RM_WAIT] = { "wait-killed", step_wait_killed },
        [STEP_RM_STOP_UNIT] = { "stop-unit", step_stop_unit },
        [STEP_RM_RESET] = { "reset-unit", step_reset_unit },
        [STEP_RM_RUNTIME] = { "runtime-delete", step_rm_runtime },
        [STEP_RM_UMOUNT] = { "umount", step_rm_umount },
        [STEP_RM_DELETE] = { "delete", step_delete },
};

static const OpKind kinds[_OP_KIND_MAX] = {
        [OP_CREATE] = { .name = "create", .steps = create_steps, .n_steps = STEP_END,
                        .has_rollback = true, .rollback_step = STEP_RM_UMOUNT },
        [OP_START] = { .name = "start", .steps = start_steps, .n_steps = STEP_END },
        [OP_STOP] = { .name = "stop", .steps = stop_steps, .n_steps = STEP_END },
        [OP_REMOVE] = { .name = "remove", .steps = remove_steps, .n_steps = STEP_END },
};

const OpKind *ctr_op_kind(unsigned kind) {
        return kind < _OP_KIND_MAX ? &kinds[kind] : NULL;
}

/* --- entry points -------------------------------------------------------------------------------- */

static CtrOp *ctr_op_new(Container *c, CtrOpKind kind, CtrDone done, void *userdata) {
        CtrOp *op;

        assert(c);
        op = op_new(sizeof *op, &ctr_op_class, &kinds[kind], c->id);
        if (!op)
                return NULL;
        op->c = c;
        op->done = done;
        op->userdata = userdata;
        c->busy = true;
        c->op = op;
        return op;
}

int ctr_signal_from_string(const char *s) {
        char *end;
        long n;

        if (!s || !s[0])
                return -EINVAL;
        n = strtol(s, &end, 10);
        if (*end == '\0' && n > 0 && n <= SIGRTMAX)
                return (int) n;
        if (strncasecmp(s, "SIG", 3) == 0)
                s += 3;
        for (int sig = 1; sig < SIGRTMIN; sig++) {
                const char *abbrev = sigabbrev_np(sig);
                if (abbrev && strcasecmp(abbrev, s) == 0)
                        return sig;
        }
        if (strcasecmp(s, "IOT") == 0)
                return SIGABRT;
        if (strcasecmp(s, "CLD") == 0)
                return SIGCHLD;
        if (strcasecmp(s, "POLL") == 0)
                return SIGIO;
        /* RTMIN, RTMIN+3 (Docker), RTMINPLUS3 (the CRI's enum), RTMAX-2, RTMAXMINUS2. */
        if (strncasecmp(s, "RTMIN", 5) == 0 || strncasecmp(s, "RTMAX", 5) == 0) {
                bool max = strncasecmp(s, "RTMAX", 5) == 0;
                const char *rest = s + 5;
                long k = 0;
                if (*rest) {
                        if (*rest == '+' || *rest == '-')
                                rest++;
                        else if (strncasecmp(rest, "PLUS", 4) == 0 || strncasecmp(rest, "MINUS", 5) == 0)
                                rest += toupper(*rest) == 'P' ? 4 : 5;
                        else
                                return -EINVAL;
                        k = strtol(rest, &end, 10);
                        if (*end || k < 0 || k > SIGRTMAX - SIGRTMIN) /* no overflow below */
                                return -EINVAL;
                }
                n = max ? SIGRTMAX - k : SIGRTMIN + k;
                return n >= SIGRTMIN && n <= SIGRTMAX ? (int) n : -EINVAL;
        }
        return -EINVAL;
}

yajl_val ctr_image_config(ImageStore *s, const Image *image) {
        _cleanup_free_ char *path = image_config_path(s, image), *text = NULL;

        if (!path || read_file(path, 4 * 1024 * 1024, &text, NULL) < 0)
                return NULL;
        return json_parse(text, NULL, 0);
}

int ctr_image_stop_signal(yajl_val image_config) {
        int sig = SIGTERM;

        if (image_config)
                sig = ctr_signal_from_string(json_get_str(json_get(image_config, "config"), "StopSignal"));
        return sig > 0 ? sig : SIGTERM;
}

static Container *container_free(Container *c) {
        if (c)
                ctr_free(c);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Container *, container_free);

/* The container spec asks for, in pod, not linked yet. */
static int container_new(const CtrTable *t, const Pod *pod, const Image *image, const CtrSpec *spec,
                         yajl_val image_config, const void *config, size_t config_len, Container **ret) {
        _cleanup_(container_freep) Container *c = NULL;
        int r;

        assert(t && pod && image && spec && ret);
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        r = random_id(c->id);
        if (r < 0)
                return r;
        memcpy(c->pod_id, pod->id, sizeof c->pod_id);
        c->name = strdup(spec->name);
        c->attempt = spec->attempt;
        c->image_ref = strdup(spec->image_ref);
        c->image_id = strdup(image->id);
        c->labels = pairs_dup(spec->labels, spec->n_labels);
        c->n_labels = spec->n_labels;
        c->annotations = pairs_dup(spec->annotations, spec->n_annotations);
        c->n_annotations = spec->n_annotations;
        if (spec->log_path && spec->log_path[0] && pod->spec.log_directory && pod->spec.log_directory[0]) {
                if (asprintf(&c->log_path, "%s/%s", pod->spec.log_directory, spec->log_path) < 0)
                        c->log_path = NULL;
                c->log_dir = strdup(pod->spec.log_directory);
        } else {
                c->log_path = strdup("");
                c->log_dir = strdup("");
        }
        c->config = config_len ? malloc(config_len) : NULL;
        if (c->config) {
                memcpy(c->config, config, config_len);
                c->config_len = config_len;
        }
        /* kubelet's (the pod's lifecycle.stopSignal), else the image's StopSignal, else SIGTERM. */
        c->stop_signal = spec->stop_signal > 0 ? spec->stop_signal : ctr_image_stop_signal(image_config);
        c->tty = spec->tty;
        c->stdin_ = spec->stdin_;
        c->stdin_once = spec->stdin_once;
        c->cpu_shares = spec->cpu_shares;
        c->cpu_quota = spec->cpu_quota;
        c->cpu_period = spec->cpu_period;
        c->memory_limit = spec->memory_limit;
        c->memory_swap_limit = spec->memory_swap_limit;
        if (spec->cpuset_cpus && spec->cpuset_cpus[0] && !(c->cpuset_cpus = strdup(spec->cpuset_cpus)))
                return -ENOMEM;
        if (spec->cpuset_mems && spec->cpuset_mems[0] && !(c->cpuset_mems = strdup(spec->cpuset_mems)))
                return -ENOMEM;
        c->created_at_ns = now_ns();
        c->state = CTR_CREATED;
        c->creating = true;
        c->rootfs_mounted = true; /* about to be: a crash from here on unmounts */
        c->exit_code = 0;
        if (!c->name || !c->image_ref || !c->image_id || !c->labels || !c->annotations || !c->log_path ||
            !c->log_dir || (config_len && !c->config))
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static void remove_dirs(const Container *c) {
        _cleanup_free_ char *run = ctr_run_dir(c), *root = ctr_root_dir(c);

        if (run)
                (void) rm_rf(run);
        if (root)
                (void) rm_rf(root);
}

/* The runtime mounts the rootfs from inside the pod's user namespace, as the pod's root (on the
 * host an unprivileged user): the directory above the bundle must let it pass (search only), and
 * the bundle is its, 0700. No one else may reach the mounts in it: the rootfs, which keeps suid
 * (runc's bind of it would inherit nosuid), and the idmapped clones of the volumes. */
static int searchable_for_userns(const Container *c, const char *run) {
        const Pod *pod = pod_find(c->table->env.pods, c->pod_id);
        _cleanup_free_ char *parent = NULL;

        if (!pod || pod->spec.userns != POD_NS_POD)
                return 0;
        if (asprintf(&parent, "%s/containers", c->table->env.state_dir) < 0) {
                parent = NULL;
                return -ENOMEM;
        }
        if (chmod(parent, 0711) < 0 || chown(run, pod->spec.uids[0].host_id, pod->spec.gids[0].host_id) < 0 ||
            chmod(run, 0700) < 0)
                return -errno;
        return 0;
}

/* Its directories, its config and its first record; on failure, none of them. The root's directory
 * comes first: a daemon killed before the first record leaves that directory without a record,
 * which the next start deletes with the bundle (delete_orphan()); a bundle made first could be left
 * with nothing to find it by. */
static int container_make_state(Container *c, Error *error) {
        _cleanup_free_ char *run = ctr_run_dir(c), *root = ctr_root_dir(c), *cfg = ctr_path(c, false, "config.pb");
        int r;

        assert(c);
        if (!run || !root || !cfg)
                r = -ENOMEM;
        else if ((r = mkdir_p(root, 0700)) < 0 || (r = mkdir_p(run, 0700)) < 0 ||
                 (r = searchable_for_userns(c, run)) < 0 ||
                 (r = write_file_replace(cfg, c->config ?: "", c->config_len, 0600)) < 0 || (r = ctr_save(c)) < 0)
                error_errno(error, r, "container %s: cannot create its state in %s or %s", c->id, run, root);
        if (r < 0) {
                error_set(error, ERROR_SYSTEM, r, NULL);
                remove_dirs(c);
        }
        return r;
}

int ctr_create(CtrTable *t, Pod *pod, Image *image, CtrSpec *spec, const void *config, size_t config_len,
               CtrDone done, void *userdata, Error *error, CtrOp **ret_op) {
        _cleanup_(ctr_spec_done) CtrSpec owned = *spec;
        _cleanup_(yajl_tree_freep) yajl_val image_config = NULL;
        _cleanup_(container_freep) Container *c = NULL;
        const CtrHandler *handler;
        CtrOp *op;
        int r;

        assert(t && pod && image && spec);
        *spec = (CtrSpec) {}; /* taken over, also on failure */
        /* The pod's handler, as it is configured now (RunPodSandbox checked it then). */
        r = ctr_handler_get(t, pod->spec.runtime_handler, &handler, error);
        if (r < 0)
                return r;
        for (Container *o = t->containers; o; o = o->next)
                if (strcmp(o->pod_id, pod->id) == 0 && strcmp(o->name, owned.name) == 0 && o->attempt == owned.attempt)
                        return error_set(error, ERROR_EXISTS, EEXIST,
                                         "container %s (attempt %u) exists already in pod sandbox %s: %s",
                                         QUOTE(owned.name), owned.attempt, pod->id, o->id);

        /* Read and parsed once: for the stop signal here, for the OCI config at STEP_CONFIG. */
        image_config = ctr_image_config(t->env.images, image);
        r = container_new(t, pod, image, &owned, image_config, config, config_len, &c);
        if (r >= 0)
                r = ctr_take_handler(c, handler);
        if (r < 0)
                return error_set(error, ERROR_SYSTEM, r, NULL);
        ctr_link(t, c);
        r = container_make_state(c, error);
        if (r < 0)
                return r;
        op = ctr_op_new(c, OP_CREATE, done, userdata);
        if (!op) {
                remove_dirs(c);
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        }
        op->spec = owned;
        owned = (CtrSpec) {};
        op->image = image;
        op->image_config = TAKE_PTR(image_config);
        image->users++;
        log_info("container %s: creating '%s' of pod %s from %s.", c->id, c->name, c->pod_id, c->image_ref);
        if (ret_op)
                *ret_op = op;
        c = NULL; /* the operation's now */
        op_start(&op->op, STEP_MOUNT);
        return 0;
}

/* A container busy with another operation: the caller may try again. */
static int busy(const Container *c, Error *error) {
        return error_set(error, ERROR_CONFLICT, EBUSY, "container %s is busy with another operation; try again", c->id);
}

int ctr_start(Container *c, CtrDone done, void *userdata, Error *error, CtrOp **ret_op) {
        CtrOp *op;

        assert(c);
        if (c->busy)
                return busy(c, error);
        if (c->removing)
                return error_set(error, ERROR_WRONG_STATE, 0, "container %s is being removed: it cannot start", c->id);
        if (c->state != CTR_CREATED || c->unit_started)
                return error_set(error, ERROR_WRONG_STATE, 0, "container %s is %s, not created: it can start only once",
                                 c->id, ctr_state_to_string(c->state));
        op = ctr_op_new(c, OP_START, done, userdata);
        if (!op)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        if (ret_op)
                *ret_op = op;
        op_start(&op->op, STEP_UNIT);
        return 0;
}

int ctr_stop(Container *c, int64_t timeout_sec, CtrDone done, void *userdata, Error *error, CtrOp **ret_op) {
        CtrOp *op;

        assert(c);
        if (c->busy)
                return busy(c, error);
        op = ctr_op_new(c, OP_STOP, done, userdata);
        if (!op)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        if (ret_op)
                *ret_op = op;
        /* The CRI's seconds, at most a year (a bigger value would overflow the usec). */
        op->timeout_usec = timeout_sec > 0 ? (uint64_t) MIN(timeout_sec, (int64_t) 365 * 24 * 3600) * USEC_PER_SEC : 0;
        op_start(&op->op, c->state == CTR_RUNNING ? STEP_SIGNAL : STEP_END); /* idempotent */
        return 0;
}

int ctr_remove(Container *c, CtrDone done, void *userdata, Error *error, CtrOp **ret_op) {
        CtrOp *op;

        assert(c);
        if (c->busy)
                return busy(c, error);
        op = ctr_op_new(c, OP_REMOVE, done, userdata);
        if (!op)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        if (ret_op)
                *ret_op = op;
        /* Saved before the first step undoes anything: a removal cut short by a crash is finished
         * at the next start, and never taken for a container that may still start (its rootfs may
         * be unmounted already). */
        if (!c->removing) {
                c->removing = true;
                op_dirty(&op->op);
        }
        op_start(&op->op, STEP_RM_KILL);
        return 0;
}

int ctr_reopen_log(Container *c, Error *error) {
        int r;

        assert(c);
        if (c->state != CTR_RUNNING)
                return error_set(error, ERROR_WRONG_STATE, 0, "container %s is not running", c->id);
        if (!c->io) /* a restart outside systemd (no fd store) lost its pipes */
                return error_set(error, ERROR_WRONG_STATE, 0,
                                 "container %s: its output was lost when rktlet restarted without systemd's fd store",
                                 c->id);
        r = ctr_io_reopen(c->io);
        if (r == -ELOOP || r == -EXDEV)
                return error_set(error, ERROR_WRONG_STATE, -r,
                                 "container %s: log_path %s goes through a symlink or out of the pod's log directory: "
                                 "rktlet follows none there",
                                 c->id, QUOTE(c->log_path));
        if (r < 0)
                return error_set(error, ERROR_INTERNAL, r, "container %s: reopen %s: %s", c->id, QUOTE(c->log_path),
                                 strerror(-r));
        return 0;
}

void ctr_table_watch_missing(CtrTable *t) {
        /* Containers loaded while systemd was unreachable have no watch yet. */
        for (Container *c = t->containers; c; c = c->next) {
                if (c->watch || !c->unit_started)
                        continue;
                if (watch(c) >= 0)
                        systemd_watch_refresh(c->watch);
                else
                        log_warning("container %s: cannot watch its unit yet.", c->id);
        }
}

/* A directory of <root>/containers without a record: the record is written (atomically) right
 * after the directories are made, before the overlay is mounted, so this is a create killed before
 * its first save, or a removal that failed half way through deleting the directory (after the
 * unmount). Nothing refers to its upper directory and nothing else would ever delete it. */
/* The writable layer goes through the trash (a child deletes it), the bundle at once (a tmpfs). */
static int delete_orphan(const char *root, const char *run, const char *id, void *userdata) {
        int r = trash_ctr(userdata, root, id);
        return r < 0 ? r : rm_rf(run);
}

static void gc_orphan(const char *id, void *userdata) {
        CtrTable *t = userdata;
        record_delete_orphan("container", "containers", t->env.root_dir, t->env.state_dir, id, delete_orphan, t);
}

static int load_record(const char *id, void *userdata, void **ret) {
        Container *c = NULL;
        int r = ctr_load(userdata, id, &c);

        if (r >= 0)
                *ret = c;
        return r;
}

/* A container read back: linked, its image held, its unit watched; what it was doing finished. */
static void recovered(void *record, void *userdata) {
        CtrTable *t = userdata;
        Container *c = record;
        Image *img;
        int r;

        ctr_link(t, c);
        ctr_exec_cleanup(c);
        img = image_store_find(t->env.images, c->image_id);
        if (img)
                img->users++;
        if (c->creating) {
                log_notice("container %s: was being created when rktlet stopped; cleaning it up.", c->id);
                (void) ctr_remove(c, NULL, NULL, NULL, NULL);
                return;
        }
        if (c->unit_started) {
                if (c->state == CTR_RUNNING || c->state == CTR_CREATED)
                        (void) ctr_io_adopt(t->env.loop, t->env.stored, c->id, c->log_dir, ctr_log_relative(c), c->tty,
                                           c->stdin_, &c->io);
                if (c->state != CTR_EXITED) {
                        c->unconfirmed = true;
                        t->n_unconfirmed++;
                }
                r = watch(c);
                if (r < 0)
                        log_warning_errno(r, "container %s: cannot watch its unit: %m", c->id);
                else if (c->state != CTR_EXITED)
                        systemd_watch_refresh(c->watch);
        }
        log_debug("container %s: recovered (%s%s).", c->id, ctr_state_to_string(c->state),
                  c->removing ? ", being removed" : "");
        if (c->removing) {
                /* The watch is in place: the removal's kill and wait see the unit as any other.
                 * Unconfirmed until it ends (at most the manager's recovery wait): clients are
                 * served once it is gone, or (if it failed) see it UNKNOWN, never as a container
                 * that may start. */
                log_notice("container %s: was being removed when rktlet stopped; finishing the removal.", c->id);
                if (!c->unconfirmed) {
                        c->unconfirmed = true;
                        t->n_unconfirmed++;
                }
                r = ctr_remove(c, NULL, NULL, NULL, NULL);
                if (r < 0) {
                        log_warning_errno(r, "container %s: cannot finish its removal: %m", c->id);
                        ctr_confirmed(c);
                }
        }
}

static const RecordType container_records = {
        .noun = "container",
        .load = load_record,
        .orphan = gc_orphan,
        .recovered = recovered,
};

int ctr_table_load(CtrTable *t) {
        _cleanup_free_ char *bin = NULL, *dir = NULL;

        assert(t);
        ctr_handlers_probe(t);
        /* What removals cut short by a crash left to delete. */
        if (asprintf(&bin, "%s/trash", t->env.root_dir) >= 0)
                trash_empty(t->env.loop, bin);
        else
                bin = NULL;

        if (asprintf(&dir, "%s/containers", t->env.root_dir) < 0) {
                dir = NULL;
                return -ENOMEM;
        }
        return record_load_all(dir, &container_records, t);
}
