/* The container table, paths and persistent state: <root>/containers/<id>/state.json (written
 * atomically) and config.pb (the CRI config as received, for status). */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <unistd.h>

#include "ctr-internal.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "record.h"

static const char *const state_names[_CTR_STATE_MAX] = {
        [CTR_CREATED] = "created",
        [CTR_RUNNING] = "running",
        [CTR_EXITED] = "exited",
        [CTR_UNKNOWN] = "unknown",
};

const char *ctr_state_to_string(CtrState s) {
        return s >= 0 && s < _CTR_STATE_MAX ? state_names[s] : "unknown";
}

CtrState ctr_state_from_string(const char *s) {
        for (int i = 0; s && i < _CTR_STATE_MAX; i++)
                if (strcmp(state_names[i], s) == 0)
                        return (CtrState) i;
        return _CTR_STATE_INVALID;
}

void ctr_spec_done(CtrSpec *s) {
        free(s->name);
        free(s->image_ref);
        strv_free(s->command);
        strv_free(s->args);
        free(s->working_dir);
        pairs_free(s->envs, s->n_envs);
        for (size_t i = 0; s->mounts && i < s->n_mounts; i++) {
                free(s->mounts[i].container_path);
                free(s->mounts[i].host_path);
        }
        free(s->mounts);
        for (size_t i = 0; s->devices && i < s->n_devices; i++) {
                free(s->devices[i].container_path);
                free(s->devices[i].host_path);
                free(s->devices[i].permissions);
        }
        free(s->devices);
        pairs_free(s->labels, s->n_labels);
        pairs_free(s->annotations, s->n_annotations);
        free(s->log_path);
        free(s->run_as_username);
        free(s->supplemental_groups);
        strv_free(s->cap_add);
        strv_free(s->cap_drop);
        free(s->seccomp_profile);
        free(s->apparmor_profile);
        strv_free(s->masked_paths);
        strv_free(s->readonly_paths);
        free(s->pid_target);
        free(s->cpuset_cpus);
        free(s->cpuset_mems);
        *s = (CtrSpec) {};
}

static bool can_lower_oom_score(void) {
        cap_t caps = cap_get_proc();
        cap_flag_value_t v = CAP_CLEAR;

        if (!caps)
                return false;
        if (cap_get_flag(caps, CAP_SYS_RESOURCE, CAP_EFFECTIVE, &v) < 0)
                v = CAP_CLEAR;
        cap_free(caps);
        return v == CAP_SET;
}

int ctr_table_new(const CtrEnv *env, CtrTable **ret) {
        CtrTable *t = calloc(1, sizeof *t);
        char *text = NULL;

        if (!t)
                return -ENOMEM;
        t->env = *env;
        if (fs_sync_new(env->root_dir, &t->sync) < 0) {
                free(t);
                return -ENOMEM;
        }
        /* Without CAP_SYS_RESOURCE nobody below us may get a lower OOM score than ours: the OCI
         * runtime would fail writing it. Clamp, as containerd's restrict_oom_score_adj does. */
        t->can_lower_oom_score = can_lower_oom_score();
        if (read_file("/proc/self/oom_score_adj", 64, &text, NULL) >= 0)
                t->own_oom_score_adj = atoi(text);
        free(text);
        *ret = t;
        return 0;
}

void ctr_table_set_observer(CtrTable *t, CtrObserver observer, void *userdata) {
        t->observer = observer;
        t->observer_userdata = userdata;
}

void ctr_emit(CtrTable *t, CtrEvent event, const char *container_id, const char *pod_id) {
        if (t->observer)
                t->observer(t, event, container_id, pod_id, t->observer_userdata);
}

void ctr_link(CtrTable *t, Container *c) {
        c->table = t;
        c->next = t->containers;
        if (t->containers)
                t->containers->prev = c;
        t->containers = c;
        t->n_containers++;
}

Container *ctr_find(CtrTable *t, const char *id) {
        for (Container *c = t->containers; c; c = c->next)
                if (strcmp(c->id, id) == 0)
                        return c;
        return NULL;
}

int ctr_find_prefix(CtrTable *t, const char *prefix, Container **ret) {
        assert(t);
        return record_find_prefix(t->containers, Container, prefix, ret);
}

char *ctr_unit_name(const Container *c) {
        char *p;
        return asprintf(&p, "rktlet-ctr-%s.service", c->id) < 0 ? NULL : p;
}

char *ctr_root_dir(const Container *c) {
        char *p;
        return asprintf(&p, "%s/containers/%s", c->table->env.root_dir, c->id) < 0 ? NULL : p;
}

char *ctr_run_dir(const Container *c) {
        char *p;
        return asprintf(&p, "%s/containers/%s", c->table->env.state_dir, c->id) < 0 ? NULL : p;
}

