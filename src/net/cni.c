/* CNI (spec 1.0): the network configuration from the config directory, watched with inotify, and
 * plugin chains (ADD, DEL, CHECK) run as non-blocking children with a timeout. */
#include "cni.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "child.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "time-util.h"
#include "macro.h"
#include "strv.h"

extern char **environ;

#define CNI_IFNAME "eth0"
#define MAX_CONFIG_SIZE (1024 * 1024)

struct Cni {
        struct ev_loop *loop;
        char *conf_dir;
        char **bin_dirs;
        char *cni_path; /* bin_dirs joined with ':' */
        uint64_t timeout_usec;

        char *network;      /* the current configuration list, normalized JSON */
        char *network_name;
        char *reason, *message; /* why not ready; NULL when ready */
        bool loaded;            /* read once: later reads log only changes */

        int inotify_fd;
        ev_io inotify_io;
        ev_timer retry_timer; /* the directory did not exist: look again */
        CniObserve observe;
        void *observe_userdata;
};

typedef enum CniCommand { CNI_ADD, CNI_DEL, CNI_CHECK } CniCommand;
static const char *const command_names[] = { "ADD", "DEL", "CHECK" };

struct CniOp {
        Cni *cni;
        CniCommand command;
        yajl_val net;
        char *network;
        size_t index;    /* plugin running now (ADD/CHECK: ascending; DEL: from the end) */
        char *result;    /* ADD: the previous plugin's result; DEL/CHECK: the ADD result */
        char *first_error;
        int first_errno;
        char *id, *netns, *name, *namespace, *uid;
        CniPortMapping *ports;
        size_t n_ports;
        Child *child;      /* the plugin running now, leader of a process group of its own */
        ev_timer timeout;  /* PluginTimeoutSec= for the plugin running now */
        bool timed_out;
        CniDone done;
        void *userdata;
        uint64_t start_usec;
};

static char *find_plugin(Cni *c, const char *type) {
        if (!type || !type[0] || strchr(type, '/') || strcmp(type, "..") == 0)
                return NULL;
        return find_executable(c->bin_dirs, type);
}

static bool have_plugin(Cni *c, const char *type) {
        char *p = find_plugin(c, type);
        free(p);
        return p != NULL;
}

/* Turns a .conf (one plugin) or .conflist into a normalized list; NULL with why set when invalid.
 * ret_missing: the first plugin type not found in the plugin directories, or NULL. */
static char *normalize(Cni *c, const char *file, const char *text, char **ret_name, char **ret_missing, char *why,
                       size_t why_size) {
        bool list = strlen(file) > 9 && strcmp(file + strlen(file) - 9, ".conflist") == 0;
        yajl_val v = json_parse(text, why, why_size), plugins;
        const char *name, *version;
        char *out = NULL;
        yajl_gen g;

        *ret_missing = NULL;
        if (!v)
                return NULL;
        name = json_get_str(v, "name");
        version = json_get_str(v, "cniVersion");
        plugins = list ? json_get(v, "plugins") : NULL;
        if (!name || !name[0]) {
                snprintf(why, why_size, "no \"name\"");
                goto out;
        }
        if (list && (!YAJL_IS_ARRAY(plugins) || plugins->u.array.len == 0)) {
                snprintf(why, why_size, "no \"plugins\" list");
                goto out;
        }
        if (!list && !json_get_str(v, "type")) {
                snprintf(why, why_size, "no \"type\"");
                goto out;
        }
        if (list)
                for (size_t i = 0; i < plugins->u.array.len; i++) {
                        const char *type = json_get_str(plugins->u.array.values[i], "type");
                        if (!type) {
                                snprintf(why, why_size, "plugin %zu has no \"type\"", i);
                                goto out;
                        }
                        if (!*ret_missing && !have_plugin(c, type))
                                *ret_missing = strdup(type);
                }
        else if (!have_plugin(c, json_get_str(v, "type")))
                *ret_missing = strdup(json_get_str(v, "type"));

        g = yajl_gen_alloc(NULL);
        if (!g)
                goto out;
        yajl_gen_map_open(g);
        json_gen_key_str(g, "cniVersion", version ?: "1.0.0");
        json_gen_key_str(g, "name", name);
        json_gen_str(g, "plugins");
        if (list)
                json_gen_value(g, plugins);
        else {
                yajl_gen_array_open(g);
                json_gen_value(g, v);
                yajl_gen_array_close(g);
        }
        yajl_gen_map_close(g);
        out = json_gen_steal(g);
        yajl_gen_free(g);
        *ret_name = strdup(name);
out:
        if (!out) {
                free(*ret_missing);
                *ret_missing = NULL;
        }
        yajl_tree_free(v);
        return out;
}

