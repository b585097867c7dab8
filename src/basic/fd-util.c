/* File descriptor helpers. */
#include "fd-util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

static int fd_flag(int fd, int get, int set, int flag, bool on) {
        int flags = fcntl(fd, get);
        if (flags < 0)
                return -errno;
        int nflags = on ? flags | flag : flags & ~flag;
        if (nflags != flags && fcntl(fd, set, nflags) < 0)
                return -errno;
        return 0;
}

int fd_nonblock(int fd, bool nonblock) {
        return fd_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, nonblock);
}

int fd_cloexec(int fd, bool cloexec) {
        return fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, cloexec);
}

int mkdir_p(const char *path, unsigned mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;

        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int mkdir_parents(const char *path, unsigned mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        char *slash = strrchr(p, '/');
        if (!slash || slash == p)
                return 0;
        *slash = '\0';
        return mkdir_p(p, mode);
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int rm_rf(const char *path) {
        int r = nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
        if (r < 0 && errno == ENOENT)
                return 0;
        return r < 0 ? -errno : r;
}

int rm_rf_all(char *const *paths) {
        int r = 0;

        for (char *const *p = paths; p && *p; p++) {
                int k = rm_rf(*p);
                if (k < 0) {
                        fprintf(stderr, "remove %s: %s\n", *p, strerror(-k));
                        r = k;
                }
        }
        return r;
}

int dir_for_each_id(const char *dir, void (*fn)(const char *id, void *userdata), void *userdata) {
        struct dirent **entries = NULL;
        int n = scandir(dir, &entries, NULL, alphasort);

        if (n < 0)
                return errno == ENOENT ? 0 : -errno;
        for (int i = 0; i < n; i++) {
                const char *id = entries[i]->d_name;
                if (strlen(id) == 64 && strspn(id, "0123456789abcdef") == 64)
                        fn(id, userdata);
                free(entries[i]);
        }
        free(entries);
        return 0;
}

char *find_executable(char *const *dirs, const char *name) {
        char *path;

        for (char *const *d = dirs; d && *d; d++) {
                if (asprintf(&path, "%s/%s", *d, name) < 0)
                        return NULL;
                if (access(path, X_OK) == 0)
                        return path;
                free(path);
        }
        return NULL;
}