char *ctr_path(const Container *c, bool run, const char *name) {
        const char *base = run ? c->table->env.state_dir : c->table->env.root_dir;
        char *p;
        return asprintf(&p, "%s/containers/%s/%s", base, c->id, name) < 0 ? NULL : p;
}

CtrState ctr_reported_state(const Container *c) {
        return c->creating || c->unconfirmed ? CTR_UNKNOWN : c->state;
}

void ctr_confirmed(Container *c) {
        CtrTable *t = c->table;

        if (!c->unconfirmed)
                return;
        c->unconfirmed = false;
        if (t && --t->n_unconfirmed == 0 && t->all_confirmed)
                t->all_confirmed(t->env.userdata);
}

void ctr_free(Container *c) {
        CtrTable *t = c->table;

        ctr_confirmed(c); /* nothing left to wait for */
        if (t) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        t->containers = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                t->n_containers--;
        }
        systemd_watch_free(c->watch);
        ctr_io_free(c->io);
        free(c->name);
        free(c->image_ref);
        free(c->image_id);
        pairs_free(c->labels, c->n_labels);
        pairs_free(c->annotations, c->n_annotations);
        free(c->log_path);
        free(c->log_dir);
        free(c->config);
        free(c->reason);
        free(c->message);
        free(c->memcg);
        free(c->cpuset_cpus);
        free(c->cpuset_mems);
        free(c->gids);
        free(c->handler);
        free(c->runtime);
        free(c->runtime_root);
        strv_free(c->runtime_options);
        free(c);
}


static char *records_dir(const CtrTable *t) {
        char *p;
        return asprintf(&p, "%s/containers", t->env.root_dir) < 0 ? NULL : p;
}

int ctr_save(const Container *c) {
        _cleanup_(yajl_gen_freep) yajl_gen g = NULL;
        _cleanup_free_ char *dir = NULL;
        int r;

        assert(c && c->table);
        dir = records_dir(c->table);
        g = yajl_gen_alloc(NULL);
        if (!dir || !g)
                return -ENOMEM;
        yajl_gen_config(g, yajl_gen_beautify, 1);
        yajl_gen_map_open(g);
        json_gen_key_str(g, "id", c->id);
        json_gen_key_str(g, "podId", c->pod_id);
        json_gen_key_str(g, "name", c->name);
        json_gen_key_int(g, "attempt", c->attempt);
        json_gen_key_str(g, "imageRef", c->image_ref);
        json_gen_key_str(g, "imageId", c->image_id);
        json_gen_key_pairs(g, "labels", c->labels, c->n_labels);
        json_gen_key_pairs(g, "annotations", c->annotations, c->n_annotations);
        json_gen_key_str(g, "logPath", c->log_path);
        json_gen_key_str(g, "logDirectory", c->log_dir);
        json_gen_key_int(g, "stopSignal", c->stop_signal);
        json_gen_key_bool(g, "tty", c->tty);
        json_gen_key_bool(g, "stdin", c->stdin_);
        json_gen_key_bool(g, "stdinOnce", c->stdin_once);
        json_gen_key_int(g, "cpuShares", c->cpu_shares);
        json_gen_key_int(g, "cpuQuota", c->cpu_quota);
        json_gen_key_int(g, "cpuPeriod", c->cpu_period);
        json_gen_key_int(g, "memoryLimit", c->memory_limit);
        json_gen_key_int(g, "memorySwapLimit", c->memory_swap_limit);
        json_gen_key_int(g, "pidsLimit", c->pids_limit);
        if (c->has_user) {
                json_gen_key_int(g, "uid", c->uid);
                json_gen_key_int(g, "gid", c->gid);
                json_gen_str(g, "supplementalGroups");
                yajl_gen_array_open(g);
                for (size_t i = 0; i < c->n_gids; i++)
                        yajl_gen_integer(g, c->gids[i]);
                yajl_gen_array_close(g);
        }
        if (c->cpuset_cpus)
                json_gen_key_str(g, "cpusetCpus", c->cpuset_cpus);
        if (c->cpuset_mems)
                json_gen_key_str(g, "cpusetMems", c->cpuset_mems);
        json_gen_key_str(g, "state", ctr_state_to_string(c->state));
        json_gen_key_bool(g, "creating", c->creating);
        json_gen_key_bool(g, "removing", c->removing);
        json_gen_key_int(g, "createdAt", (long long) c->created_at_ns);
        json_gen_key_int(g, "startedAt", (long long) c->started_at_ns);
        json_gen_key_int(g, "finishedAt", (long long) c->finished_at_ns);
        json_gen_key_int(g, "exitCode", c->exit_code);
        json_gen_key_str(g, "reason", c->reason);
        json_gen_key_str(g, "message", c->message);
        json_gen_key_int(g, "pid", c->pid);
        json_gen_key_str(g, "memcg", c->memcg);
        json_gen_key_bool(g, "rootfsMounted", c->rootfs_mounted);
        json_gen_key_bool(g, "unitStarted", c->unit_started);
        json_gen_key_bool(g, "runtimeCreated", c->runtime_created);
        json_gen_key_str(g, "handler", c->handler);
        json_gen_key_str(g, "runtime", c->runtime);
        json_gen_key_str(g, "runtimeRoot", c->runtime_root);
        json_gen_key_strv(g, "runtimeOptions", c->runtime_options);
        yajl_gen_map_close(g);
        r = record_write(dir, c->id, g, false);
        if (r >= 0)
                fs_sync_request(c->table->sync);
        return r;
}

