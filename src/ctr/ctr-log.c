/* The CRI container log format kubelet reads: "<RFC3339Nano time> <stdout|stderr> <P|F> <text>\n",
 * one record per line of output, a line longer than the maximum split into P(artial) records and
 * ended by an F(ull) one. A container's two pipes feed one file, reopened after kubelet rotates it,
 * always beneath the pod's log directory and through no symlink. */
#include "ctr-log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "fd-util.h"
#include "macro.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct CriLog {
        char *dir, *path; /* path: relative to dir */
        int fd;
        size_t max_line;
        Buffer pending[_CRI_STREAM_MAX]; /* the start of a line not ended yet */
};

static const char *const stream_names[_CRI_STREAM_MAX] = { "stdout", "stderr" };

size_t cri_log_timestamp(uint64_t ns, char *buf) {
        time_t secs = (time_t) (ns / 1000000000ULL);
        unsigned frac = (unsigned) (ns % 1000000000ULL);
        struct tm tm;
        size_t n;

        gmtime_r(&secs, &tm);
        n = strftime(buf, 21, "%Y-%m-%dT%H:%M:%S", &tm);
        if (frac > 0) {
                /* Go's RFC3339Nano: up to nine digits, trailing zeros dropped. */
                char digits[10];
                int k = 9;
                snprintf(digits, sizeof digits, "%09u", frac);
                while (k > 0 && digits[k - 1] == '0')
                        k--;
                buf[n++] = '.';
                memcpy(buf + n, digits, (size_t) k);
                n += (size_t) k;
        }
        buf[n++] = 'Z';
        buf[n] = '\0';
        return n;
}

static int openat_beneath(int dfd, const char *name, uint64_t flags, uint64_t mode) {
        struct open_how how = {
                .flags = flags,
                .mode = mode,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        };
        int fd = (int) syscall(SYS_openat2, dfd, name, &how, sizeof how);

        return fd < 0 ? -errno : fd; /* -ENOSYS before Linux 5.6: no unsafe fallback */
}

/* dir is opened as any path is (the operator may have put /var/log behind a symlink); path is
 * resolved beneath it, one directory at a time, missing ones made, a symlink anywhere refused. */
static int open_log(const char *dir, const char *path) {
        _cleanup_close_ int dfd = -1, fd = -1;
        _cleanup_free_ char *copy = strdup(path);
        struct stat st;
        char *name, *slash;

        if (!copy)
                return -ENOMEM;
        dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        for (name = copy; (slash = strchr(name, '/')); name = slash + 1) {
                int sub;

                *slash = '\0';
                if (name[0] == '\0' || strcmp(name, ".") == 0)
                        continue;
                /* mkdirat() does not follow a symlink either: it finds the name taken (EEXIST), and
                 * the open below refuses it (ELOOP). */
                if (mkdirat(dfd, name, 0755) < 0 && errno != EEXIST)
                        return -errno;
                sub = openat_beneath(dfd, name, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
                if (sub < 0)
                        return sub;
                close(dfd);
                dfd = sub;
        }
        /* O_NONBLOCK: a FIFO put there must not block the daemon's loop in open(). */
        fd = openat_beneath(dfd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0640);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        (void) fd_nonblock(fd, false);
        return TAKE_FD(fd);
}

int cri_log_open(const char *dir, const char *path, size_t max_line, CriLog **ret) {
        CriLog *l = calloc(1, sizeof *l);
        int fd;

        if (!l)
                return -ENOMEM;
        l->fd = -1;
        l->dir = strdup(dir);
        l->path = strdup(path);
        if (!l->dir || !l->path) {
                cri_log_free(l);
                return -ENOMEM;
        }
        fd = open_log(dir, path);
        if (fd < 0) {
                cri_log_free(l);
                return fd;
        }
        l->fd = fd;
        l->max_line = max_line ?: 16 * 1024;
        *ret = l;
        return 0;
}

CriLog *cri_log_free(CriLog *l) {
        if (!l)
                return NULL;
        for (int s = 0; s < _CRI_STREAM_MAX; s++)
                buffer_free(&l->pending[s]);
        if (l->fd >= 0)
                close(l->fd);
        free(l->dir);
        free(l->path);
        free(l);
        return NULL;
}

int cri_log_reopen(CriLog *l) {
        int fd = open_log(l->dir, l->path);

        if (fd < 0)
                return fd;
        close(l->fd);
        l->fd = fd;
        return 0;
}

/* One record, written with a single writev so records of the two streams never interleave. */
static int write_record(CriLog *l, CriStream s, char tag, const char *text, size_t len) {
        struct timespec ts;
        char head[64];
        size_t n;

        clock_gettime(CLOCK_REALTIME, &ts);
        n = cri_log_timestamp((uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec, head);
        n += (size_t) snprintf(head + n, sizeof head - n, " %s %c ", stream_names[s], tag);
        struct iovec iov[] = {
                { .iov_base = head, .iov_len = n },
                { .iov_base = (void *) text, .iov_len = len },
                { .iov_base = (void *) "\n", .iov_len = 1 },
        };
        size_t total = n + len + 1;
        ssize_t w = writev(l->fd, iov, ELEMENTSOF(iov));
        if (w < 0)
                return -errno;
        return (size_t) w == total ? 0 : -EIO;
}

int cri_log_feed(CriLog *l, CriStream s, const void *data, size_t len) {
        Buffer *p = &l->pending[s];
        const char *d = data;
        int r;

        while (len > 0) {
                const char *nl = memchr(d, '\n', len);
                size_t take = nl ? (size_t) (nl - d) : len;

                /* Too long for one record: out go full-size partial records. */
                while (buffer_len(p) + take >= l->max_line && (buffer_len(p) + take > l->max_line || !nl)) {
                        size_t from_data = l->max_line - buffer_len(p);
                        if (buffer_append(p, d, from_data) < 0)
                                return -ENOMEM;
                        r = write_record(l, s, 'P', (const char *) buffer_peek(p), buffer_len(p));
                        buffer_consume(p, buffer_len(p));
                        if (r < 0)
                                return r;
                        d += from_data;
                        len -= from_data;
                        take -= from_data;
                }
                if (!nl)
                        return buffer_append(p, d, take);
                if (buffer_len(p) > 0) {
                        if (buffer_append(p, d, take) < 0)
                                return -ENOMEM;
                        r = write_record(l, s, 'F', (const char *) buffer_peek(p), buffer_len(p));
                        buffer_consume(p, buffer_len(p));
                } else
                        r = write_record(l, s, 'F', d, take);
                if (r < 0)
                        return r;
                d += take + 1;
                len -= take + 1;
        }
        return 0;
}

int cri_log_flush(CriLog *l, CriStream s) {
        Buffer *p = &l->pending[s];
        int r;

        if (buffer_len(p) == 0)
                return 0;
        r = write_record(l, s, 'F', (const char *) buffer_peek(p), buffer_len(p));
        buffer_consume(p, buffer_len(p));
        return r;
}
