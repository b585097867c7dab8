/* Running, stopping and removing pods: asynchronous step machines over systemd jobs, namespace
 * children and CNI chains. A step's completion persists what now exists, so that stop, remove
 * and a restarted daemon always know what to undo. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "fd-util.h"
#include "log.h"
#include "macro.h"
#include "op.h"
#include "quote.h"
#include "record.h"
#include "pod-internal.h"

#define SYSTEMD_TIMEOUT_USEC (90ULL * 1000 * 1000)
#define CHILD_TIMEOUT_USEC (30ULL * 1000 * 1000)

typedef enum PodOpKind { OP_RUN, OP_STOP, OP_REMOVE, OP_KILL, _OP_KIND_MAX } PodOpKind;

typedef enum Step {
        STEP_SLICE,
        STEP_NS,
        STEP_INIT,
        STEP_CNI,
        STEP_FILES,
        STEP_READY,
        /* teardown */
        STEP_LEFTOVERS, /* only for a pod a killed daemon was making: its CNI plugins still running */
        STEP_KILL,      /* SIGKILL to what still runs in the pod; all a pod_kill() does */
        STEP_STOP_INIT,
        STEP_STOP_SLICE,
        STEP_CNI_DEL,
        STEP_NS_DOWN,
        STEP_STOPPED,
        STEP_DELETE,
        STEP_END,
} Step;

/* The generic machine (op.h) and what a pod's operations need beside it. A failed run rolls back:
 * tears down and deletes, then reports the run's error. */
struct PodOp {
        Op op;
        Pod *pod; /* NULL once a removal freed it */
        PodDone done;
        void *userdata;
        SystemdOp *sd;
        CniOp *cni;
};

static const OpKind kinds[_OP_KIND_MAX];

/* A failed teardown step ends the operation (what is left stays for a retry); a failed run step
 * goes on, into the rollback. */
static void op_goto_or_next(PodOp *op, bool end) {
        if (end)
                op_goto(&op->op, STEP_END);
        else
                op_next(&op->op);
}

static PodOp *pod_op(Op *o) {
        return container_of(o, PodOp, op);
}

/* --- the operation's class (op.h) ------------------------------------------------------------------ */

static void op_unlink(Op *o, bool aborted) {
        Pod *pod = pod_op(o)->pod;

        if (pod) {
                pod->busy = false;
                pod->op = NULL;
        }
}

static void op_notify(Op *o, const Error *error) {
        PodOp *op = pod_op(o);
        if (op->done)
                op->done(op->pod, error, op->userdata);
}

static void op_cancel(Op *o) {
        PodOp *op = pod_op(o);

        systemd_op_cancel(TAKE_PTR(op->sd));
        cni_op_cancel(TAKE_PTR(op->cni));
}

static int op_save_record(Op *o) {
        PodOp *op = pod_op(o);
        return op->pod ? pod_save(op->pod) : 0;
}

static void op_free(Op *o) {
        free(pod_op(o));
}

/* A failed run is no longer on its way to ready. */
static void op_rolling_back(Op *o) {
        pod_op(o)->pod->state = POD_NOTREADY;
}

static const OpClass pod_op_class = {
        .noun = "pod",
        .id_field = "POD_SANDBOX_ID",
        .unlink = op_unlink,
        .notify = op_notify,
        .cancel = op_cancel,
        .save = op_save_record,
        .free = op_free,
        .rolling_back = op_rolling_back,
};

/* The daemon is going away: drop everything in flight without callbacks. What was done is on disk;
 * the next start finishes or undoes it. */
void pod_op_abort(PodOp *op) {
        assert(op);
        op_abort(&op->op);
}

void pod_op_detach(PodOp *op) {
        if (op)
                op_detach(&op->op);
}

/* Whether a systemd op failed with one of the D-Bus errors names: its message is "<unit>: <D-Bus
 * error name>: <text>" (see call_reply() in systemd-unit.c). */
static bool systemd_error_is_one_of(const Error *error, const char *const *names, size_t n) {
        if (!error_is_set(error) || error->errno_value != EIO || !error->message)
                return false;
        for (size_t i = 0; i < n; i++) {
                const char *p = strstr(error->message, names[i]);
                if (p && p > error->message && p[-1] == ' ' && p[strlen(names[i])] == ':')
                        return true;
        }
        return false;
}

/* Refusals systemd makes of a stop, and would make again however often asked: a unit nobody may
 * stop by request (the root slice, a perpetual unit; RefuseManualStop=), or a name systemd does not
 * take (a record of an older rktlet). What systemd refuses to stop is not rktlet's to stop: the
 * teardown forgets it and goes on, or the pod could never be removed. */