/* Whether dir is where log_path begins: log_path is dir + "/" + something. */
static bool log_path_beneath(const char *log_path, const char *dir) {
        size_t n = dir ? strlen(dir) : 0;

        return n > 0 && strncmp(log_path, dir, n) == 0 && log_path[n] == '/' && log_path[n + 1] != '\0';
}

const char *ctr_log_relative(const Container *c) {
        if (!c->log_path || !c->log_path[0] || !log_path_beneath(c->log_path, c->log_dir))
                return "";
        return c->log_path + strlen(c->log_dir) + 1;
}

/* The directory a loaded record's log is opened beneath: the record's "logDirectory"; for a record
 * written before there was one (it has the absolute path only), the pod's log directory, or at
 * least the file's own directory, so that the file itself is still never a symlink followed. */
static char *log_dir_of(CtrTable *t, const Container *c, const char *saved) {
        Pod *pod = t->env.pods ? pod_find(t->env.pods, c->pod_id) : NULL;
        const char *slash;

        if (!c->log_path[0])
                return strdup("");
        if (log_path_beneath(c->log_path, saved))
                return strdup(saved);
        if (pod && log_path_beneath(c->log_path, pod->spec.log_directory))
                return strdup(pod->spec.log_directory);
        slash = strrchr(c->log_path, '/');
        return slash && slash > c->log_path ? strndup(c->log_path, (size_t) (slash - c->log_path)) : strdup("");
}

/* The runtime a record was made with. A record from before handlers has none: it was made by the
 * one runtime there was (Runtime=, else runc, else crun: not DefaultRuntime= or a section's), with
 * <state>/runc as its root. */
static int load_handler(CtrTable *t, Container *c, yajl_val v) {
        const char *runtime = json_get_str(v, "runtime");

        if (runtime && runtime[0]) {
                c->handler = json_dup_str(v, "handler");
                c->runtime = strdup(runtime);
                c->runtime_root = json_dup_str(v, "runtimeRoot");
                c->runtime_options = json_get_strv(v, "runtimeOptions");
                if (!c->handler || !c->runtime || !c->runtime_root)
                        return -EBADMSG;
                return 0;
        }
        const char *base = t->legacy_runtime ? strrchr(t->legacy_runtime, '/') : NULL;
        c->handler = strdup(base ? base + 1 : t->legacy_runtime ?: "runc");
        c->runtime = strdup(t->legacy_runtime ?: "runc");
        if (asprintf(&c->runtime_root, "%s/runc", t->env.state_dir) < 0)
                c->runtime_root = NULL;
        return c->handler && c->runtime && c->runtime_root ? 0 : -ENOMEM;
}

static Container *container_free(Container *c) {
        if (c) {
                c->table = NULL; /* not linked */
                ctr_free(c);
        }
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Container *, container_free);