static int config_file_filter(const struct dirent *de) {
        size_t n = strlen(de->d_name);
        const char *suffixes[] = { ".conflist", ".conf", ".json" };

        if (de->d_name[0] == '.')
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t k = strlen(suffixes[i]);
                if (n > k && strcmp(de->d_name + n - k, suffixes[i]) == 0)
                        return 1;
        }
        return 0;
}

static void set_not_ready(Cni *c, const char *message) {
        (void) free_and_strdup(&c->reason, "NetworkPluginNotReady");
        (void) free_and_strdup(&c->message, message);
        free(c->network);
        c->network = NULL;
        free(c->network_name);
        c->network_name = NULL;
}

void cni_reload(Cni *c) {
        struct dirent **entries = NULL;
        char message[1024], why[512], *old_network = c->network ? strdup(c->network) : NULL;
        int n;

        n = scandir(c->conf_dir, &entries, config_file_filter, alphasort);
        if (n < 0) {
                snprintf(message, sizeof message, "cni config uninitialized: cannot read %s: %s", c->conf_dir,
                         strerror(errno));
                set_not_ready(c, message);
                goto out;
        }
        snprintf(message, sizeof message, "cni config uninitialized: no network configuration in %s", c->conf_dir);
        set_not_ready(c, message);
        for (int i = 0; i < n; i++) {
                char *path = NULL, *text = NULL, *name = NULL, *network;
                int r;

                if (asprintf(&path, "%s/%s", c->conf_dir, entries[i]->d_name) < 0)
                        break;
                r = read_file(path, MAX_CONFIG_SIZE, &text, NULL);
                if (r < 0) {
                        log_warning_errno(r, "CNI: cannot read '%s', skipping it: %m", path);
                        free(path);
                        continue;
                }
                char *missing = NULL;
                network = normalize(c, entries[i]->d_name, text, &name, &missing, why, sizeof why);
                free(text);
                if (!network) {
                        log_warning("CNI: '%s' is not a valid network configuration, skipping it: %s", path, why);
                        free(path);
                        continue;
                }
                /* The first valid file decides; its plugins must all be there. */
                if (missing) {
                        snprintf(message, sizeof message, "CNI plugin '%s' of network '%s' (%s) not found in %s",
                                 missing, name, path, c->cni_path);
                        set_not_ready(c, message);
                        free(network);
                        free(name);
                } else {
                        c->network = network;
                        c->network_name = name;
                        (void) free_and_strdup(&c->reason, NULL);
                        (void) free_and_strdup(&c->message, NULL);
                }
                free(missing);
                free(path);
                break;
        }
out:
        for (int i = 0; i < n; i++)
                free(entries[i]);
        free(entries);
        if (!c->loaded || !old_network != !c->network || (old_network && strcmp(old_network, c->network) != 0)) {
                if (c->network)
                        log_info("CNI: using network '%s' from %s.", c->network_name, c->conf_dir);
                else
                        log_warning("CNI: network not ready: %s", c->message);
        }
        c->loaded = true;
        free(old_network);
}

static void watch(Cni *c);

