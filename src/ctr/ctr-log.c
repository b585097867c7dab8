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
#include "log.h"
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
        bool no_splice;                  /* the file system refuses splice(): copy (and read out) */
        bool needs_mend;                 /* a failed record is left unmended at the file's end */
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

/* A daemon killed while it wrote a record (or a write that failed: a full disk) may have left the
 * file ending inside one. What is no more than a header ("<time> <stream> <tag> ", or the start of
 * one) is cut off again: its text is still in the pipe. A record with some of its text is made a P
 * record and ended there (that text was taken from the pipe; the rest of the line follows in the
 * next record). window: how far back a record may start (the longest record). Returns where the
 * next record goes; *ret_partial (when given) says whether a P record was ended. */
static int64_t mend_tail(int fd, size_t window, bool *ret_partial) {
        _cleanup_free_ char *tail = NULL;
        struct stat st;
        ssize_t n;

        if (ret_partial)
                *ret_partial = false;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size == 0)
                return 0;
        size_t want = (size_t) MIN((off_t) window, st.st_size);
        off_t from = st.st_size - (off_t) want;
        tail = malloc(want);
        if (!tail)
                return -ENOMEM;
        n = pread(fd, tail, want, from);
        if (n != (ssize_t) want)
                return n < 0 ? -errno : -EIO;
        if (tail[want - 1] == '\n')
                return st.st_size;
        const char *nl = memrchr(tail, '\n', want);
        if (!nl && from > 0) {
                /* Longer than any record: not one of ours to judge; just end it. */
                if (pwrite(fd, "\n", 1, st.st_size) != 1)
                        return -errno;
                return st.st_size + 1;
        }
        const char *rec = nl ? nl + 1 : tail;
        size_t len = (size_t) (tail + want - rec), spaces = 0, tag = 0;
        for (size_t i = 0; i < len && spaces < 3; i++)
                if (rec[i] == ' ' && ++spaces == 2)
                        tag = i + 1;
        if (spaces < 3 || tag + 2 >= len) {
                /* A header, whole or cut short: no text of it landed. */
                off_t keep = st.st_size - (off_t) len;
                if (ftruncate(fd, keep) < 0)
                        return -errno;
                return keep;
        }
        if (rec[tag] == 'F' && pwrite(fd, "P", 1, from + (off_t) (rec - tail) + (off_t) tag) != 1)
                return -errno;
        if (pwrite(fd, "\n", 1, st.st_size) != 1)
                return -errno;
        if (ret_partial)
                *ret_partial = true;
        return st.st_size + 1;
}

#define MEND_WINDOW(max_line) ((max_line) + 128)

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
        int64_t off = mend_tail(fd, MEND_WINDOW(l->max_line), NULL);
        if (off < 0) {
                cri_log_free(l);
                return (int) off;
        }
        l->off = (uint64_t) off;
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
        int64_t off = mend_tail(fd, MEND_WINDOW(l->max_line), NULL);
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
        l->off += (uint64_t) w;
        return (size_t) w == total ? 0 : -ENOSPC;
}

/* A record that could not be written whole (r < 0) is mended at once, so that the next one does
 * not run into it; when even that fails, before the next record. */
static int record_failed(CriLog *l, CriStream s, int r) {
        bool partial;
        int64_t off = mend_tail(l->fd, MEND_WINDOW(l->max_line), &partial);

        if (off < 0)
                l->needs_mend = true;
        else {
                l->off = (uint64_t) off;
                l->needs_mend = false;
                if (partial)
                        l->partial[s] = true;
        }
        return r;
}

static int record_begin(CriLog *l) {
        if (!l->needs_mend)
                return 0;
        int64_t off = mend_tail(l->fd, MEND_WINDOW(l->max_line), NULL);
        if (off < 0)
                return (int) off;
        l->off = (uint64_t) off;
        l->needs_mend = false;
        return 0;
}

