/* File descriptor helpers. */
#include "fd-util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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

/* The mount a file is on: its mount ID (0 where the kernel gives none, before 5.8), whether it is
 * a mount's root, and its device (another file system is another mount, whatever the kernel says of
 * mount IDs). Where statx() is missing (before 4.11, or refused by a seccomp filter), lstat's
 * device alone. Never triggers an automount. */
static int mount_of(int dirfd, const char *name, int flags, uint64_t *ret_id, bool *ret_root, dev_t *ret_dev,
                    mode_t *ret_mode) {
        struct statx stx;

        if (statx(dirfd, name, flags | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE | STATX_MNT_ID, &stx) < 0) {
                struct stat st;
                if ((errno != ENOSYS && errno != EPERM) || fstatat(dirfd, name, &st, flags | AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                *ret_id = 0;
                *ret_root = false;
                *ret_dev = st.st_dev;
                *ret_mode = st.st_mode;
                return 0;
        }
        *ret_id = stx.stx_mask & STATX_MNT_ID ? stx.stx_mnt_id : 0;
        *ret_root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
        *ret_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
        *ret_mode = stx.stx_mode;
        return 0;
}

/* path's entries (it is a directory on mount mnt_id), then path. A mount below it is neither
 * entered nor removed, whatever its file system (st_dev would not tell a bind mount of the same
 * one): -EBUSY once the rest is gone. Holds no descriptor across the recursion (any depth the
 * path's length allows). */
static int rm_tree(char *path, size_t len, size_t size, uint64_t mnt_id, dev_t dev) {
        struct dirent **entries = NULL;
        int n, r = 0;

        n = scandir(path, &entries, NULL, NULL);
        if (n < 0)
                return errno == ENOENT ? 0 : -errno;
        for (int i = 0; i < n; i++) {
                const char *name = entries[i]->d_name;
                uint64_t id;
                bool root;
                dev_t d;
                mode_t mode;
                int k;

                if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                        goto next;
                if (len + 1 + strlen(name) + 1 > size) {
                        k = -ENAMETOOLONG;
                        goto done;
                }
                snprintf(path + len, size - len, "/%s", name);
                k = mount_of(AT_FDCWD, path, 0, &id, &root, &d, &mode);
                if (k == -ENOENT)
                        k = 0;
                else if (k >= 0 && (root || (mnt_id != 0 && id != mnt_id) || d != dev))
                        k = -EBUSY;
                else if (k >= 0 && S_ISDIR(mode))
                        k = rm_tree(path, len + 1 + strlen(name), size, mnt_id, dev);
                else if (k >= 0 && unlink(path) < 0 && errno != ENOENT)
                        k = -errno;
        done:
                path[len] = '\0';
                if (k < 0 && r >= 0)
                        r = k;
        next:
                free(entries[i]);
        }
        free(entries);
        if (r >= 0 && rmdir(path) < 0 && errno != ENOENT)
                r = -errno;
        return r;
}

int rm_rf(const char *path) {
        char buf[PATH_MAX];
        uint64_t mnt_id;
        bool root;
        dev_t dev;
        mode_t mode;
        int r;

        r = mount_of(AT_FDCWD, path, 0, &mnt_id, &root, &dev, &mode);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        if (!S_ISDIR(mode))
                return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
        if (strlen(path) >= sizeof buf)
                return -ENAMETOOLONG;
        strcpy(buf, path);
        return rm_tree(buf, strlen(buf), sizeof buf, mnt_id, dev);
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