static void inotify_cb(struct ev_loop *loop, ev_io *w, int revents) {
        Cni *c = container_of(w, Cni, inotify_io);
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        bool gone = false;
        ssize_t n;

        while ((n = read(c->inotify_fd, buf, sizeof buf)) > 0)
                for (char *p = buf; p < buf + n;) {
                        struct inotify_event *e = (struct inotify_event *) p;
                        if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
                                gone = true;
                        p += sizeof *e + e->len;
                }
        cni_reload(c);
        if (gone) {
                ev_io_stop(loop, &c->inotify_io);
                c->inotify_fd = safe_close(c->inotify_fd);
                watch(c);
        }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        Cni *c = container_of(w, Cni, retry_timer);

        watch(c);
        if (c->inotify_fd >= 0) {
                ev_timer_stop(loop, &c->retry_timer);
                cni_reload(c);
        }
}

static void watch(Cni *c) {
        if (c->inotify_fd < 0)
                c->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (c->inotify_fd < 0)
                return;
        if (inotify_add_watch(c->inotify_fd, c->conf_dir,
                              IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_DELETE_SELF |
                                      IN_MOVE_SELF | IN_ONLYDIR) < 0) {
                /* Not there yet: look again every two seconds. */
                c->inotify_fd = safe_close(c->inotify_fd);
                if (!ev_is_active(&c->retry_timer)) {
                        ev_timer_set(&c->retry_timer, 2., 2.);
                        ev_timer_start(c->loop, &c->retry_timer);
                }
                return;
        }
        ev_io_set(&c->inotify_io, c->inotify_fd, EV_READ);
        ev_io_start(c->loop, &c->inotify_io);
}

int cni_reconfigure(Cni *c, const char *bin_dirs, uint64_t timeout_usec) {
        char *path = strdup(bin_dirs), **dirs = strv_split(bin_dirs, ":");

        if (!path || !dirs) {
                free(path);
                strv_free(dirs);
                return -ENOMEM;
        }
        free(c->cni_path);
        strv_free(c->bin_dirs);
        c->cni_path = path;
        c->bin_dirs = dirs;
        c->timeout_usec = timeout_usec;
        cni_reload(c);
        return 0;
}

int cni_new(struct ev_loop *loop, const char *conf_dir, const char *bin_dirs, uint64_t timeout_usec, Cni **ret) {
        Cni *c = calloc(1, sizeof *c);

        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->inotify_fd = -1;
        c->timeout_usec = timeout_usec;
        c->conf_dir = strdup(conf_dir);
        c->cni_path = strdup(bin_dirs);
        c->bin_dirs = strv_split(bin_dirs, ":");
        if (!c->conf_dir || !c->cni_path || !c->bin_dirs) {
                cni_free(c);
                return -ENOMEM;
        }
        ev_io_init(&c->inotify_io, inotify_cb, -1, EV_READ);
        ev_timer_init(&c->retry_timer, retry_cb, 2., 2.);
        watch(c);
        cni_reload(c);
        *ret = c;
        return 0;
}

Cni *cni_free(Cni *c) {
        if (!c)
                return NULL;
        ev_io_stop(c->loop, &c->inotify_io);
        ev_timer_stop(c->loop, &c->retry_timer);
        safe_close(c->inotify_fd);
        strv_free(c->bin_dirs);
        free(c->cni_path);
        free(c->conf_dir);
        free(c->network);
        free(c->network_name);
        free(c->reason);
        free(c->message);
        free(c);
        return NULL;
}

bool cni_ready(Cni *c, const char **ret_reason, const char **ret_detail) {
        if (ret_reason)
                *ret_reason = c->reason;
        if (ret_detail)
                *ret_detail = c->message;
        return c->network != NULL;
}

const char *cni_network_name(Cni *c) {
        return c->network_name;
}

/* --- plugin chains ------------------------------------------------------------------------------ */

/* The plugin and whatever it started: a plugin that is a script leaves its children behind when
 * only the script is killed. The plugin leads its own process group from child_spawn() on, and
 * is not reaped before its Child reports, so its pid is still the group's. */