/* One record, written with a single pwritev so records of the two streams never interleave. */
static int write_record(CriLog *l, CriStream s, char tag, const char *text, size_t len) {
        char head[64];
        size_t n = record_head(s, tag, head);
        struct iovec iov[] = {
                { .iov_base = head, .iov_len = n },
                { .iov_base = (void *) text, .iov_len = len },
                { .iov_base = (void *) "\n", .iov_len = 1 },
        };
        int r = record_begin(l);

        if (r >= 0)
                r = write_at(l, iov, ELEMENTSOF(iov));
        if (r < 0)
                return record_failed(l, s, r);
        l->partial[s] = tag == 'P';
        return 0;
}

/* Takes len bytes out of the pipe, where they were copied to the log already. */
static int pipe_drop(int pipe_fd, size_t len, size_t *consumed) {
        char buf[4096];

        while (len > 0) {
                ssize_t n = read(pipe_fd, buf, MIN(len, sizeof buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                len -= (size_t) n;
                *consumed += (size_t) n;
        }
        return 0;
}

/* One record whose text is moved from the pipe into the file by splice(): the bytes leave the
 * pipe only as they land in the file, so a daemon killed meanwhile loses none of them and
 * doubles none (mend_tail() ends a record it left open). text is the peeked copy of the len
 * bytes; with_nl: the pipe's own newline ends the text and goes with it. Adds to *consumed what
 * left the pipe. Where the file system refuses splice(), the copy is written and the bytes then
 * read out of the pipe. */
static int splice_record(CriLog *l, CriStream s, char tag, int pipe_fd, const char *text, size_t len, bool with_nl,
                         size_t *consumed) {
        if (l->no_splice) {
                int r = write_record(l, s, tag, text, len);
                return r < 0 ? r : pipe_drop(pipe_fd, len + with_nl, consumed);
        }

        char head[64];
        struct iovec iov = { .iov_base = head, .iov_len = record_head(s, tag, head) };
        size_t want = len + with_nl;
        int r = record_begin(l);

        if (r >= 0)
                r = write_at(l, &iov, 1);
        while (r >= 0 && want > 0) {
                loff_t off = (loff_t) l->off;
                ssize_t n = splice(pipe_fd, NULL, l->fd, &off, want, SPLICE_F_NONBLOCK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EINVAL && want == len + with_nl) {
                        /* Nothing moved: this file system takes no splice(). Cut the header, copy. */
                        l->off -= iov.iov_len;
                        if (ftruncate(l->fd, (off_t) l->off) < 0)
                                return record_failed(l, s, -errno);
                        log_debug_errno(EINVAL, "%s: splice() is refused here (%m); copying instead", l->path);
                        l->no_splice = true;
                        return splice_record(l, s, tag, pipe_fd, text, len, with_nl, consumed);
                }
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        break;
                }
                l->off = (uint64_t) off;
                want -= (size_t) n;
                *consumed += (size_t) n;
        }
        if (r >= 0 && !with_nl) {
                struct iovec nl = { .iov_base = (void *) "\n", .iov_len = 1 };
                r = write_at(l, &nl, 1);
        }
        if (r < 0)
                return record_failed(l, s, r);
        l->partial[s] = tag == 'P';
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
                        r = splice_record(l, s, 'P', pipe_fd, d, l->max_line, false, ret_consumed);
                        if (r < 0)
                                return r;
                        d += l->max_line;
                        len -= l->max_line;
                        take -= l->max_line;
                }
                if (!nl)
                        /* The line goes on in bytes not written yet: a P record, ended later by an F. */
                        return take > 0 ? splice_record(l, s, 'P', pipe_fd, d, take, false, ret_consumed) : 0;
                r = splice_record(l, s, 'F', pipe_fd, d, take, true, ret_consumed);
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
                return 0;
        r = write_record(l, s, 'F', (const char *) buffer_peek(p), buffer_len(p));
        buffer_consume(p, buffer_len(p));
        return r;
}

int cri_log_end(CriLog *l, CriStream s) {
        if (buffer_len(&l->pending[s]) > 0)
                return cri_log_flush(l, s);
        /* A line left open by P records is ended by an empty F one, as kubelet joins them. */
        return l->partial[s] ? write_record(l, s, 'F', "", 0) : 0;
}