int ctr_load(CtrTable *t, const char *id, Container **ret) {
        _cleanup_(container_freep) Container *c = NULL;
        _cleanup_(yajl_tree_freep) yajl_val v = NULL;
        _cleanup_free_ char *dir = NULL, *path = NULL;
        const char *s;
        int r;

        assert(t && id && ret);
        dir = records_dir(t);
        c = calloc(1, sizeof *c);
        if (!dir || !c)
                return -ENOMEM;
        c->table = t;
        snprintf(c->id, sizeof c->id, "%s", id);
        r = record_read(dir, id, &v);
        if (r < 0)
                return r;
        s = json_get_str(v, "podId");
        if (!s || strlen(s) != 64)
                return -EBADMSG;
        memcpy(c->pod_id, s, 65);
        c->name = json_dup_str(v, "name");
        c->attempt = (uint32_t) json_get_int_or_zero(v, "attempt");
        c->image_ref = json_dup_str(v, "imageRef");
        c->image_id = json_dup_str(v, "imageId");
        c->labels = json_get_pairs(v, "labels", &c->n_labels);
        c->annotations = json_get_pairs(v, "annotations", &c->n_annotations);
        c->log_path = json_dup_str(v, "logPath");
        if (c->log_path)
                c->log_dir = log_dir_of(t, c, json_get_str(v, "logDirectory"));
        c->stop_signal = (int) json_get_int_or_zero(v, "stopSignal");
        c->tty = json_get_true(v, "tty");
        c->stdin_ = json_get_true(v, "stdin");
        c->stdin_once = json_get_true(v, "stdinOnce");
        c->cpu_shares = json_get_int_or_zero(v, "cpuShares");
        c->cpu_quota = json_get_int_or_zero(v, "cpuQuota");
        c->cpu_period = json_get_int_or_zero(v, "cpuPeriod");
        c->memory_limit = json_get_int_or_zero(v, "memoryLimit");
        c->memory_swap_limit = json_get_int_or_zero(v, "memorySwapLimit");
        c->pids_limit = json_get_int_or_zero(v, "pidsLimit");
        {
                yajl_val groups = json_get(v, "supplementalGroups");
                if (groups && YAJL_IS_ARRAY(groups)) {
                        c->gids = calloc(groups->u.array.len + 1, sizeof *c->gids);
                        if (!c->gids)
                                return -ENOMEM;
                        for (size_t i = 0; i < groups->u.array.len; i++)
                                if (YAJL_IS_INTEGER(groups->u.array.values[i]))
                                        c->gids[c->n_gids++] = YAJL_GET_INTEGER(groups->u.array.values[i]);
                        c->has_user = true;
                        c->uid = json_get_int_or_zero(v, "uid");
                        c->gid = json_get_int_or_zero(v, "gid");
                }
        }
        if (json_get_str(v, "cpusetCpus") && !(c->cpuset_cpus = json_dup_str(v, "cpusetCpus")))
                return -ENOMEM;
        if (json_get_str(v, "cpusetMems") && !(c->cpuset_mems = json_dup_str(v, "cpusetMems")))
                return -ENOMEM;
        c->state = ctr_state_from_string(json_get_str(v, "state"));
        c->creating = json_get_true(v, "creating");
        c->removing = json_get_true(v, "removing");
        c->created_at_ns = (uint64_t) json_get_int_or_zero(v, "createdAt");
        c->started_at_ns = (uint64_t) json_get_int_or_zero(v, "startedAt");
        c->finished_at_ns = (uint64_t) json_get_int_or_zero(v, "finishedAt");
        c->exit_code = (int) json_get_int_or_zero(v, "exitCode");
        c->reason = json_dup_str(v, "reason");
        c->message = json_dup_str(v, "message");
        c->pid = (uint32_t) json_get_int_or_zero(v, "pid");
        c->memcg = json_dup_str(v, "memcg");
        c->rootfs_mounted = json_get_true(v, "rootfsMounted");
        c->unit_started = json_get_true(v, "unitStarted");
        c->runtime_created = json_get_true(v, "runtimeCreated");
        r = load_handler(t, c, v);
        if (r < 0)
                return r;
        if (!c->name || !c->image_ref || !c->image_id || !c->labels || !c->annotations || !c->log_path ||
            !c->log_dir || c->state < 0)
                return -EBADMSG;
        path = ctr_path(c, false, "config.pb");
        if (path && read_file(path, RECORD_MAX_SIZE, &c->config, &c->config_len) < 0)
                c->config_len = 0;
        *ret = TAKE_PTR(c);
        return 0;
}

char *ctr_info_json(const Container *c) {
        char *unit = ctr_unit_name(c), *bundle = ctr_run_dir(c), *out;
        yajl_gen g = yajl_gen_alloc(NULL);

        if (!g) {
                free(unit);
                free(bundle);
                return NULL;
        }
        yajl_gen_map_open(g);
        json_gen_key_str(g, "id", c->id);
        json_gen_key_str(g, "sandboxId", c->pod_id);
        json_gen_key_str(g, "unit", unit);
        json_gen_key_str(g, "bundle", bundle);
        json_gen_key_int(g, "pid", c->state == CTR_RUNNING ? c->pid : 0);
        json_gen_key_str(g, "runtime", c->runtime);
        json_gen_key_str(g, "runtimeHandler", c->handler);
        json_gen_key_str(g, "runtimeRoot", c->runtime_root);
        json_gen_key_bool(g, "rootfsMounted", c->rootfs_mounted);
        json_gen_key_str(g, "memoryCgroup", c->memcg);
        yajl_gen_map_close(g);
        out = json_gen_steal(g);
        yajl_gen_free(g);
        free(unit);
        free(bundle);
        return out;
}