static bool stop_refused_for_good(const Error *error) {
        static const char *const names[] = {
                "org.freedesktop.systemd1.JobTypeNotApplicable",
                "org.freedesktop.systemd1.OnlyByDependency",
                "org.freedesktop.DBus.Error.InvalidArgs",
        };

        return systemd_error_is_one_of(error, names, ELEMENTSOF(names));
}

static void log_forgotten(const PodOp *op, const char *unit, const char *message) {
        char id_field[sizeof("POD_SANDBOX_ID=") + 64], unit_field[sizeof("RKTLET_UNIT=") + 256];
        const char *fields[] = { id_field, unit_field, NULL };

        snprintf(id_field, sizeof id_field, "POD_SANDBOX_ID=%s", op->op.id);
        snprintf(unit_field, sizeof unit_field, "RKTLET_UNIT=%s", unit);
        log_fields(LOG_WARNING, fields, "pod %s: systemd refuses to stop %s, so it is not rktlet's to stop: forgetting it (%s)",
                   op->op.id, unit, message);
}

/* --- steps --------------------------------------------------------------------------------------- */

static int slice_properties(sd_bus_message *m, void *userdata) {
        const Pod *pod = userdata;
        char description[512];

        snprintf(description, sizeof description, "rktlet pod %s/%s (%.12s)", pod->spec.namespace, pod->spec.name,
                 pod->id);
        return sd_bus_message_append(m, "(sv)", "Description", "s", description);
}

static void slice_started(const Error *error, void *userdata) {
        PodOp *op = userdata;
        Pod *pod = op->pod;

        op->sd = NULL;
        if (error_is_set(error) && error->errno_value == EEXIST) {
                /* kubelet made the pod's slice itself: use it, leave it to kubelet. The record said
                 * so from the first save (a slice rktlet did not name could be kubelet's). */
                pod->slice_started = true;
                if (pod->slice_owned) {
                        pod->slice_owned = false;
                        op_dirty(&op->op);
                }
        } else if (error_is_set(error)) {
                pod->slice_started = false;
                op_fail_wrap(&op->op, error, "start slice %s", pod->slice);
        } else {
                pod->slice_started = true;
                if (!pod->slice_owned) {
                        /* The slice the request named did not exist: rktlet made it, and stops it. */
                        pod->slice_owned = true;
                        op_dirty(&op->op);
                }
        }
        op_next(&op->op);
}

static int init_properties(sd_bus_message *m, void *userdata) {
        const Pod *pod = userdata;
        char description[512], *run = pod_run_dir(pod), *pidfile = NULL, *pin = pod_ns_path(pod, "pid");
        char *net = pod_ns_path(pod, "net"), *ipc = pod_ns_path(pod, "ipc"), *uts = pod_ns_path(pod, "uts");
        char *user = pod_ns_path(pod, "user"), *root = NULL;
        const char *path = pod->table->env.pod_init;
        int r = -ENOMEM;

        if (!run || !pin || asprintf(&pidfile, "%s/init.pid", run) < 0) {
                pidfile = NULL;
                goto out;
        }
        if (user && asprintf(&root, "%s/init-root", run) < 0) {
                root = NULL;
                goto out;
        }
        snprintf(description, sizeof description, "rktlet pod %s/%s (%.12s): PID 1 of its PID namespace",
                 pod->spec.namespace, pod->spec.name, pod->id);
        r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)", "Description", "s", description, "Slice", "s",
                                  pod->slice, "Type", "s", "forking", "PIDFile", "s", pidfile, "CollectMode", "s",
                                  "inactive-or-failed", "TimeoutStartUSec", "t", (uint64_t) 10 * 1000 * 1000);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "ExecStart");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", path);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "s");
        if (r >= 0)
                r = sd_bus_message_append(m, "sssss", path, "--pidfile", pidfile, "--pin", pin);
        if (r >= 0 && net)
                r = sd_bus_message_append(m, "ss", "--net", net);
        if (r >= 0 && ipc)
                r = sd_bus_message_append(m, "ss", "--ipc", ipc);
        if (r >= 0 && uts)
                r = sd_bus_message_append(m, "ss", "--uts", uts);
        if (r >= 0 && user)
                r = sd_bus_message_append(m, "ssss", "--user", user, "--root", root);
        for (int i = 0; r >= 0 && i < 6; i++) /* as, then b, then sasb, a(sasb), v, sv */
                r = i == 1 ? sd_bus_message_append(m, "b", 0) : sd_bus_message_close_container(m);
out:
        free(run);
        free(pidfile);
        free(pin);
        free(net);
        free(ipc);
        free(uts);
        free(user);
        free(root);
        return r;
}

