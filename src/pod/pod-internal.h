/* What the pod module's files share. */
#pragma once

#include "op.h"
#include "pod.h"
#include "strv.h"

PodState pod_state_from_string(const char *s);
void pod_link(PodTable *t, Pod *pod);
void pod_free(Pod *pod);
/* Drops an operation in flight, without calling anyone back (daemon shutdown). */
void pod_op_abort(PodOp *op);

/* pod-state.c: <root>/pods/<id>/state.json, written atomically. */
int pod_save(const Pod *pod);
int pod_load(PodTable *t, const char *id, Pod **ret);
char *pod_root_dir(const Pod *pod);
char *pod_run_dir(const Pod *pod);

/* pod.c: whether the namespace ns ("net", "ipc", "pid") the pod pinned is still there; whether
 * everything a ready pod has in the state directory is (false after a reboot). */
bool pod_ns_alive(const Pod *pod, const char *ns);
bool pod_runtime_present(const Pod *pod);
/* pod.c: whether slice is of a kind a pod may own, as a cgroup_parent must be: neither the root
 * slice nor one of systemd's own (a record of an older rktlet may say otherwise). */
bool pod_slice_may_be_owned(const char *slice);

/* pod-files.c: hostname, hosts and resolv.conf under the pod's run directory. */
int pod_write_files(const Pod *pod);

/* pod-ns.c: children that create the pod's namespaces (and pin them) or take them down. They die
 * with the daemon: what a dead daemon's child would do next, nobody would undo. */
int pod_ns_setup_child(void *userdata);
int pod_ns_teardown_child(void *userdata);
/* In a child of the daemon: SIGKILL when the daemon dies; -ESRCH when it already has. */
int pod_child_die_with_daemon(const Pod *pod);

/* pod-gc.c: what a killed daemon left. A child that waits for the CNI plugins it had started for
 * the pod (processes with CNI_CONTAINERID=<id>) to end, and kills them past a bound; the deletion
 * of a pod's directories that have no record (at start: those of the root directory, then those of
 * the state directory that have none in the root directory). */
int pod_cni_leftovers_child(void *userdata);
void pod_gc_orphan(PodTable *t, const char *id);
int pod_gc_run_orphans(PodTable *t);

/* pod-run.c: the step table of each kind of operation (0 run, 1 stop, 2 remove, 3 kill), for
 * tests; NULL past the last. */
const OpKind *pod_op_kind(unsigned kind);