static void kill_plugin(CniOp *op) {
        if (!op->child)
                return;
        (void) kill(-child_pid(op->child), SIGKILL);
        (void) child_kill(op->child, SIGKILL);
}

static void op_free(CniOp *op) {
        ev_timer_stop(op->cni->loop, &op->timeout);
        if (op->child) {
                kill_plugin(op);
                child_abandon(op->child);
        }
        yajl_tree_free(op->net);
        free(op->network);
        free(op->result);
        free(op->first_error);
        free(op->id);
        free(op->netns);
        free(op->name);
        free(op->namespace);
        free(op->uid);
        for (size_t i = 0; i < op->n_ports; i++) {
                free((char *) op->ports[i].protocol);
                free((char *) op->ports[i].host_ip);
        }
        free(op->ports);
        free(op);
}

void cni_op_cancel(CniOp *op) {
        if (op)
                op_free(op);
}

void cni_set_observer(Cni *c, CniObserve observe, void *userdata) {
        c->observe = observe;
        c->observe_userdata = userdata;
}

static void op_finish(CniOp *op, int error, const char *message) {
        if (op->cni->observe)
                op->cni->observe(command_names[op->command], error >= 0, now_usec(CLOCK_MONOTONIC) - op->start_usec,
                                 op->cni->observe_userdata);

        CniDone done = op->done;
        void *userdata = op->userdata;
        char *result = op->command == CNI_ADD && error >= 0 ? TAKE_PTR(op->result) : NULL;
        char *network = TAKE_PTR(op->network);

        op->child = NULL;
        op_free(op);
        if (error < 0) {
                /* The plugin's own words, with the errno it is reported as. */
                Error e = { .kind = ERROR_SYSTEM, .errno_value = -error, .message = (char *) message };
                done(&e, result, network, userdata);
        } else
                done(NULL, result, network, userdata);
        free(result);
        free(network);
}

static size_t n_plugins(CniOp *op) {
        return json_get(op->net, "plugins")->u.array.len;
}

static yajl_val plugin_at(CniOp *op, size_t i) {
        return json_get(op->net, "plugins")->u.array.values[i];
}

static char *plugin_stdin(CniOp *op, yajl_val plugin) {
        yajl_val caps = json_get(plugin, "capabilities"), pm = json_get(caps, "portMappings");
        yajl_val prev = NULL;
        char *out;
        yajl_gen g = yajl_gen_alloc(NULL);

        if (!g)
                return NULL;
        if (op->result)
                prev = json_parse(op->result, NULL, 0);
        yajl_gen_map_open(g);
        json_gen_key_str(g, "cniVersion", json_get_str(op->net, "cniVersion"));
        json_gen_key_str(g, "name", json_get_str(op->net, "name"));
        for (size_t i = 0; i < plugin->u.object.len; i++) {
                const char *k = plugin->u.object.keys[i];
                if (strcmp(k, "cniVersion") == 0 || strcmp(k, "name") == 0 || strcmp(k, "prevResult") == 0 ||
                    strcmp(k, "runtimeConfig") == 0)
                        continue;
                json_gen_str(g, k);
                json_gen_value(g, plugin->u.object.values[i]);
        }
        if (prev) {
                json_gen_str(g, "prevResult");
                json_gen_value(g, prev);
        }
        if (YAJL_IS_TRUE(pm) && op->n_ports > 0) {
                json_gen_str(g, "runtimeConfig");
                yajl_gen_map_open(g);
                json_gen_str(g, "portMappings");
                yajl_gen_array_open(g);
                for (size_t i = 0; i < op->n_ports; i++) {
                        yajl_gen_map_open(g);
                        json_gen_key_int(g, "hostPort", op->ports[i].host_port);
                        json_gen_key_int(g, "containerPort", op->ports[i].container_port);
                        json_gen_key_str(g, "protocol", op->ports[i].protocol);
                        if (op->ports[i].host_ip && op->ports[i].host_ip[0])
                                json_gen_key_str(g, "hostIP", op->ports[i].host_ip);
                        yajl_gen_map_close(g);
                }
                yajl_gen_array_close(g);
                yajl_gen_map_close(g);
        }
        yajl_gen_map_close(g);
        out = json_gen_steal(g);
        yajl_gen_free(g);
        yajl_tree_free(prev);
        return out;
}