static void init_started(const Error *error, void *userdata) {
        PodOp *op = userdata;

        op->sd = NULL;
        if (error_is_set(error))
                op_fail_wrap(&op->op, error, "start the pod's init service");
        op_next(&op->op);
}

static void init_stopped(const Error *error, void *userdata) {
        PodOp *op = userdata;

        op->sd = NULL;
        if (error_is_set(error) && error->errno_value != ENOENT) {
                _cleanup_free_ char *unit = NULL;

                if (!stop_refused_for_good(error)) {
                        op_fail_wrap(&op->op, error, "stop the pod's init service");
                        op_goto(&op->op, STEP_END);
                        return;
                }
                unit = pod_init_unit(op->pod);
                log_forgotten(op, unit ?: "the pod's init service", error_text(error));
        }
        op->pod->init_started = false;
        op_next(&op->op);
}

static void killed(const Error *error, void *userdata) {
        static const char *const nothing_to_kill[] = {
                "org.freedesktop.systemd1.NoSuchProcess",   /* no process left (newer systemd says so) */
                "org.freedesktop.DBus.Error.InvalidArgs",  /* a name systemd does not take: the stop forgets it */
        };
        PodOp *op = userdata;

        op->sd = NULL;
        if (error_is_set(error) && error->errno_value != ENOENT &&
            !systemd_error_is_one_of(error, nothing_to_kill, ELEMENTSOF(nothing_to_kill))) {
                /* Stopping what may still run could wait out its TimeoutStopSec=: leave it to a
                 * retry (kubelet's), which kills first again. */
                op_fail_wrap(&op->op, error, "kill what runs in the pod");
                op_goto(&op->op, STEP_END);
                return;
        }
        op_next(&op->op);
}

static void slice_stopped(const Error *error, void *userdata) {
        PodOp *op = userdata;

        op->sd = NULL;
        if (error_is_set(error) && error->errno_value != ENOENT) {
                if (!stop_refused_for_good(error)) {
                        op_fail_wrap(&op->op, error, "stop slice %s", op->pod->slice);
                        op_goto(&op->op, STEP_END); /* keep what is left for a retry */
                        return;
                }
                log_forgotten(op, op->pod->slice, error_text(error));
        }
        op->pod->slice_started = false;
        op_next(&op->op);
}

static char *child_message(const ChildResult *res) {
        char *m = NULL;
        size_t n = res->err_len;

        while (n > 0 && (res->err[n - 1] == '\n' || res->err[n - 1] == ' '))
                n--;
        if (res->timed_out)
                m = strdup("timed out");
        else if (n > 0)
                m = strndup(res->err, n);
        else if (asprintf(&m, "exit status %d", res->exit_code) < 0)
                m = NULL;
        return m;
}

static void ns_created(Child *child, const ChildResult *res, void *userdata) {
        PodOp *op = userdata;

        op->op.child = NULL;
        if (res->exit_code != 0) {
                char *m = child_message(res);
                op_fail(&op->op, -EIO, "create namespaces: %s", m ?: "failed");
                free(m);
        }
        op_next(&op->op);
}

static void ns_removed(Child *child, const ChildResult *res, void *userdata) {
        PodOp *op = userdata;

        op->op.child = NULL;
        if (res->exit_code != 0) {
                char *m = child_message(res);
                op_fail(&op->op, -EIO, "remove namespaces: %s", m ?: "failed");
                free(m);
                op_goto(&op->op, STEP_END);
                return;
        }
        op->pod->ns_created = false;
        op_next(&op->op);
}

static void leftovers_done(Child *child, const ChildResult *res, void *userdata) {
        PodOp *op = userdata;

        op->op.child = NULL;
        if (res->exit_code != 0) {
                /* Undo what can be undone all the same: the removal must finish. */
                _cleanup_free_ char *m = child_message(res);
                log_warning("pod %s: the CNI plugins rktlet had started for it before it stopped: %s", op->op.id,
                            m ?: "failed");
        }
        op_next(&op->op);
}

static void cni_pod(const Pod *pod, CniPod *ret, CniPortMapping *ports, char *netns) {
        for (size_t i = 0; i < pod->spec.n_ports; i++)
                ports[i] = (CniPortMapping) {
                        .protocol = pod->spec.ports[i].protocol,
                        .host_port = pod->spec.ports[i].host_port,
                        .container_port = pod->spec.ports[i].container_port,
                        .host_ip = pod->spec.ports[i].host_ip,
                };
        *ret = (CniPod) {
                .id = pod->id,
                .netns = netns,
                .name = pod->spec.name,
                .namespace = pod->spec.namespace,
                .uid = pod->spec.uid,
                .ports = ports,
        };
        /* Only mappings with a host port go to the portmap plugin. */
        size_t k = 0;
        for (size_t i = 0; i < pod->spec.n_ports; i++)
                if (ports[i].host_port > 0)
                        ports[k++] = ports[i];
        ret->n_ports = k;
}

