/* Sandboxes: a pod and its containers, above pod/ and ctr/. */
#include "sandbox.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cni.h"
#include "fd-util.h"
#include "macro.h"
#include "strv.h"
#include "log.h"
#include "systemd-manager.h"

bool sandbox_network_ready(PodTable *pods, const PodSpec *spec, Error *error) {
        const char *why = NULL;

        assert(pods);
        assert(spec);
        if (spec->network != POD_NS_POD || cni_ready(pods->env.cni, NULL, &why))
                return true;
        (void) error_set(error, ERROR_WRONG_STATE, 0, "network is not ready: %s", why ?: "CNI is not set up");
        return false;
}

bool sandbox_takes_containers(const Pod *pod) {
        assert(pod);
        return pod_state(pod) == POD_READY;
}

PodNsMode sandbox_container_pid(const Pod *pod, PodNsMode pid) {
        assert(pod);
        if (pid == _POD_NS_UNSET) /* no namespace options: the pod's */
                pid = pod->spec.pid == POD_NS_POD    ? POD_NS_POD
                      : pod->spec.pid == POD_NS_NODE ? POD_NS_NODE
                                                     : POD_NS_CONTAINER;
        if (pid == POD_NS_POD && pod->spec.pid != POD_NS_POD)
                pid = POD_NS_CONTAINER; /* the pod has no PID namespace to share */
        return pid;
}

int sandbox_create_container(CtrTable *t, Pod *pod, Image *image, CtrSpec *spec, const void *config,
                             size_t config_len, CtrDone done, void *userdata, Error *error, CtrOp **ret_op) {
        assert(t);
        assert(pod);
        assert(spec);
        if (!sandbox_takes_containers(pod)) {
                ctr_spec_done(spec); /* taken over, as ctr_create() does */
                return error_set(error, ERROR_WRONG_STATE, 0, "pod sandbox %s is not ready", pod->id);
        }
        spec->pid = sandbox_container_pid(pod, spec->pid);
        return ctr_create(t, pod, image, spec, config, config_len, done, userdata, error, ret_op);
}

Container *sandbox_busy_container(CtrTable *t, const Pod *pod) {
        assert(t);
        assert(pod);
        for (Container *c = t->containers; c; c = c->next)
                if (strcmp(c->pod_id, pod->id) == 0 && c->busy)
                        return c;
        return NULL;
}

/* --- Stop and remove ------------------------------------------------------------------------------ */

/* The kill comes first so that no container's stop or removal waits on a process that ignores
 * SIGTERM (a container rktlet believes has exited, a process it never knew of) for its unit's
 * TimeoutStopSec=; the containers would get SIGKILL from their stop anyway (no grace period here). */

struct SandboxOp {
        unsigned n_ref; /* the operation's while it runs; entry points hold one more while they call down */
        CtrTable *containers;
        PodTable *pods;
        char id[65];
        bool remove;
        SandboxStep step;
        PodOp *pod_op;      /* the kill or the teardown in flight, once its entry point returned */
        unsigned sweeping;  /* containers still being stopped or removed, plus one while starting them */
        Error sweep_error;  /* the first container's failure */
        bool finished;
        SandboxDone done; /* NULL once detached */
        void *userdata;
};

static SandboxOp *op_ref(SandboxOp *op) {
        op->n_ref++;
        return op;
}

static void op_unref(SandboxOp *op) {
        if (--op->n_ref > 0)
                return;
        error_done(&op->sweep_error);
        free(op);
}

/* Answers (unless detached) and drops the operation's reference. */
static void op_finish(SandboxOp *op, SandboxStep step, const Error *error) {
        SandboxDone done = op->done;

        op->finished = true;
        op->pod_op = NULL;
        op->done = NULL;
        if (done)
                done(error_is_set(error) ? error : NULL, step, op->userdata);
        op_unref(op);
}

static void teardown_done(Pod *pod, const Error *error, void *userdata) {
        op_finish(userdata, SANDBOX_STEP_POD, error);
}

/* The pod's own teardown, once its containers are stopped or removed. */
static void sweep_end(SandboxOp *op) {
        Error error = ERROR_INIT;
        PodOp *pod_op = NULL;
        Pod *pod;
        int r;

        if (error_is_set(&op->sweep_error)) {
                op_finish(op, SANDBOX_STEP_CONTAINERS, &op->sweep_error);
                return;
        }
        pod = pod_find(op->pods, op->id);
        if (!pod) {
                /* Gone meanwhile (another call removed it): nothing left to reclaim, as at the start. */
                op_finish(op, SANDBOX_STEP_POD, NULL);
                return;
        }
        op->step = SANDBOX_STEP_POD;
        /* teardown_done() may run before the call returns, and drop the operation's reference. */
        op_ref(op);
        r = op->remove ? pod_remove(pod, teardown_done, op, &error, &pod_op)
                       : pod_stop(pod, teardown_done, op, &error, &pod_op);
        if (r < 0)
                op_finish(op, SANDBOX_STEP_POD, &error);
        else if (!op->finished)
                op->pod_op = pod_op;
        error_done(&error);
        op_unref(op);
}

