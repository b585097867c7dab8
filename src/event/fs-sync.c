/* Durability off the loop: syncfs(2) in a thread of its own, coalesced. The thread does nothing
 * else: it shares no state with the loop but the request flag (a fork per save would cost the loop
 * the fork, a few ms under ASan). */
#include "fs-sync.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fd-util.h"
#include "log.h"

struct FsSync {
        char *path; /* on the file system to sync */
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        bool pending, quit, failed;
};

static void *sync_thread(void *userdata) {
        FsSync *s = userdata;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (!s->pending && !s->quit)
                        pthread_cond_wait(&s->wake, &s->lock);
                if (!s->pending)
                        break; /* quit, nothing owed */
                s->pending = false;
                pthread_mutex_unlock(&s->lock);
                /* Saves that come while this runs set pending again: one more sync, however many. */
                int fd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                bool ok = fd >= 0 && syncfs(fd) >= 0;
                safe_close(fd);
                pthread_mutex_lock(&s->lock);
                if (!ok)
                        s->failed = true;
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

int fs_sync_new(const char *path, FsSync **ret) {
        FsSync *s = calloc(1, sizeof *s);
        int r;

        assert(path && ret);
        if (!s)
                return -ENOMEM;
        s->path = strdup(path);
        if (!s->path) {
                free(s);
                return -ENOMEM;
        }
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->wake, NULL);
        r = -pthread_create(&s->thread, NULL, sync_thread, s);
        if (r < 0) {
                pthread_cond_destroy(&s->wake);
                pthread_mutex_destroy(&s->lock);
                free(s->path);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void fs_sync_request(FsSync *s) {
        bool failed;

        if (!s)
                return;
        pthread_mutex_lock(&s->lock);
        s->pending = true;
        failed = s->failed;
        s->failed = false;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        if (failed)
                log_warning("A sync of the records' file system failed; the kernel writes them back in its own time.");
}

FsSync *fs_sync_free(FsSync *s) {
        if (!s)
                return NULL;
        /* What is owed is synced before the thread ends. */
        pthread_mutex_lock(&s->lock);
        s->quit = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        free(s->path);
        free(s);
        return NULL;
}
