/* Whole files: read at once, written atomically. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fd-util.h"
#include "macro.h"

static int write_file_rename(const char *path, const char *data, size_t len, unsigned mode, bool durable) {
        char *tmp = NULL, *dir = NULL;
        int fd = -1, dfd = -1, r = 0;

        if (asprintf(&tmp, "%s.tmp.%d", path, (int) getpid()) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        for (size_t off = 0; off < len;) {
                ssize_t k = write(fd, data + off, len - off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                off += (size_t) k;
        }
        if ((durable && fsync(fd) < 0) || close(fd) < 0) {
                fd = -1;
                r = -errno;
                goto out;
        }
        fd = -1;
        if (rename(tmp, path) < 0) {
                r = -errno;
                goto out;
        }
        dir = durable ? strdup(path) : NULL;
        if (dir) {
                dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd >= 0)
                        (void) fsync(dfd);
        }
out:
        if (r < 0)
                (void) unlink(tmp);
        safe_close(fd);
        safe_close(dfd);
        free(tmp);
        free(dir);
        return r;
}

int write_file_atomic(const char *path, const char *data, size_t len, unsigned mode) {
        return write_file_rename(path, data, len, mode, true);
}

int write_file_replace(const char *path, const char *data, size_t len, unsigned mode) {
        return write_file_rename(path, data, len, mode, false);
}

/* The rest of read_file() on an open fd, which it closes. */
static int read_fd(int fd, size_t max, char **ret, size_t *ret_len) {
        char *buf;
        size_t len = 0, size = MIN(max, (size_t) 4096); /* grown as needed: max is a limit, not a size */

        buf = malloc(size + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        for (;;) {
                if (len == size && size < max) {
                        size_t bigger = size > max / 2 ? max : size * 2;
                        char *nb = realloc(buf, bigger + 1);
                        if (!nb) {
                                free(buf);
                                close(fd);
                                return -ENOMEM;
                        }
                        buf = nb;
                        size = bigger;
                }
                ssize_t k = read(fd, buf + len, size - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        free(buf);
                        close(fd);
                        return r;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len == max) {
                        char c;
                        if (read(fd, &c, 1) > 0) {
                                free(buf);
                                close(fd);
                                return -EFBIG;
                        }
                        break;
                }
        }
        close(fd);
        buf[len] = '\0';
        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return read_fd(fd, max, ret, ret_len);
}

int read_regular_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        struct stat st;
        /* O_NONBLOCK: opening a FIFO for reading would wait for a writer; O_NOCTTY: a terminal. */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return -EINVAL;
        }
        return read_fd(fd, max, ret, ret_len);
}
