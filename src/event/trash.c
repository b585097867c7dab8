/* Deleting trees off the loop: renamed into a trash directory at once, deleted by a child. */
#include "trash.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "fd-util.h"
#include "log.h"
#include "macro.h"
#include "strv.h"

/* Deleting a few GB of files takes minutes on a slow disk; past that the child is killed, and
 * what it left is deleted at the next start. */
#define TRASH_CHILD_TIMEOUT_USEC (3600ULL * 1000 * 1000)

static int delete_child(void *userdata) {
        return rm_rf_all(userdata);
}

static void deleted(Child *child, const ChildResult *res, void *userdata) {
        if (res->exit_code != 0)
                log_warning("Deleting what was put in the trash failed (it is tried again at the next start): %.*s",
                            (int) res->err_len, res->err ?: (res->timed_out ? "timed out" : "killed"));
}

static void spawn_delete(struct ev_loop *loop, char **paths) {
        ChildSpec spec = { .setup = delete_child, .setup_userdata = paths, .timeout_usec = TRASH_CHILD_TIMEOUT_USEC };
        int r;

        if (!paths)
                return;
        /* The child has its own copy of paths (fork): the caller's is freed at once. */
        r = child_spawn(loop, &spec, deleted, NULL, NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot start deleting %s (it is tried again at the next start): %m", paths[0]);
}

int trash_tree(struct ev_loop *loop, const char *trash_dir, const char *path, const char *name) {
        _cleanup_free_ char *t = NULL;
        char **paths = NULL;
        uint32_t rnd = 0;
        int r;

        assert(loop && trash_dir && path && name);
        if (access(path, F_OK) < 0 && errno == ENOENT)
                return 0;
        r = mkdir_p(trash_dir, 0700);
        if (r < 0)
                return r;
        (void) getrandom(&rnd, sizeof rnd, GRND_NONBLOCK);
        if (asprintf(&t, "%s/%s.%08x", trash_dir, name, rnd) < 0)
                return -ENOMEM;
        if (rename(path, t) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (strv_push(&paths, t) < 0)
                return 0; /* out of its place all the same: the next start deletes it */
        spawn_delete(loop, paths);
        strv_free(paths);
        return 0;
}

void trash_empty(struct ev_loop *loop, const char *trash_dir) {
        char **paths = NULL;
        struct dirent *de;
        DIR *d;

        assert(loop && trash_dir);
        d = opendir(trash_dir);
        if (!d)
                return;
        while ((de = readdir(d))) {
                char *p;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (asprintf(&p, "%s/%s", trash_dir, de->d_name) < 0)
                        break;
                (void) strv_push(&paths, p);
                free(p);
        }
        closedir(d);
        if (paths)
                log_info("Deleting %zu tree(s) a previous run left in %s.", strv_length(paths), trash_dir);
        spawn_delete(loop, paths);
        strv_free(paths);
}
