/* What the pod module's files share. */
#pragma once

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

/* pod-files.c: hostname, hosts and resolv.conf under the pod's run directory. */
int pod_write_files(const Pod *pod);

/* pod-ns.c: children that create the pod's namespaces (and pin them) or take them down. */
int pod_ns_setup_child(void *userdata);
int pod_ns_teardown_child(void *userdata);
