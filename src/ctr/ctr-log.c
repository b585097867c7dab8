/* The CRI container log format kubelet reads: "<RFC3339Nano time> <stdout|stderr> <P|F> <text>\n",
 * one record per line of output, a line longer than the maximum split into P(artial) records and
 * ended by an F(ull) one. A container's two pipes feed one file, reopened after kubelet rotates it,
 * always beneath the pod's log directory and through no symlink. */
#include "ctr-log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
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
        uint64_t off; /* where the next record goes: the file is written at offsets, since splice()
                       * refuses a file opened O_APPEND; only this daemon writes it */
        size_t max_line;
        Buffer pending[_CRI_STREAM_MAX]; /* the start of a line not ended yet */
        bool partial[_CRI_STREAM_MAX];   /* the stream's last record was a P one: its line is open */
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
        fd = openat_beneath(dfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0640);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        (void) fd_nonblock(fd, false);
        return TAKE_FD(fd);
}

/* A daemon killed while it wrote a record may have left the file ending inside one: a header with
 * nothing after it is cut off again (its text is still in the pipe), a header with some text is
 * ended there (that text was taken from the pipe). Returns where the next record goes. */
static int64_t mend_tail(int fd) {
        struct stat st;
        char tail[64];
        ssize_t n;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size == 0)
                return 0;
        size_t want = (size_t) MIN((off_t) sizeof tail, st.st_size);
        n = pread(fd, tail, want, st.st_size - (off_t) want);
        if (n != (ssize_t) want)
                return n < 0 ? -errno : -EIO;
        if (tail[want - 1] == '\n')
                return st.st_size;
        const char *nl = memrchr(tail, '\n', want);
        if (nl || (off_t) want == st.st_size) {
                /* The whole last record is in tail: is it only a header ("<time> <stream> <tag> ")? */
                const char *rec = nl ? nl + 1 : tail;
                size_t len = (size_t) (tail + want - rec), spaces = 0;
                for (size_t i = 0; i < len; i++)
                        spaces += rec[i] == ' ';
                if (spaces == 3 && len >= 4 && rec[len - 1] == ' ' && (rec[len - 2] == 'P' || rec[len - 2] == 'F') &&
                    rec[len - 3] == ' ') {
                        off_t keep = st.st_size - (off_t) len;
                        if (ftruncate(fd, keep) < 0)
                                return -errno;
                        return keep;
                }
        }
        if (pwrite(fd, "\n", 1, st.st_size) != 1)
                return -errno;
        return st.st_size + 1;
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
        int64_t off = mend_tail(fd);
        if (off < 0) {
                cri_log_free(l);
                return (int) off;
        }
        l->off = (uint64_t) off;
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
        int64_t off = mend_tail(fd);
        if (off < 0) {
                close(fd);
                return (int) off;
        }
        close(l->fd);
        l->fd = fd;
        l->off = (uint64_t) off;
        return 0;
}

/* "<time> <stream> <tag> " into head (64 bytes); returns its length. */
static size_t record_head(CriStream s, char tag, char *head) {
        struct timespec ts;
        size_t n;

        clock_gettime(CLOCK_REALTIME, &ts);
        n = cri_log_timestamp((uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec, head);
        n += (size_t) snprintf(head + n, 64 - n, " %s %c ", stream_names[s], tag);
        return n;
}

static int write_at(CriLog *l, const struct iovec *iov, int n) {
        size_t total = 0;

        for (int i = 0; i < n; i++)
                total += iov[i].iov_len;
        ssize_t w = pwritev(l->fd, iov, n, (off_t) l->off);
        if (w < 0)
                return -errno;
        l->off += (uint64_t) w; /* a short write (a full disk) is ended by the next record's mend */
        return (size_t) w == total ? 0 : -EIO;
}

/* One record, written with a single writev so records of the two streams never interleave. */
static int write_record(CriLog *l, CriStream s, char tag, const char *text, size_t len) {
        char head[64];
        size_t n = record_head(s, tag, head);
        struct iovec iov[] = {
                { .iov_base = head, .iov_len = n },
                { .iov_base = (void *) text, .iov_len = len },
                { .iov_base = (void *) "\n", .iov_len = 1 },
        };

        l->partial[s] = tag == 'P';
        return write_at(l, iov, ELEMENTSOF(iov));
}

/* One record whose text is moved from the pipe into the file by splice(): the bytes leave the
 * pipe only as they land in the file, so a daemon killed meanwhile loses none of them and
 * doubles none (mend_tail() ends a record it left open). with_nl: the pipe's own newline ends the
 * text and goes with it. Adds to *consumed what left the pipe. */
static int splice_record(CriLog *l, CriStream s, char tag, int pipe_fd, size_t len, bool with_nl, size_t *consumed) {
        char head[64];
        struct iovec iov = { .iov_base = head, .iov_len = record_head(s, tag, head) };
        size_t want = len + with_nl;
        int r;

        l->partial[s] = tag == 'P';
        r = write_at(l, &iov, 1);
        if (r < 0)
                return r;
        while (want > 0) {
                loff_t off = (loff_t) l->off;
                ssize_t n = splice(pipe_fd, NULL, l->fd, &off, want, SPLICE_F_NONBLOCK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                l->off = (uint64_t) off;
                want -= (size_t) n;
                *consumed += (size_t) n;
        }
        if (!with_nl) {
                struct iovec nl = { .iov_base = (void *) "\n", .iov_len = 1 };
                return write_at(l, &nl, 1);
        }
        return 0;
}

int cri_log_splice(CriLog *l, CriStream s, int pipe_fd, const void *data, size_t len, size_t *ret_consumed) {
        const char *d = data;
        int r = 0;

        *ret_consumed = 0;
        /* A stream fed through here never holds bytes back; what cri_log_feed() held is written first. */
        if (buffer_len(&l->pending[s]) > 0 && (r = cri_log_flush(l, s)) < 0)
                return r;
        while (len > 0) {
                const char *nl = memchr(d, '\n', len);
                size_t take = nl ? (size_t) (nl - d) : len;

                while (take > 0 && take >= l->max_line && (take > l->max_line || !nl)) {
                        r = splice_record(l, s, 'P', pipe_fd, l->max_line, false, ret_consumed);
                        if (r < 0)
                                return r;
                        d += l->max_line;
                        len -= l->max_line;
                        take -= l->max_line;
                }
                if (!nl)
                        /* The line goes on in bytes not written yet: a P record, ended later by an F. */
                        return take > 0 ? splice_record(l, s, 'P', pipe_fd, take, false, ret_consumed) : 0;
                r = splice_record(l, s, 'F', pipe_fd, take, true, ret_consumed);
                if (r < 0)
                        return r;
                d += take + 1;
                len -= take + 1;
        }
        return 0;
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
                /* A line left open by P records is ended by an empty F one, as kubelet joins them. */
                return l->partial[s] ? write_record(l, s, 'F', "", 0) : 0;
        r = write_record(l, s, 'F', (const char *) buffer_peek(p), buffer_len(p));
        buffer_consume(p, buffer_len(p));
        return r;
}