static void container_swept(Container *c, const Error *error, void *userdata) {
        SandboxOp *op = userdata;

        /* The first failure is reported; whatever the container's was, the pod's stop or removal
         * failed inside rktlet: ERROR_INTERNAL. */
        if (error_is_set(error) && !error_is_set(&op->sweep_error)) {
                if (error_copy(&op->sweep_error, error) < 0)
                        (void) error_set(&op->sweep_error, ERROR_INTERNAL, ENOMEM, NULL);
                op->sweep_error.kind = ERROR_INTERNAL;
        }
        if (--op->sweeping == 0)
                sweep_end(op);
}

static void pod_killed(Pod *pod, const Error *error, void *userdata) {
        SandboxOp *op = userdata;
        Error e = ERROR_INIT;
        int r;

        op->pod_op = NULL;
        if (error_is_set(error)) {
                op_finish(op, SANDBOX_STEP_KILL, error);
                return;
        }
        /* The pod's containers: stopped (killed, as containerd does) or removed. The loop holds a
         * count of its own, for a container whose done() runs before its stop or remove returns. */
        op->step = SANDBOX_STEP_CONTAINERS;
        op->sweeping = 1;
        for (Container *c = op->containers->containers, *next; c; c = next) {
                next = c->next;
                if (strcmp(c->pod_id, pod->id) != 0 || (!op->remove && c->state != CTR_RUNNING))
                        continue;
                op->sweeping++;
                r = op->remove ? ctr_remove(c, container_swept, op, &e, NULL)
                               : ctr_stop(c, 0, container_swept, op, &e, NULL);
                if (r < 0) {
                        error_done(&e);
                        (void) error_set(&e, ERROR_INTERNAL, -r, "a container of the pod is busy");
                        container_swept(NULL, &e, op);
                        error_done(&e);
                }
        }
        container_swept(NULL, NULL, op);
}

static int stop_or_remove(CtrTable *t, Pod *pod, bool remove, SandboxDone done, void *userdata, Error *error,
                          SandboxOp **ret_op) {
        PodOp *pod_op = NULL;
        SandboxOp *op;
        Container *busy;
        int r;

        assert(t);
        assert(pod);
        assert(ret_op);
        busy = sandbox_busy_container(t, pod);
        if (busy)
                return error_set(error, ERROR_CONFLICT, EBUSY,
                                 "container %s of pod sandbox %s is busy with another operation; try again", busy->id,
                                 pod->id);
        op = calloc(1, sizeof *op);
        if (!op)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        *op = (SandboxOp) {
                .n_ref = 2, /* the operation's, and ours until pod_kill() returned */
                .containers = t,
                .pods = pod->table,
                .remove = remove,
                .step = SANDBOX_STEP_KILL,
                .done = done,
                .userdata = userdata,
        };
        strcpy(op->id, pod->id);

        /* pod_killed(), and with it all that follows to done(), may run inside pod_kill(). */
        r = pod_kill(pod, pod_killed, op, error, &pod_op);
        if (r < 0) {
                free(op);
                return r;
        }
        if (op->step == SANDBOX_STEP_KILL)
                op->pod_op = pod_op;
        *ret_op = op->finished ? NULL : op;
        op_unref(op);
        return 0;
}

int sandbox_stop(CtrTable *t, Pod *pod, SandboxDone done, void *userdata, Error *error, SandboxOp **ret_op) {
        return stop_or_remove(t, pod, false, done, userdata, error, ret_op);
}

int sandbox_remove(CtrTable *t, Pod *pod, SandboxDone done, void *userdata, Error *error, SandboxOp **ret_op) {
        return stop_or_remove(t, pod, true, done, userdata, error, ret_op);
}

void sandbox_op_detach(SandboxOp *op) {
        if (!op || op->finished)
                return;
        op->done = NULL;
        if (op->step == SANDBOX_STEP_CONTAINERS)
                return; /* the last container's done() goes on to the pod's teardown */
        /* The kill or the teardown completes on its own; after a kill nothing follows. */
        pod_op_detach(op->pod_op);
        op->pod_op = NULL;
        op->finished = true;
        op_unref(op);
}

/* --- stats --------------------------------------------------------------------------------------- */

void sandbox_pod_stats(CtrTable *t, Pod *pod, StatsRead what, SandboxPodStats *ret) {
        const char *root = t->env.cgroup_root(t->env.userdata);
        SandboxPodStats s = {};

        if (pod_state(pod) == POD_READY) {
                _cleanup_free_ char *slice = root ? systemd_slice_path(pod->slice) : NULL, *path = NULL;
                if (slice && asprintf(&path, "%s%s", root, slice) < 0)
                        path = NULL;
                s.has_cgroup = path && stats_cgroup_read(path, what | STATS_READ_PIDS, &s.cgroup) >= 0;
                if (s.has_cgroup && s.cgroup.has_cpu)
                        s.has_nano_cores = stats_rate_update(&pod->cpu_rate, s.cgroup.cpu_usage_ns, s.cgroup.monotonic_ns,
                                                             &s.nano_cores);
                if (pod->spec.network != POD_NS_NODE) {
                        _cleanup_free_ char *ns = pod_ns_path(pod, "net");
                        int r = ns ? stats_net_read(ns, &s.net) : -ENOMEM;
                        s.has_net = r >= 0;
                        if (r < 0)
                                log_debug_errno(r, "Failed to read the interfaces of pod %s: %m", pod->id);
                }
        }
        *ret = s;
}

void sandbox_pod_stats_done(SandboxPodStats *s) {
        stats_net_done(&s->net);
}
