/* Pod sandboxes: the table, lookups, input validation and reported state. */
#include "pod.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "build-config.h"
#include "config.h"
#include "json-util.h"
#include "macro.h"
#include "parse-util.h"
#include "pod-internal.h"
#include "quote.h"
#include "record.h"
#include "strv.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

static const char *const state_names[_POD_STATE_MAX] = {
        [POD_CREATING] = "creating",
        [POD_READY] = "ready",
        [POD_NOTREADY] = "notready",
};

const char *pod_state_to_string(PodState s) {
        return s >= 0 && s < _POD_STATE_MAX ? state_names[s] : NULL;
}

PodState pod_state_from_string(const char *s) {
        for (int i = 0; s && i < _POD_STATE_MAX; i++)
                if (strcmp(state_names[i], s) == 0)
                        return (PodState) i;
        return _POD_STATE_INVALID;
}

void pod_spec_done(PodSpec *s) {
        free(s->name);
        free(s->uid);
        free(s->namespace);
        free(s->hostname);
        free(s->log_directory);
        free(s->runtime_handler);
        free(s->cgroup_parent);
        strv_free(s->dns_servers);
        strv_free(s->dns_searches);
        strv_free(s->dns_options);
        for (size_t i = 0; i < s->n_ports; i++) {
                free(s->ports[i].protocol);
                free(s->ports[i].host_ip);
        }
        free(s->ports);
        pairs_free(s->labels, s->n_labels);
        pairs_free(s->annotations, s->n_annotations);
        pairs_free(s->sysctls, s->n_sysctls);
        free(s->uids);
        free(s->gids);
        *s = (PodSpec) {};
}


int pod_table_new(const PodEnv *env, PodTable **ret) {
        PodTable *t = calloc(1, sizeof *t);

        if (!t)
                return -ENOMEM;
        t->env = *env;
        t->pid = getpid();
        *ret = t;
        return 0;
}

PodTable *pod_table_free(PodTable *t) {
        if (!t)
                return NULL;
        for (Pod *p = t->pods; p; p = p->next)
                if (p->op)
                        pod_op_abort(p->op);
        while (t->pods)
                pod_free(t->pods);
        free(t);
        return NULL;
}

void pod_link(PodTable *t, Pod *pod) {
        pod->table = t;
        pod->next = t->pods;
        if (t->pods)
                t->pods->prev = pod;
        t->pods = pod;
        t->n_pods++;
}

void pod_free(Pod *pod) {
        PodTable *t = pod->table;

        if (t) {
                if (pod->prev)
                        pod->prev->next = pod->next;
                else
                        t->pods = pod->next;
                if (pod->next)
                        pod->next->prev = pod->prev;
                t->n_pods--;
        }
        pod_spec_done(&pod->spec);
        free(pod->hostname);
        free(pod->slice);
        free(pod->cni_network);
        free(pod->cni_result);
        strv_free(pod->ips);
        free(pod);
}

Pod *pod_find(PodTable *t, const char *id) {
        for (Pod *p = t->pods; p; p = p->next)
                if (strcmp(p->id, id) == 0)
                        return p;
        return NULL;
}

int pod_find_prefix(PodTable *t, const char *prefix, Pod **ret) {
        assert(t);
        return record_find_prefix(t->pods, Pod, prefix, ret);
}

char *pod_ns_path(const Pod *pod, const char *ns) {
        char *p;

        PodNsMode mode = strcmp(ns, "ipc") == 0    ? pod->spec.ipc
                         : strcmp(ns, "pid") == 0  ? pod->spec.pid
                         : strcmp(ns, "user") == 0 ? pod->spec.userns
                                                   : pod->spec.network;
        if (mode != POD_NS_POD)
                return NULL;
        if (asprintf(&p, "%s/pods/%s/ns/%s", pod->table->env.state_dir, pod->id, ns) < 0)
                return NULL;
        return p;
}

static bool is_nsfs(const char *path) {
        struct statfs sfs;
        return path && statfs(path, &sfs) >= 0 && (unsigned long) sfs.f_type == NSFS_MAGIC;
}

bool pod_ns_alive(const Pod *pod, const char *ns) {
        _cleanup_free_ char *p = pod_ns_path(pod, ns);
        return is_nsfs(p);
}

/* What a made pod keeps in the state directory: its files, and each namespace of its own pinned
 * there. The state directory is on /run, a tmpfs: a reboot takes all of it (and the namespaces,
 * which no bind mount outlives), as does someone unmounting the pins. */
