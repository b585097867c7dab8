/* What this host's kernel and OCI runtime can do for containers, found at start without blocking:
 * recursive read-only mounts need mount_setattr(2) with AT_RECURSIVE (a system call answers at
 * once) and a runtime that knows the "rro" mount option (`<runtime> features`, in a child); user
 * namespaces need a runtime that knows them (the same answer) and an overlay over idmapped mounts
 * of the root directory's file system, where the layers are (tried in a child, ctr-userns.c). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "child.h"
#include "ctr-internal.h"
#include "json-util.h"
#include "log.h"

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
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

static void features_read(Child *child, const ChildResult *res, void *userdata) {
        CtrTable *t = userdata;
        yajl_val v = NULL, opts;

        t->features_child = NULL;
        if (res->exit_code == 0 && res->out)
                v = json_parse(res->out, NULL, 0);
        opts = v ? json_get(v, "mountOptions") : NULL;
        for (size_t i = 0; opts && YAJL_IS_ARRAY(opts) && i < opts->u.array.len; i++)
                if (YAJL_IS_STRING(opts->u.array.values[i]) && strcmp(opts->u.array.values[i]->u.string, "rro") == 0)
                        t->runtime_rro = true;
        opts = v ? json_get(v, "linux") : NULL;
        opts = opts ? json_get(opts, "namespaces") : NULL;
        for (size_t i = 0; opts && YAJL_IS_ARRAY(opts) && i < opts->u.array.len; i++)
                if (YAJL_IS_STRING(opts->u.array.values[i]) && strcmp(opts->u.array.values[i]->u.string, "user") == 0)
                        t->runtime_userns = true;
        yajl_tree_free(v);
        log_debug("%s features: %s", t->env.runtime,
                  t->runtime_rro ? "the \"rro\" mount option" : "no \"rro\" mount option (or no features command)");
}

void ctr_features_probe(CtrTable *t) {
        t->kernel_rro = kernel_has_mount_setattr();
        ctr_userns_probe(t);
        if (!t->kernel_rro || !t->env.runtime || t->features_child)
                return;
        char *argv[] = { (char *) t->env.runtime, "features", NULL };
        ChildSpec spec = { .argv = argv, .timeout_usec = CTR_CHILD_TIMEOUT_USEC, .max_output = 256 * 1024 };
        if (child_spawn(t->env.loop, &spec, features_read, t, &t->features_child) < 0)
                log_warning("cannot run %s features: recursive read-only mounts are not offered", t->env.runtime);
}

bool ctr_recursive_read_only(const CtrTable *t) {
        return t->kernel_rro && t->runtime_rro;
}

bool ctr_user_namespaces(const CtrTable *t, const char **ret_reason) {
        const char *why = t->features_child || t->userns_child ? "the runtime and the kernel are still being probed"
                          : !t->runtime_userns ? "the OCI runtime does not offer user namespaces (its features command)"
                          : !t->kernel_userns  ? (t->userns_reason ?: "the kernel cannot make idmapped mounts here")
                                               : NULL;
        if (ret_reason)
                *ret_reason = why;
        return !why;
}