static void op_step(CniOp *op);

/* "2s", "1500ms": a duration as PluginTimeoutSec= accepts it. */
static void format_duration(char *buf, size_t size, uint64_t usec) {
        if (usec % 1000000 == 0)
                snprintf(buf, size, "%llus", (unsigned long long) (usec / 1000000));
        else if (usec % 1000 == 0)
                snprintf(buf, size, "%llums", (unsigned long long) (usec / 1000));
        else
                snprintf(buf, size, "%lluus", (unsigned long long) usec);
}

/* "CNI ADD bridge: failed to allocate for range 0: no IP addresses available (code 11)". */
static char *plugin_error(CniOp *op, const char *type, const ChildResult *res) {
        yajl_val e = res->out_len > 0 ? json_parse(res->out, NULL, 0) : NULL;
        const char *msg = json_get_str(e, "msg"), *details = json_get_str(e, "details");
        long long code = 0;
        char *s = NULL, stderr_text[512], timeout[32];
        int r;

        (void) json_get_int(e, "code", &code);
        snprintf(stderr_text, sizeof stderr_text, "%.*s", (int) strcspn(res->err ?: "", "\n"), res->err ?: "");
        format_duration(timeout, sizeof timeout, op->cni->timeout_usec);
        if (op->timed_out)
                r = asprintf(&s, "CNI %s %s: timed out after %s (PluginTimeoutSec=), killed", command_names[op->command],
                             type, timeout);
        else if (msg)
                r = asprintf(&s, "CNI %s %s: %s%s%s (code %lld)", command_names[op->command], type, msg,
                             details && details[0] ? ": " : "", details ?: "", code);
        else if (res->exit_code >= 0)
                r = asprintf(&s, "CNI %s %s: exit status %d%s%s", command_names[op->command], type, res->exit_code,
                             stderr_text[0] ? ": " : "", stderr_text);
        else
                r = asprintf(&s, "CNI %s %s: killed by signal %d", command_names[op->command], type, res->signal);
        yajl_tree_free(e);
        return r < 0 ? NULL : s;
}

static void plugin_done(Child *child, const ChildResult *res, void *userdata) {
        CniOp *op = userdata;
        size_t i = op->command == CNI_DEL ? n_plugins(op) - 1 - op->index : op->index;
        const char *type = json_get_str(plugin_at(op, i), "type");

        ev_timer_stop(op->cni->loop, &op->timeout);
        op->child = NULL;
        /* An answer that came as the timer fired still counts. */
        op->timed_out = op->timed_out && res->exit_code != 0;
        if (res->exit_code != 0) {
                char *e = plugin_error(op, type, res);
                int error = op->timed_out ? -ETIMEDOUT : -EIO;
                op->timed_out = false;
                if (op->command != CNI_DEL) {
                        op_finish(op, error, e ?: "CNI plugin failed");
                        free(e);
                        return;
                }
                /* DEL goes on through the chain and reports the first failure. */
                if (!op->first_error) {
                        op->first_error = e;
                        op->first_errno = error;
                } else
                        free(e);
        } else if (op->command == CNI_ADD) {
                free(op->result);
                op->result = strndup(res->out, res->out_len);
        }
        op->index++;
        op_step(op);
}

/* In the plugin, before exec: a process group of its own, so that a timeout kills all of it. */
static int plugin_setup(void *userdata) {
        return setpgid(0, 0) < 0 ? -errno : 0;
}