static void cni_added(const Error *error, const char *result, const char *network, void *userdata) {
        PodOp *op = userdata;
        Pod *pod = op->pod;

        op->cni = NULL;
        free(pod->cni_network);
        pod->cni_network = network ? strdup(network) : NULL;
        if (error_is_set(error)) {
                op_fail_error(&op->op, error);
        } else {
                free(pod->cni_result);
                pod->cni_result = result ? strdup(result) : NULL;
                strv_free(pod->ips);
                pod->ips = NULL;
                pod->n_ips = 0;
                if (result && cni_result_ips(result, &pod->ips, &pod->n_ips) < 0)
                        log_warning("pod %s: cannot read the IPs of the CNI result", pod->id);
        }
        op_next(&op->op);
}

static void cni_deleted(const Error *error, const char *result, const char *network, void *userdata) {
        PodOp *op = userdata;
        Pod *pod = op->pod;

        op->cni = NULL;
        if (error_is_set(error)) {
                op_fail_error(&op->op, error);
                op_goto(&op->op, STEP_END);
                return;
        } else {
                pod->cni_added = false;
                strv_free(pod->ips);
                pod->ips = NULL;
                pod->n_ips = 0;
        }
        op_next(&op->op);
}

static void step_slice(PodOp *op) {
        PodEnv *env = &op->pod->table->env;
        SystemdClient *sd = env->systemd(env->userdata);
        int r;

        if (!sd) {
                op_fail_kind(&op->op, ERROR_UNAVAILABLE, -ENOTCONN, "start slice %s: systemd is unreachable",
                             op->pod->slice);
                op_next(&op->op);
                return;
        }
        r = systemd_start_transient_unit(sd, op->pod->slice, slice_properties, op->pod, SYSTEMD_TIMEOUT_USEC,
                                         slice_started, op, &op->sd);
        if (r < 0) {
                op->pod->slice_started = false;
                op_fail(&op->op, r, "start slice %s: %s", op->pod->slice, strerror(-r));
                op_next(&op->op);
        }
}

static void step_init(PodOp *op, bool start) {
        PodEnv *env = &op->pod->table->env;
        SystemdClient *sd = env->systemd(env->userdata);
        char *unit = pod_init_unit(op->pod);
        int r;

        if (!sd || !unit) {
                op_fail_kind(&op->op, ERROR_UNAVAILABLE, -ENOTCONN, "%s the pod's init service: systemd is unreachable",
                             start ? "start" : "stop");
                free(unit);
                op_goto_or_next(op, !start);
                return;
        }
        if (start) {
                r = systemd_start_transient_unit(sd, unit, init_properties, op->pod, SYSTEMD_TIMEOUT_USEC, init_started,
                                                 op, &op->sd);
        } else
                r = systemd_stop_unit(sd, unit, SYSTEMD_TIMEOUT_USEC, init_stopped, op, &op->sd);
        free(unit);
        if (r < 0) {
                op_fail(&op->op, r, "%s the pod's init service: %s", start ? "start" : "stop", strerror(-r));
                op_goto_or_next(op, !start);
        }
}

static void step_stop_slice(PodOp *op) {
        PodEnv *env = &op->pod->table->env;
        SystemdClient *sd;
        int r;

        if (!op->pod->slice_started || !op->pod->slice_owned) {
                op->pod->slice_started = false;
                op_next(&op->op);
                return;
        }
        sd = env->systemd(env->userdata);
        if (!sd) {
                op_fail_kind(&op->op, ERROR_UNAVAILABLE, -ENOTCONN, "stop slice %s: systemd is unreachable",
                             op->pod->slice);
                op_goto(&op->op, STEP_END);
                return;
        }
        r = systemd_stop_unit(sd, op->pod->slice, SYSTEMD_TIMEOUT_USEC, slice_stopped, op, &op->sd);
        if (r < 0) {
                op_fail(&op->op, r, "stop slice %s: %s", op->pod->slice, strerror(-r));
                op_goto(&op->op, STEP_END);
        }
}

/* What a teardown SIGKILLs: the pod's slice when it is rktlet's (and of a kind a pod may have: a
 * record of an older rktlet may name the root slice its own), else the pod's init service; NULL
 * when nothing of the pod runs. A kubelet's slice is not the pod's alone (kubelet runs the next
 * sandbox of the same pod in it while the last one waits for removal): there rktlet's own units are
 * what rktlet stops, the init service here and the containers by the ctr module. */