bool pod_runtime_present(const Pod *pod) {
        static const char *const names[] = { "net", "ipc", "pid", "user" };
        _cleanup_free_ char *run = pod_run_dir(pod), *files = NULL;

        if (!run || asprintf(&files, "%s/hostname", run) < 0) {
                files = NULL; /* undefined after a failure */
                return false;
        }
        if (access(files, F_OK) < 0)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *p = pod_ns_path(pod, names[i]); /* NULL: not one of its own */
                if (p && !is_nsfs(p))
                        return false;
        }
        return true;
}

char *pod_init_unit(const Pod *pod) {
        char *p;
        return asprintf(&p, "rktlet-init-%s.service", pod->id) < 0 ? NULL : p;
}

PodState pod_state(const Pod *pod) {
        if (pod->state != POD_READY)
                return pod->state;
        /* After a reboot (or someone unmounting them) the namespaces and files are gone: not ready,
         * whatever the record says; a pod on the node's network too, whose containers could not get
         * their hosts and resolv.conf, nor its IPC or PID namespace. */
        return pod_runtime_present(pod) ? POD_READY : POD_NOTREADY;
}

/* --- validation ---------------------------------------------------------------------------------- */

/* Names end up in paths, unit descriptions, CNI_ARGS and logs: keep them plain. */
static int check_name(const char *what, const char *s, size_t max, Error *error) {
        if (!s || !s[0])
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "metadata.%s is empty", what);
        if (strlen(s) > max)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "metadata.%s is longer than %zu characters", what, max);
        if (strcmp(s, ".") == 0 || strstr(s, "..") || strchr(s, '/'))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "metadata.%s %s contains '/' or '..'", what, QUOTE(s));
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f || *p == ';' || *p == '=' || *p == '\\')
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "metadata.%s contains a control character, ';', '=' or '\\'", what);
        return 0;
}

/* kubelet's hostUsers: false: one uid and one gid mapping, each of container IDs 0 up to a multiple
 * of 65536 (kubelet hands out such ranges), onto host IDs from 65536 (above the node's own) that fit in 32 bits.
 * Anything else is a request kubelet would not make, refused before anything is created. */
static int check_idmap(const char *what, const PodIdMap *m, size_t n, Error *error) {
        if (n != 1)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options.%s: a user namespace of the pod's own needs exactly one mapping, not %zu", what, n);
        if (m->container_id != 0)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options.%s: the mapping must start at container ID 0, not %" PRIu32, what, m->container_id);
        if (m->length == 0 || m->length % 65536 != 0)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options.%s: the length %" PRIu32 " is not a positive multiple of 65536", what, m->length);
        /* kubelet allocates from 65536 up: below are the node's own users (root, system users and
         * the first 65536 of its people), whose files the pod would own. */
        if (m->host_id < 65536)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options.%s: host IDs below 65536 (from %" PRIu32 ") are the node's own, not "
                                 "for pods", what, m->host_id);
        if ((uint64_t) m->host_id + m->length > UINT32_MAX) /* (uid_t) -1 is no ID */
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options.%s: host IDs %" PRIu32 "+%" PRIu32 " run past the last ID", what, m->host_id, m->length);
        return 0;
}

static int check_userns(const PodSpec *s, Error *error) {
        int r;

        if (s->userns == POD_NS_NODE) {
                if (s->n_uids > 0 || s->n_gids > 0)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "userns_options: mode NODE takes no uid or gid mappings");
                return 0;
        }
        if (s->userns != POD_NS_POD)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options.mode %d is not supported for pods (POD or NODE)", s->userns);
        if ((r = check_idmap("uids", s->uids, s->n_uids, error)) < 0 ||
            (r = check_idmap("gids", s->gids, s->n_gids, error)) < 0)
                return r;
        /* The pod's namespaces must be owned by its user namespace, which the runtime joins first:
         * the node's network (RuntimeFeatures.user_namespaces_host_network is false), PID or IPC
         * namespace cannot be (kubelet refuses hostPID and hostIPC with hostUsers: false). */
        if (s->network != POD_NS_POD)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options: a user namespace of the pod's own needs a network namespace of its own");
        if (s->pid == POD_NS_NODE || s->ipc == POD_NS_NODE)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "userns_options: a user namespace of the pod's own cannot have the node's %s namespace",
                                 s->pid == POD_NS_NODE ? "PID" : "IPC");
        return 0;
}