static void plugin_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
        CniOp *op = container_of(w, CniOp, timeout);

        /* plugin_done() reports it once the plugin is reaped. */
        op->timed_out = true;
        kill_plugin(op);
}

static void op_step(CniOp *op) {
        char *argv[2] = {}, *input = NULL, **envp = NULL;
        char *cmd_env = NULL, *id_env = NULL, *netns_env = NULL, *args_env = NULL, *path_env = NULL;
        size_t n_env = 0, i;
        int r = -ENOMEM;

        if (op->index >= n_plugins(op)) {
                if (op->first_error) {
                        char *e = TAKE_PTR(op->first_error);
                        op_finish(op, op->first_errno < 0 ? op->first_errno : -EIO, e);
                        free(e);
                } else
                        op_finish(op, 0, NULL);
                return;
        }
        i = op->command == CNI_DEL ? n_plugins(op) - 1 - op->index : op->index;
        yajl_val plugin = plugin_at(op, i);
        const char *type = json_get_str(plugin, "type");

        argv[0] = find_plugin(op->cni, type);
        if (!argv[0]) {
                char message[512];
                snprintf(message, sizeof message, "CNI %s: plugin '%s' not found in %s", command_names[op->command],
                         type, op->cni->cni_path);
                if (op->command == CNI_DEL) {
                        if (!op->first_error)
                                op->first_error = strdup(message);
                        op->index++;
                        op_step(op);
                        return;
                }
                op_finish(op, -ENOENT, message);
                return;
        }
        input = plugin_stdin(op, plugin);
        while (environ[n_env])
                n_env++;
        envp = calloc(n_env + 8, sizeof(char *));
        if (!input || !envp)
                goto fail;
        if (asprintf(&cmd_env, "CNI_COMMAND=%s", command_names[op->command]) < 0 ||
            asprintf(&id_env, "CNI_CONTAINERID=%s", op->id) < 0 || asprintf(&netns_env, "CNI_NETNS=%s", op->netns) < 0 ||
            asprintf(&args_env, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;"
                                "K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s",
                     op->namespace, op->name, op->id, op->uid) < 0 ||
            asprintf(&path_env, "CNI_PATH=%s", op->cni->cni_path) < 0)
                goto fail;
        size_t k = 0;
        for (size_t j = 0; j < n_env; j++)
                if (strncmp(environ[j], "CNI_", 4) != 0)
                        envp[k++] = environ[j];
        envp[k++] = cmd_env;
        envp[k++] = id_env;
        envp[k++] = netns_env;
        envp[k++] = (char *) "CNI_IFNAME=" CNI_IFNAME;
        envp[k++] = args_env;
        envp[k++] = path_env;

        ChildSpec spec = {
                .argv = argv,
                .envp = envp,
                .stdin_data = input,
                .stdin_len = strlen(input),
                .max_output = 4 * 1024 * 1024,
                .setup = plugin_setup,
        };
        log_debug("CNI %s %s for pod %s (netns %s)", command_names[op->command], type, op->id, op->netns);
        r = child_spawn(op->cni->loop, &spec, plugin_done, op, &op->child);
        if (r >= 0) {
                /* Set from both sides, as shells do: whichever runs first makes the group. */
                (void) setpgid(child_pid(op->child), child_pid(op->child));
                if (op->cni->timeout_usec > 0) {
                        ev_timer_set(&op->timeout, (double) op->cni->timeout_usec / 1e6, 0.);
                        ev_timer_start(op->cni->loop, &op->timeout);
                }
        }
fail:
        free(argv[0]);
        free(input);
        free(envp);
        free(cmd_env);
        free(id_env);
        free(netns_env);
        free(args_env);
        free(path_env);
        if (r < 0) {
                char message[256];
                snprintf(message, sizeof message, "CNI %s %s: cannot run the plugin: %s", command_names[op->command],
                         type, strerror(-r));
                op_finish(op, r, message);
        }
}