static int kill_target(const Pod *pod, char **ret) {
        if (pod->slice_started && pod->slice_owned && pod_slice_may_be_owned(pod->slice))
                *ret = strdup(pod->slice);
        else if (pod->init_started)
                *ret = pod_init_unit(pod);
        else {
                *ret = NULL;
                return 0;
        }
        return *ret ? 0 : -ENOMEM;
}

/* The first step of every teardown: SIGKILL to every process still in the pod, before any unit of
 * it is stopped. A stop sends SIGTERM and waits the unit's TimeoutStopSec= (90 s by default) for
 * what ignores it: a container rktlet believes has exited, a process it never knew of. The stop or
 * removal would outlive kubelet's deadline, and every start in the pod meanwhile fail ("Requested
 * transaction contradicts existing jobs"). The CRI asks stop and remove to terminate forcibly what
 * runs in the pod; containers stopped by StopPodSandbox get SIGKILL anyway (no grace period). The
 * stops then find nothing left to wait for. */
static void step_kill(PodOp *op) {
        PodEnv *env = &op->pod->table->env;
        _cleanup_free_ char *unit = NULL;
        SystemdClient *sd;
        int r;

        r = kill_target(op->pod, &unit);
        if (r >= 0 && !unit) {
                op_next(&op->op);
                return;
        }
        sd = env->systemd(env->userdata);
        if (r >= 0 && !sd)
                r = -ENOTCONN;
        if (r >= 0)
                r = systemd_kill_unit(sd, unit, "all", SIGKILL, SYSTEMD_TIMEOUT_USEC, killed, op, &op->sd);
        if (r == -ENOTCONN)
                op_fail_kind(&op->op, ERROR_UNAVAILABLE, r, "kill what runs in %s: systemd is unreachable",
                             unit ?: "the pod");
        if (r < 0) {
                op_fail(&op->op, r, "kill what runs in %s: %s", unit ?: "the pod", strerror(-r));
                op_goto(&op->op, STEP_END);
        }
}

static void step_child(PodOp *op, int (*setup)(void *), ChildDone done) {
        ChildSpec spec = {
                .setup = setup,
                .setup_userdata = op->pod,
                .timeout_usec = CHILD_TIMEOUT_USEC,
                .max_output = 64 * 1024,
        };
        int r = child_spawn(op->pod->table->env.loop, &spec, done, op, &op->op.child);

        if (r < 0) {
                op_fail(&op->op, r, "fork: %s", strerror(-r));
                op_goto_or_next(op, op->op.step >= STEP_STOP_INIT);
        }
}

static void step_leftovers(PodOp *op) {
        ChildSpec spec = {
                .setup = pod_cni_leftovers_child,
                .setup_userdata = op->pod,
                .timeout_usec = CHILD_TIMEOUT_USEC,
                .max_output = 64 * 1024,
        };
        int r = child_spawn(op->pod->table->env.loop, &spec, leftovers_done, op, &op->op.child);

        if (r < 0) {
                log_warning_errno(r, "pod %s: cannot fork to wait for the CNI plugins it had running: %m", op->op.id);
                op_next(&op->op);
        }
}

static void step_cni(PodOp *op, bool add) {
        Pod *pod = op->pod;
        CniPortMapping ports[pod->spec.n_ports + 1];
        char *netns = pod_ns_path(pod, "net");
        CniPod cp;
        int r;

        if (!add && netns && !pod_ns_alive(pod, "net")) {
                /* The namespace is gone (a reboot, or its pin was unmounted): DEL without one, as
                 * the CNI spec allows and containerd does, so that the plugins release what lives
                 * outside it (the IPAM lease, on disk in /var/lib/cni). Given the path of a pin
                 * that is now a plain file (a state directory that is not a tmpfs), the bridge
                 * plugin fails ("unknown FS magic"), and every StopPodSandbox with it. */
                free(netns);
                netns = NULL;
        }
        cni_pod(pod, &cp, ports, netns);
        if (add) {
                r = cni_add(pod->table->env.cni, &cp, cni_added, op, &op->cni);
        } else
                r = cni_del(pod->table->env.cni, &cp, pod->cni_network, pod->cni_result, cni_deleted, op, &op->cni);
        free(netns);
        if (r == -ENETDOWN && !add && !pod->cni_network) {
                /* ADD never ran (its network would be recorded) and no network is configured now:
                 * there is nothing to delete. */
                pod->cni_added = false;
                op_next(&op->op);
                return;
        }
        if (r < 0) {
                if (add)
                        op_fail(&op->op, r, "CNI ADD: %s", r == -ENETDOWN ? "no CNI network configured" : strerror(-r));
                else {
                        op_fail(&op->op, r, "CNI DEL: %s", r == -ENETDOWN ? "no CNI network configured" : strerror(-r));
                }
                op_goto_or_next(op, !add);
        }
}