static bool sysctl_namespaced(const char *key, PodNsMode network, PodNsMode ipc, const char **ret_why) {
        static const char *const ipc_keys[] = { "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                                                "kernel.shm_rmid_forced", "kernel.msgmax", "kernel.msgmnb",
                                                "kernel.msgmni", "kernel.sem" };

        for (size_t i = 0; i < ELEMENTSOF(ipc_keys); i++)
                if (strcmp(key, ipc_keys[i]) == 0) {
                        *ret_why = "the pod shares the host's IPC namespace";
                        return ipc == POD_NS_POD;
                }
        if (strncmp(key, "fs.mqueue.", 10) == 0) {
                *ret_why = "the pod shares the host's IPC namespace";
                return ipc == POD_NS_POD;
        }
        if (strncmp(key, "net.", 4) == 0) {
                *ret_why = "the pod uses the host's network";
                return network == POD_NS_POD;
        }
        *ret_why = "it is not a namespaced sysctl (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*)";
        return false;
}

/* The pod's slice is the cgroup parent itself, as kubelet's systemd driver means it: rktlet starts it
 * when it is not there, and then stops it with the pod. So only a slice of kubelet's kind will do:
 * never the root slice (which systemd cannot stop, so that the pod could never be removed), nor one
 * of systemd's own, which hold the node's services, sessions and machines. */
static int check_cgroup_parent(const char *parent, Error *error) {
        static const char *const system_slices[] = { "system", "user", "machine", "app", "background", "session" };

        if (parent[0] == '/')
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "config.linux.cgroup_parent %s is a cgroupfs path: rktlet uses the systemd "
                                 "cgroup driver; run kubelet with cgroupDriver: systemd, which passes a slice name "
                                 "such as kubepods-besteffort-pod<uid>.slice",
                                 QUOTE(parent));
        if (!systemd_unit_name_valid(parent, ".slice"))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "config.linux.cgroup_parent %s is not a systemd slice name "
                                 "(such as kubepods-besteffort-pod<uid>.slice): rktlet runs each pod as a slice",
                                 QUOTE(parent));
        if (strcmp(parent, "-.slice") == 0)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "config.linux.cgroup_parent '-.slice' is the root slice, which rktlet must not own "
                                 "or stop");
        for (size_t i = 0; i < ELEMENTSOF(system_slices); i++) {
                size_t n = strlen(system_slices[i]);
                /* "system.slice" itself, or "system-foo.slice" within it. */
                if (strncmp(parent, system_slices[i], n) == 0 && (parent[n] == '.' || parent[n] == '-'))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "config.linux.cgroup_parent %s is %ssystemd's %s.slice, which "
                                         "rktlet must not own or stop",
                                         QUOTE(parent), parent[n] == '.' ? "" : "within ", system_slices[i]);
        }
        return 0;
}

bool pod_slice_may_be_owned(const char *slice) {
        return check_cgroup_parent(slice, NULL) >= 0;
}

