/* Durability off the loop: syncfs(2) in a child, coalesced. */
#include "fs-sync.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child.h"
#include "fd-util.h"
#include "log.h"

#define FS_SYNC_TIMEOUT_USEC (600ULL * 1000 * 1000)

struct FsSync {
        struct ev_loop *loop;
        char *path;
        Child *child; /* the sync in flight */
        bool again;   /* saves came while it ran: one more */
};

static int sync_child(void *userdata) {
        const char *path = userdata;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

        if (fd < 0 || syncfs(fd) < 0) {
                r = -errno;
                fprintf(stderr, "syncfs %s: %s\n", path, strerror(errno));
        }
        safe_close(fd);
        return r;
}

static void spawn(FsSync *s);

static void synced(Child *child, const ChildResult *res, void *userdata) {
        FsSync *s = userdata;

        s->child = NULL;
        if (res->exit_code != 0)
                log_warning("Cannot make the records under %s durable: %.*s", s->path, (int) res->err_len,
                            res->err ?: (res->timed_out ? "timed out" : "killed"));
        if (s->again)
                spawn(s);
}

static void spawn(FsSync *s) {
        ChildSpec spec = { .setup = sync_child, .setup_userdata = s->path, .timeout_usec = FS_SYNC_TIMEOUT_USEC };
        int r;

        s->again = false;
        r = child_spawn(s->loop, &spec, synced, s, &s->child);
        if (r < 0) {
                s->child = NULL;
                log_warning_errno(r, "Cannot start syncing %s (the kernel writes it back in its own time): %m",
                                  s->path);
        }
}

int fs_sync_new(struct ev_loop *loop, const char *path, FsSync **ret) {
        FsSync *s = calloc(1, sizeof *s);

        assert(loop && path && ret);
        if (!s || !(s->path = strdup(path))) {
                free(s);
                return -ENOMEM;
        }
        s->loop = loop;
        *ret = s;
        return 0;
}

void fs_sync_request(FsSync *s) {
        if (!s)
                return;
        if (s->child)
                s->again = true;
        else
                spawn(s);
}

FsSync *fs_sync_free(FsSync *s) {
        if (!s)
                return NULL;
        if (s->child) {
                child_abandon(s->child);
                s->again = true;
        }
        if (s->again)
                (void) sync_child(s->path);
        free(s->path);
        free(s);
        return NULL;
}