static void step_delete(PodOp *op) {
        char *run = pod_run_dir(op->pod), *root = pod_root_dir(op->pod);
        int r = -ENOMEM;

        if (run && root) {
                r = rm_rf(run);
                if (r >= 0)
                        r = rm_rf(root);
        }
        if (r < 0)
                op_fail(&op->op, r, "delete %s: %s", run ?: "state", strerror(-r));
        else {
                pod_free(op->pod);
                op->pod = NULL;
        }
        free(run);
        free(root);
        op_goto(&op->op, STEP_END);
}

/* --- the machine --------------------------------------------------------------------------------- */

static void run_slice(Op *o) {
        step_slice(pod_op(o));
}

static void run_ns(Op *o) {
        step_child(pod_op(o), pod_ns_setup_child, ns_created);
}

static void run_init(Op *o) {
        PodOp *op = pod_op(o);

        if (op->pod->spec.pid != POD_NS_POD) {
                op_next(o);
                return;
        }
        step_init(op, true);
}

static void run_cni(Op *o) {
        PodOp *op = pod_op(o);

        if (op->pod->spec.network != POD_NS_POD) {
                op_next(o);
                return;
        }
        step_cni(op, true);
}

static void run_files(Op *o) {
        int r = pod_write_files(pod_op(o)->pod);

        if (r < 0)
                op_fail(o, r, "write hostname, hosts and resolv.conf: %s", strerror(-r));
        op_next(o);
}

static void run_ready(Op *o) {
        pod_op(o)->pod->state = POD_READY;
        op_dirty(o);
        op_goto(o, STEP_END);
}

static void run_leftovers(Op *o) {
        step_leftovers(pod_op(o));
}

static void run_kill(Op *o) {
        step_kill(pod_op(o));
}

static void run_stop_init(Op *o) {
        PodOp *op = pod_op(o);

        if (!op->pod->init_started) {
                op_next(o);
                return;
        }
        step_init(op, false);
}

static void run_stop_slice(Op *o) {
        step_stop_slice(pod_op(o));
}

static void run_cni_del(Op *o) {
        PodOp *op = pod_op(o);

        if (!op->pod->cni_added) {
                op_next(o);
                return;
        }
        step_cni(op, false);
}

static void run_ns_down(Op *o) {
        PodOp *op = pod_op(o);

        if (!op->pod->ns_created) {
                op_next(o);
                return;
        }
        step_child(op, pod_ns_teardown_child, ns_removed);
}

/* A stop ends here; a removal (and a failed run) goes on to delete. */
static void run_stopped(Op *o) {
        pod_op(o)->pod->state = POD_NOTREADY;
        op_dirty(o);
        op_next(o);
}

static void run_delete(Op *o) {
        step_delete(pod_op(o));
}

#define TEARDOWN_STEPS                                                  \
        [STEP_KILL] = { "kill", run_kill },                             \
        [STEP_STOP_INIT] = { "stop-init", run_stop_init },              \
        [STEP_STOP_SLICE] = { "stop-slice", run_stop_slice },           \
        [STEP_CNI_DEL] = { "cni-del", run_cni_del },                    \
        [STEP_NS_DOWN] = { "ns-down", run_ns_down },                    \
        [STEP_STOPPED] = { "stopped", run_stopped }

static const OpStep run_steps[STEP_END] = {
        [STEP_SLICE] = { "slice", run_slice },
        [STEP_NS] = { "ns", run_ns },
        [STEP_INIT] = { "init", run_init },
        [STEP_CNI] = { "cni", run_cni },
        [STEP_FILES] = { "files", run_files },
        [STEP_READY] = { "ready", run_ready },
        /* the rollback of a failed run */
        TEARDOWN_STEPS,
        [STEP_DELETE] = { "delete", run_delete },
};

static const OpStep stop_steps[STEP_END] = {
        TEARDOWN_STEPS,
};

static const OpStep remove_steps[STEP_END] = {
        [STEP_LEFTOVERS] = { "leftovers", run_leftovers },
        TEARDOWN_STEPS,
        [STEP_DELETE] = { "delete", run_delete },
};

static const OpStep kill_steps[STEP_END] = {
        [STEP_KILL] = { "kill", run_kill },
};