int pod_spec_validate(const PodSpec *s, Error *error) {
        int r;

        if ((r = check_name("name", s->name, 253, error)) < 0 ||
            (r = check_name("namespace", s->namespace, 253, error)) < 0 ||
            (r = check_name("uid", s->uid, 253, error)) < 0)
                return r;
        /* kubelet's /var/log/pods/<ns>_<name>_<uid>: rktlet creates it and the containers' logs in it. */
        if (s->log_directory && s->log_directory[0] &&
            (s->log_directory[0] != '/' || path_has_dotdot(s->log_directory)))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "log_directory %s must be an absolute path without '..'",
                                 QUOTE(s->log_directory));
        if (s->hostname && s->hostname[0]) {
                if (strlen(s->hostname) > 64)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "hostname %s is longer than 64 characters", QUOTE(s->hostname));
                for (const char *p = s->hostname; *p; p++)
                        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.", *p))
                                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "hostname %s is not a valid host name", QUOTE(s->hostname));
        }
        if (s->network != POD_NS_POD && s->network != POD_NS_NODE)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "network namespace mode %d is not supported for pods (POD or NODE)",
                               s->network);
        if (s->ipc != POD_NS_POD && s->ipc != POD_NS_NODE)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "IPC namespace mode %d is not supported for pods (POD or NODE)", s->ipc);
        if (s->pid != POD_NS_POD && s->pid != POD_NS_CONTAINER && s->pid != POD_NS_NODE)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "PID namespace mode %d is not supported for pods", s->pid);
        if ((r = check_userns(s, error)) < 0)
                return r;
        if (s->cgroup_parent && s->cgroup_parent[0] && (r = check_cgroup_parent(s->cgroup_parent, error)) < 0)
                return r;
        /* runtime_handler: a name as Kubernetes allows them here; whether it is configured, the CRI
         * layer checks against the handlers. */
        if (s->runtime_handler && s->runtime_handler[0] && !config_runtime_name_is_valid(s->runtime_handler))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "runtime_handler %s is no RuntimeClass handler name (1 to 63 of a-z, 0-9 and '-', not "
                                 "starting or ending with '-')",
                                 QUOTE(s->runtime_handler));
        for (size_t i = 0; i < s->n_sysctls; i++) {
                const char *k = s->sysctls[i].key, *v = s->sysctls[i].value, *why;

                if (!k || !k[0] || strlen(k) > 255)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "sysctl name is empty or too long");
                for (const char *p = k; *p; p++)
                        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", *p))
                                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "sysctl name %s contains %s", QUOTE(k), QUOTE(((char[]) { *p, '\0' })));
                if (strstr(k, "..") || k[0] == '.' || k[strlen(k) - 1] == '.')
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "sysctl name %s is malformed", QUOTE(k));
                /* CVE-2022-0811: a value with '+' or '=' or a newline could smuggle a second setting. */
                if (!v || strlen(v) > 4096)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "sysctl %s has no value or one that is too long", QUOTE(k));
                for (const char *p = v; *p; p++)
                        if (*p == '+' || *p == '=' || *p == '\n' || *p == '\r' || (unsigned char) *p < 0x20)
                                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "sysctl %s value contains a forbidden character", QUOTE(k));
                if (!sysctl_namespaced(k, s->network, s->ipc, &why))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "sysctl %s is not allowed: %s", QUOTE(k), why);
        }
        for (size_t i = 0; i < s->n_ports; i++) {
                const PodPort *p = &s->ports[i];
                if (p->container_port <= 0 || p->container_port > 65535 || p->host_port < 0 || p->host_port > 65535)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "port_mappings[%zu]: ports must be within 1-65535", i);
                if (!strv_contains((char *[]) { (char *) "tcp", (char *) "udp", (char *) "sctp", NULL }, p->protocol))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "port_mappings[%zu].protocol: not TCP, UDP or SCTP", i);
                if (p->host_ip[0] && parse_ip(p->host_ip) < 0)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "port_mappings[%zu].host_ip: %s is not an IP address",
                                         i, QUOTE(p->host_ip));
        }
        for (char **d = s->dns_servers; d && *d; d++)
                if (parse_ip(*d) < 0)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "dns_config.servers: %s is not an IP address", QUOTE(*d));
        for (char **d = s->dns_searches; d && *d; d++)
                if (strpbrk(*d, " \t\n"))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "dns_config.searches: %s contains white space", QUOTE(*d));
        for (char **d = s->dns_options; d && *d; d++)
                if (strpbrk(*d, " \t\n"))
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "dns_config.options: %s contains white space", QUOTE(*d));
        return 0;
}

char *pod_info_json(const Pod *pod) {
        char *netns = pod_ns_path(pod, "net"), *out;
        yajl_gen g = yajl_gen_alloc(NULL);
        yajl_val result = pod->cni_result ? json_parse(pod->cni_result, NULL, 0) : NULL;
        yajl_val net = pod->cni_network ? json_parse(pod->cni_network, NULL, 0) : NULL;

        if (!g) {
                free(netns);
                return NULL;
        }
        yajl_gen_map_open(g);
        json_gen_key_str(g, "id", pod->id);
        json_gen_key_str(g, "state", pod_state_to_string(pod_state(pod)));
        json_gen_key_str(g, "unit", pod->slice);
        json_gen_key_bool(g, "unitOwned", pod->slice_owned);
        if (pod->spec.pid == POD_NS_POD) {
                char *init = pod_init_unit(pod), *pidns = pod_ns_path(pod, "pid");
                json_gen_key_str(g, "initUnit", init);
                json_gen_key_str(g, "pidns", pidns);
                free(init);
                free(pidns);
        }
        json_gen_key_str(g, "netns", pod->ns_created ? netns : NULL);
        json_gen_key_str(g, "cniNetwork", json_get_str(net, "name"));
        json_gen_str(g, "cniResult");
        json_gen_value(g, result);
        yajl_gen_map_close(g);
        out = json_gen_steal(g);
        yajl_gen_free(g);
        yajl_tree_free(result);
        yajl_tree_free(net);
        free(netns);
        return out;
}

char *pod_find_init_binary(void) {
        char self[4096], *p;
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

        if (n > 0) {
                self[n] = '\0';
                *strrchr(self, '/') = '\0';
                if (asprintf(&p, "%s/rktlet-pod-init", self) >= 0) {
                        if (access(p, X_OK) == 0)
                                return p;
                        free(p);
                }
        }
        return strdup(LIBEXECDIR "/rktlet/rktlet-pod-init");
}
