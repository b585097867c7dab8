/* RuntimeClass handlers: the OCI runtimes a pod may ask for by name (RunPodSandbox's
 * runtime_handler), each with its binary, its --root and its own options. Out of the box runc and
 * crun, where found and where they can run on this host's cgroups; [Runtime.<name>] sections add or
 * replace handlers; "" is the default handler. What each one offers (the "rro" mount option, user
 * namespaces) comes from `<runtime> features`, asked once at start in a child; the kernel's part is
 * a system call that answers at once (mount_setattr with AT_RECURSIVE), and for user namespaces an
 * overlay of idmapped layers tried in a child (ctr-userns.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "child.h"
#include "ctr-internal.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "quote.h"
#include "strv.h"

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static bool kernel_has_mount_setattr(void) {
#ifdef SYS_mount_setattr
        /* No attributes (size 0): EINVAL or EBADF where the call exists, ENOSYS where it does not. */
        long r = syscall(SYS_mount_setattr, -1, "", AT_EMPTY_PATH | AT_RECURSIVE, NULL, 0);
        return r == 0 || errno != ENOSYS;
#else
        return false;
#endif
}

/* crun (1.8, Debian 12's) refuses a v1 host whose cgroup v2 hierarchy ("unified") has controllers:
 * "cgroups in hybrid mode not supported". runc runs there. */
static const char *crun_cgroup_refusal(void) {
        _cleanup_free_ char *controllers = NULL;
        struct statfs fs;

        if (statfs("/sys/fs/cgroup", &fs) < 0 || fs.f_type == CGROUP2_SUPER_MAGIC)
                return NULL;
        if (read_file("/sys/fs/cgroup/unified/cgroup.controllers", 4096, &controllers, NULL) < 0)
                return NULL;
        if (!controllers[strspn(controllers, " \n")])
                return NULL;
        return "crun does not run on this host's cgroups: v1 with a v2 \"unified\" hierarchy that has controllers "
               "(\"hybrid\" mode)";
}

static char *resolve(const char *path) {
        const char *search = getenv("PATH") ?: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

        if (strchr(path, '/'))
                return access(path, X_OK) == 0 ? strdup(path) : NULL;
        _cleanup_(strv_freep) char **dirs = strv_split(search, ":");
        return dirs ? find_executable(dirs, path) : NULL;
}

static void handler_done(CtrHandler *h) {
        if (h->features_child)
                child_abandon(h->features_child);
        free(h->name);
        free(h->configured);
        free(h->path);
        free(h->root);
        strv_free(h->options);
        free(h->why);
        *h = (CtrHandler) {};
}

void ctr_handlers_free(CtrTable *t) {
        for (size_t i = 0; i < t->n_handlers; i++)
                handler_done(&t->handlers[i]);
        free(t->handlers);
        t->handlers = NULL;
        t->n_handlers = 0;
        t->default_handler = NULL;
        free(t->legacy_runtime);
        t->legacy_runtime = NULL;
}

static CtrHandler *find(CtrTable *t, const char *name) {
        for (size_t i = 0; i < t->n_handlers; i++)
                if (strcmp(t->handlers[i].name, name) == 0)
                        return &t->handlers[i];
        return NULL;
}

/* A handler named name, run as configured (a name in $PATH or a path), added or (same name)
 * replaced. root "": <state>/runc for runc and for [Containers] Runtime= (legacy), where rktlet has
 * always kept the one runtime's state, else <state>/runtimes/<name>. */
static int handler_add(CtrTable *t, const char *name, const char *configured, const char *root, const char *options,
                       bool builtin, bool legacy) {
        CtrHandler *h = find(t, name);

        if (!h) {
                CtrHandler *a = realloc(t->handlers, (t->n_handlers + 1) * sizeof *a);
                if (!a)
                        return -ENOMEM;
                t->handlers = a;
                h = &a[t->n_handlers++];
        } else
                handler_done(h);
        *h = (CtrHandler) { .builtin = builtin };
        h->name = strdup(name);
        h->configured = strdup(configured && configured[0] ? configured : name);
        if (root && root[0])
                h->root = strdup(root);
        else if (legacy || strcmp(name, "runc") == 0 ? asprintf(&h->root, "%s/runc", t->env.state_dir) < 0
                                                      : asprintf(&h->root, "%s/runtimes/%s", t->env.state_dir, name) < 0)
                h->root = NULL;
        h->options = strv_split(options ?: "", " \t");
        if (!h->name || !h->configured || !h->root || !h->options)
                return -ENOMEM;
        h->path = resolve(h->configured);
        if (!h->path) {
                if (asprintf(&h->why, "%s: no such executable%s", h->configured,
                             strchr(h->configured, '/') ? "" : " in $PATH") < 0)
                        return -ENOMEM;
        } else {
                const char *base = strrchr(h->path, '/');
                const char *refusal = strcmp(base ? base + 1 : h->path, "crun") == 0 ? crun_cgroup_refusal() : NULL;
                if (refusal && !(h->why = strdup(refusal)))
                        return -ENOMEM;
        }
        return 0;
}