static const OpKind kinds[_OP_KIND_MAX] = {
        [OP_RUN] = { .name = "run", .steps = run_steps, .n_steps = STEP_END,
                     .has_rollback = true, .rollback_step = STEP_KILL },
        [OP_STOP] = { .name = "stop", .steps = stop_steps, .n_steps = STEP_END },
        [OP_REMOVE] = { .name = "remove", .steps = remove_steps, .n_steps = STEP_END },
        /* the first step of a stop or a removal, which says when it is done */
        [OP_KILL] = { .name = "kill", .steps = kill_steps, .n_steps = STEP_END, .quiet = true },
};

const OpKind *pod_op_kind(unsigned kind) {
        return kind < _OP_KIND_MAX ? &kinds[kind] : NULL;
}

/* --- entry points -------------------------------------------------------------------------------- */

static PodOp *pod_op_new(Pod *pod, PodOpKind kind, PodDone done, void *userdata) {
        PodOp *op;

        assert(pod);
        op = op_new(sizeof *op, &pod_op_class, &kinds[kind], pod->id);
        if (!op)
                return NULL;
        op->pod = pod;
        op->done = done;
        op->userdata = userdata;
        pod->busy = true;
        pod->op = op;
        return op;
}

/* The host name asked for, else the node's, as containerd does: read at each run (the node's can
 * change) and saved with the pod, so that its containers and a restarted rktlet see what it got. */
static int resolve_hostname(const PodSpec *s, char **ret) {
        char host[HOST_NAME_MAX + 1] = {};

        if (s->hostname && s->hostname[0])
                return (*ret = strdup(s->hostname)) ? 0 : -ENOMEM;
        if (gethostname(host, sizeof host - 1) < 0)
                return -errno;
        return (*ret = strdup(host)) ? 0 : -ENOMEM;
}