static int op_start(Cni *c, CniCommand command, const CniPod *pod, const char *network, const char *prev_result,
                    CniDone done, void *userdata, CniOp **ret) {
        CniOp *op;
        char why[256];

        if (!network)
                network = c->network;
        if (!network)
                return -ENETDOWN;
        op = calloc(1, sizeof *op);
        if (!op)
                return -ENOMEM;
        op->cni = c;
        op->start_usec = now_usec(CLOCK_MONOTONIC);
        ev_timer_init(&op->timeout, plugin_timeout, 0., 0.);
        op->command = command;
        op->done = done;
        op->userdata = userdata;
        op->network = strdup(network);
        op->net = json_parse(network, why, sizeof why);
        op->result = prev_result && prev_result[0] ? strdup(prev_result) : NULL;
        op->id = strdup(pod->id);
        op->netns = strdup(pod->netns ?: "");
        op->name = strdup(pod->name ?: "");
        op->namespace = strdup(pod->namespace ?: "");
        op->uid = strdup(pod->uid ?: "");
        op->ports = calloc(pod->n_ports + 1, sizeof *op->ports);
        if (!op->network || !op->id || !op->netns || !op->name || !op->namespace || !op->uid || !op->ports) {
                op_free(op);
                return -ENOMEM;
        }
        if (!YAJL_IS_ARRAY(json_get(op->net, "plugins")) || n_plugins(op) == 0) {
                op_free(op);
                return -EINVAL;
        }
        for (size_t i = 0; i < pod->n_ports; i++) {
                op->ports[i] = pod->ports[i];
                op->ports[i].protocol = strdup(pod->ports[i].protocol ?: "tcp");
                op->ports[i].host_ip = pod->ports[i].host_ip ? strdup(pod->ports[i].host_ip) : NULL;
                op->n_ports++;
        }
        if (ret)
                *ret = op;
        op_step(op); /* may finish (and free op) at once */
        return 0;
}

int cni_add(Cni *c, const CniPod *pod, CniDone done, void *userdata, CniOp **ret) {
        return op_start(c, CNI_ADD, pod, NULL, NULL, done, userdata, ret);
}

int cni_del(Cni *c, const CniPod *pod, const char *network, const char *prev_result, CniDone done,
            void *userdata, CniOp **ret) {
        return op_start(c, CNI_DEL, pod, network, prev_result, done, userdata, ret);
}

int cni_check(Cni *c, const CniPod *pod, const char *network, const char *prev_result, CniDone done,
              void *userdata, CniOp **ret) {
        return op_start(c, CNI_CHECK, pod, network, prev_result, done, userdata, ret);
}

static bool is_ipv4(const char *address) {
        struct in_addr a;
        return inet_pton(AF_INET, address, &a) == 1;
}

int cni_result_ips(const char *result, char ***ret_ips, size_t *ret_n) {
        yajl_val v = json_parse(result, NULL, 0), ips = json_get(v, "ips");
        char **out;
        size_t n = 0;

        if (!v)
                return -EINVAL;
        out = calloc((YAJL_IS_ARRAY(ips) ? ips->u.array.len : 0) + 1, sizeof(char *));
        if (!out) {
                yajl_tree_free(v);
                return -ENOMEM;
        }
        for (size_t i = 0; YAJL_IS_ARRAY(ips) && i < ips->u.array.len; i++) {
                const char *a = json_get_str(ips->u.array.values[i], "address");
                if (!a)
                        continue;
                out[n] = strndup(a, strcspn(a, "/"));
                if (out[n])
                        n++;
        }
        yajl_tree_free(v);
        /* The first IPv4 address is the pod's IP, whatever the order of the ranges, as containerd
         * chooses by default; the others follow in the result's order. */
        for (size_t i = 0; i < n; i++)
                if (is_ipv4(out[i])) {
                        char *first = out[i];
                        memmove(out + 1, out, i * sizeof(char *));
                        out[0] = first;
                        break;
                }
        *ret_ips = out;
        *ret_n = n;
        return 0;
}