static const char *basename_of(const char *path) {
        const char *s = strrchr(path, '/');
        return s ? s + 1 : path;
}

/* "runc, crun" */
static char *handler_names(const CtrTable *t) {
        size_t n = 1;
        for (size_t i = 0; i < t->n_handlers; i++)
                n += strlen(t->handlers[i].name) + 2;
        char *s = malloc(n), *p = s;
        if (!s)
                return NULL;
        *p = '\0';
        for (size_t i = 0; i < t->n_handlers; i++)
                p += sprintf(p, "%s%s", i ? ", " : "", t->handlers[i].name);
        return s;
}

int ctr_handlers_init(CtrTable *t, const CtrHandlerConfig *config, char **ret_error) {
        const char *legacy = config->legacy_runtime && config->legacy_runtime[0] ? config->legacy_runtime : NULL;
        _cleanup_free_ char *legacy_name = NULL;
        int r = 0;

        *ret_error = NULL;
        /* Built in: runc and crun. One whose binary is missing, or that cannot run here, is listed
         * with the reason but not offered. */
        for (size_t i = 0; i < 2 && r >= 0; i++) {
                const char *name = i == 0 ? "runc" : "crun";
                r = handler_add(t, name, name, "", "", true, false);
        }
        /* What records from before handlers were made with: Runtime=, else runc, else crun, as the
         * daemon then chose. */
        if (r >= 0) {
                t->legacy_runtime = resolve(legacy ?: "runc");
                if (!t->legacy_runtime && !legacy)
                        t->legacy_runtime = resolve("crun");
                if (!t->legacy_runtime && !(t->legacy_runtime = strdup(legacy ?: "runc")))
                        return -ENOMEM;
        }
        /* [Containers] Runtime= (before handlers): a handler named after the binary, the default. */
        if (r >= 0 && legacy) {
                const char *base = basename_of(legacy);
                legacy_name = strdup(config_runtime_name_is_valid(base) ? base : "default");
                if (!legacy_name)
                        return -ENOMEM;
                r = handler_add(t, legacy_name, legacy, "", "", false, true);
        }
        for (size_t i = 0; i < config->n_runtimes && r >= 0; i++)
                r = handler_add(t, config->runtimes[i].name, config->runtimes[i].path, config->runtimes[i].root,
                                config->runtimes[i].options, false, false);
        if (r < 0)
                return r;

        for (size_t i = 0; i < t->n_handlers; i++) {
                CtrHandler *h = &t->handlers[i];
                if (!h->why)
                        log_info("Runtime handler %s: %s, root %s%s.", h->name, h->path, h->root,
                                 h->options[0] ? ", with options" : "");
                else if (h->builtin)
                        log_info("Runtime handler %s is not offered: %s.", h->name, h->why);
                else
                        log_warning("Runtime handler %s cannot run containers: %s.", h->name, h->why);
        }

        /* Which one "" means: DefaultRuntime=, else Runtime='s, else the first of runc, crun and the
         * sections that can run. */
        if (config->default_runtime && config->default_runtime[0]) {
                t->default_handler = find(t, config->default_runtime);
                if (!t->default_handler) {
                        _cleanup_free_ char *names = handler_names(t);
                        if (asprintf(ret_error, "[Containers] DefaultRuntime=%s names no runtime handler (there are: %s)",
                                     config->default_runtime, names ?: "?") < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
        } else if (legacy_name)
                t->default_handler = find(t, legacy_name);
        else
                for (size_t i = 0; i < t->n_handlers && !t->default_handler; i++)
                        if (!t->handlers[i].why)
                                t->default_handler = &t->handlers[i];
        if (t->default_handler && !t->default_handler->why)
                log_info("Default runtime handler: %s.", t->default_handler->name);
        else if (t->default_handler)
                log_warning("The default runtime handler %s cannot run containers: %s.", t->default_handler->name,
                            t->default_handler->why);
        else
                log_warning("No runtime handler can run containers here (runc: %s; crun: %s).", find(t, "runc")->why ?: "?",
                            find(t, "crun")->why ?: "?");
        return 0;
}

const CtrHandler *ctr_handler_find(const CtrTable *t, const char *name) {
        if (!name || !name[0])
                return t->default_handler;
        return find((CtrTable *) t, name);
}

int ctr_handler_get(const CtrTable *t, const char *name, const CtrHandler **ret, Error *error) {
        const CtrHandler *h = ctr_handler_find(t, name);

        if (!h && name && name[0]) {
                _cleanup_free_ char *names = handler_names(t);
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "unknown runtime_handler %s (configured: %s)",
                                 QUOTE(name), names && names[0] ? names : "none");
        }
        if (!h)
                return error_set(error, ERROR_WRONG_STATE, ENOENT,
                                 "no runtime handler can run containers here (runc: %s; crun: %s)",
                                 find((CtrTable *) t, "runc")->why ?: "?", find((CtrTable *) t, "crun")->why ?: "?");
        if (h->why)
                return error_set(error, ERROR_WRONG_STATE, ENOEXEC, "runtime_handler %s cannot run containers here: %s",
                                 QUOTE(name && name[0] ? name : h->name), h->why);
        *ret = h;
        return 0;
}

static void features_read(Child *child, const ChildResult *res, void *userdata) {
        CtrHandler *h = userdata;
        yajl_val v = NULL, opts;

        h->features_child = NULL;
        if (res->exit_code == 0 && res->out)
                v = json_parse(res->out, NULL, 0);
        opts = v ? json_get(v, "mountOptions") : NULL;
        for (size_t i = 0; opts && YAJL_IS_ARRAY(opts) && i < opts->u.array.len; i++)
                if (YAJL_IS_STRING(opts->u.array.values[i]) && strcmp(opts->u.array.values[i]->u.string, "rro") == 0)
                        h->rro = true;
        opts = v ? json_get(v, "linux") : NULL;
        opts = opts ? json_get(opts, "namespaces") : NULL;
        for (size_t i = 0; opts && YAJL_IS_ARRAY(opts) && i < opts->u.array.len; i++)
                if (YAJL_IS_STRING(opts->u.array.values[i]) && strcmp(opts->u.array.values[i]->u.string, "user") == 0)
                        h->userns = true;
        yajl_tree_free(v);
        log_debug("Runtime handler %s features: %s", h->name,
                  h->rro ? "the \"rro\" mount option" : "no \"rro\" mount option (or no features command)");
}

void ctr_handlers_probe(CtrTable *t) {
        t->kernel_rro = kernel_has_mount_setattr();
        ctr_userns_probe(t);
        for (size_t i = 0; i < t->n_handlers && t->kernel_rro; i++) {
                CtrHandler *h = &t->handlers[i];
                if (h->why || h->features_child)
                        continue;
                /* With the handler's own options: a wrapper may need them. */
                _cleanup_(strv_freep) char **argv = NULL;
                int r = strv_push(&argv, h->path);
                for (size_t j = 0; r >= 0 && h->options[j]; j++)
                        r = strv_push(&argv, h->options[j]);
                if (r >= 0)
                        r = strv_push(&argv, "features");
                ChildSpec spec = { .argv = argv, .timeout_usec = CTR_CHILD_TIMEOUT_USEC, .max_output = 256 * 1024 };
                if (r < 0 || child_spawn(t->env.loop, &spec, features_read, h, &h->features_child) < 0)
                        log_warning("Cannot run %s features: recursive read-only mounts are not offered with runtime "
                                    "handler %s.", h->path, h->name);
        }
}

bool ctr_handler_recursive_read_only(const CtrTable *t, const CtrHandler *h) {
        return t->kernel_rro && h && h->rro;
}

bool ctr_handler_probing(const CtrTable *t, const CtrHandler *h) {
        return h && (h->features_child || t->userns_child);
}

bool ctr_handler_user_namespaces(const CtrTable *t, const CtrHandler *h, const char **ret_reason) {
        const char *why = !h                                   ? "no runtime handler"
                          : ctr_handler_probing(t, h) ? "the runtime and the kernel are still being probed"
                          : !h->userns ? "the OCI runtime does not offer user namespaces (its features command)"
                          : !t->kernel_userns ? (t->userns_reason ?: "the kernel cannot make idmapped mounts here")
                                              : NULL;
        if (ret_reason)
                *ret_reason = why;
        return !why;
}

char **ctr_runtime_argv(const Container *c, char *const *args) {
        _cleanup_(strv_freep) char **argv = NULL;
        int r;

        r = strv_push(&argv, c->runtime);
        for (size_t i = 0; r >= 0 && c->runtime_options && c->runtime_options[i]; i++)
                r = strv_push(&argv, c->runtime_options[i]);
        if (r >= 0)
                r = strv_push(&argv, "--root");
        if (r >= 0)
                r = strv_push(&argv, c->runtime_root);
        for (size_t i = 0; r >= 0 && args[i]; i++)
                r = strv_push(&argv, args[i]);
        return r < 0 ? NULL : TAKE_PTR(argv);
}

int ctr_take_handler(Container *c, const CtrHandler *h) {
        c->handler = strdup(h->name);
        c->runtime = strdup(h->path);
        c->runtime_root = strdup(h->root);
        c->runtime_options = NULL;
        int r = c->handler && c->runtime && c->runtime_root ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && h->options[i]; i++)
                r = strv_push(&c->runtime_options, h->options[i]);
        return r;
}