int pod_run(PodTable *t, PodSpec *spec, PodDone done, void *userdata, Error *error, PodOp **ret_op) {
        struct timespec ts;
        char *run = NULL, *root = NULL;
        PodOp *op;
        Pod *pod;
        int r;

        for (Pod *p = t->pods; p; p = p->next)
                if (strcmp(p->spec.name, spec->name) == 0 && strcmp(p->spec.namespace, spec->namespace) == 0 &&
                    strcmp(p->spec.uid, spec->uid) == 0 && p->spec.attempt == spec->attempt) {
                        r = error_set(error, ERROR_EXISTS, EEXIST,
                                      "pod sandbox %s exists already with this metadata (name %s, attempt %u)", p->id,
                                      QUOTE(spec->name), spec->attempt);
                        pod_spec_done(spec);
                        return r;
                }

        pod = calloc(1, sizeof *pod);
        if (!pod) {
                pod_spec_done(spec);
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        }
        pod->spec = *spec;
        *spec = (PodSpec) {};
        r = random_id(pod->id);
        if (r >= 0)
                r = resolve_hostname(&pod->spec, &pod->hostname);
        if (r < 0) {
                pod_free(pod);
                return error_set(error, ERROR_SYSTEM, r, NULL);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        pod->created_at_ns = (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
        pod->state = POD_CREATING;
        /* Everything the run may create is recorded as existing in the first save, before any of
         * it exists: a crash at any point then undoes all of it (each undo step copes with what is
         * not there), and the run itself saves only once more, when the pod is ready. On a real
         * disk every save is an fsync. The one exception is a slice the request names: it may be
         * kubelet's (which makes the pod's slice before it asks), and a crash before systemd said
         * whose it is must not stop it; rktlet owns it once systemd says it made it (a save more). */
        pod->slice_started = true;
        pod->ns_created = true;
        pod->init_started = pod->spec.pid == POD_NS_POD;
        pod->cni_added = pod->spec.network == POD_NS_POD;
        if (pod->spec.cgroup_parent && pod->spec.cgroup_parent[0])
                pod->slice = strdup(pod->spec.cgroup_parent);
        else {
                pod->slice_owned = true;
                if (asprintf(&pod->slice, "rktlet-pod%s.slice", pod->id) < 0)
                        pod->slice = NULL;
        }
        if (!pod->slice) {
                pod_free(pod);
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        }
        pod_link(t, pod);

        /* The directories first, then the record saying the pod is being made. */
        run = pod_run_dir(pod);
        root = pod_root_dir(pod);
        if (!run || !root) {
                r = -ENOMEM;
                goto fail;
        }
        if ((r = mkdir_p(run, 0755)) < 0 || (r = mkdir_p(root, 0700)) < 0 || (r = pod_save(pod)) < 0) {
                error_errno(error, r, "pod %s: cannot create its state in %s or %s", pod->id, run, root);
                goto fail;
        }
        free(run);
        free(root);

        op = pod_op_new(pod, OP_RUN, done, userdata);
        if (!op) {
                r = -ENOMEM;
                run = pod_run_dir(pod);
                root = pod_root_dir(pod);
                goto fail;
        }
        log_info("pod %s: running %s/%s in %s.", pod->id, pod->spec.namespace, pod->spec.name, pod->slice);
        if (ret_op)
                *ret_op = op;
        op_start(&op->op, STEP_SLICE);
        return 0;

fail:
        if (run)
                (void) rm_rf(run);
        if (root)
                (void) rm_rf(root);
        free(run);
        free(root);
        pod_free(pod);
        return error_set(error, ERROR_SYSTEM, r, NULL); /* unless set above */
}

/* first: STEP_LEFTOVERS for a pod a killed daemon was making, else STEP_KILL. */
static int pod_teardown(Pod *pod, PodOpKind kind, Step first, PodDone done, void *userdata, Error *error,
                        PodOp **ret_op) {
        PodOp *op;

        if (pod->busy)
                return error_set(error, ERROR_CONFLICT, EBUSY, "pod sandbox %s is busy with another operation; try again",
                                 pod->id);
        op = pod_op_new(pod, kind, done, userdata);
        if (!op)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        if (pod->state == POD_READY) {
                /* The first step kills what the pod runs (its slice, and every container in it): a
                 * teardown that fails half way (a CNI DEL past its timeout, say), or a daemon killed
                 * in the middle, must not leave a record that says READY, the namespaces and files
                 * still there and the processes gone. kubelet's retry finishes the job. */
                pod->state = POD_NOTREADY;
                op_dirty(&op->op);
        }
        if (ret_op)
                *ret_op = op;
        op_start(&op->op, first);
        return 0;
}

int pod_kill(Pod *pod, PodDone done, void *userdata, Error *error, PodOp **ret_op) {
        return pod_teardown(pod, OP_KILL, STEP_KILL, done, userdata, error, ret_op);
}

int pod_stop(Pod *pod, PodDone done, void *userdata, Error *error, PodOp **ret_op) {
        return pod_teardown(pod, OP_STOP, STEP_KILL, done, userdata, error, ret_op);
}

int pod_remove(Pod *pod, PodDone done, void *userdata, Error *error, PodOp **ret_op) {
        return pod_teardown(pod, OP_REMOVE, STEP_KILL, done, userdata, error, ret_op);
}

static int load_record(const char *id, void *userdata, void **ret) {
        Pod *pod = NULL;
        int r = pod_load(userdata, id, &pod);

        if (r >= 0)
                *ret = pod;
        return r;
}

static void orphan(const char *id, void *userdata) {
        pod_gc_orphan(userdata, id);
}

/* A pod read back: what it was doing is finished or undone. */
static void recovered(void *record, void *userdata) {
        Pod *pod = record;
        int r;

        if (pod->state == POD_CREATING) {
                /* Killed while it was being made: undo what exists, once the CNI plugins it had
                 * running (which outlive it) are done, or DEL could run before their ADD ends. */
                log_notice("pod %s: was being created when rktlet stopped; cleaning it up.", pod->id);
                (void) pod_teardown(pod, OP_REMOVE, pod->cni_added ? STEP_LEFTOVERS : STEP_KILL, NULL, NULL, NULL,
                                    NULL);
        } else if (pod->state == POD_READY && !pod_runtime_present(pod)) {
                /* The node rebooted (the state directory is on tmpfs): the record survived, the
                 * slice, namespaces, files and processes did not. As containerd does, the pod stays,
                 * NOTREADY: kubelet stops it (which releases its CNI address, kept on disk) and
                 * removes it, and runs a new sandbox. The record says so from now on; what it still
                 * lists as existing is undone by that stop, each step coping with what is gone. */
                log_notice("pod %s: its namespaces and files are gone (the node rebooted?): not ready.", pod->id);
                pod->state = POD_NOTREADY;
                r = pod_save(pod);
                if (r < 0)
                        log_warning_errno(r, "pod %s: cannot save its state: %m", pod->id);
        } else
                log_debug("pod %s: recovered (%s).", pod->id, pod_state_to_string(pod_state(pod)));
}

static const RecordType pod_records = {
        .noun = "pod",
        .load = load_record,
        .orphan = orphan,
        .recovered = recovered,
};

int pod_table_load(PodTable *t) {
        _cleanup_free_ char *dir = NULL;
        int r;

        assert(t);
        if (asprintf(&dir, "%s/pods", t->env.root_dir) < 0) {
                dir = NULL;
                return -ENOMEM;
        }
        r = record_load_all(dir, &pod_records, t);
        if (r < 0)
                return r;
        /* A run killed between making its directory in the state directory and the one in the
         * root directory left the first only. */
        return pod_gc_run_orphans(t);
}
