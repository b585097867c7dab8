/* A container's stdio: pipes (or a pseudo-terminal) whose far ends systemd hands to the container;
 * the daemon reads the near ends in its loop and writes the CRI log, and hands what it read to the
 * attached clients too (attach is a fan-out of the log writer's reads: the log loses nothing to
 * them). When rktlet runs under systemd the near ends (and the write end of stdin) also go to
 * systemd's file descriptor store, so that a restarted daemon continues every log where the last
 * one stopped, and can attach again. */
#include <errno.h>
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "ctr-internal.h"
#include "fd-util.h"
#include "log.h"
#include "macro.h"

typedef struct CtrStream {
        CtrIo *io;
        int fd;
        CriStream stream;
        bool pipe; /* a pipe, not a terminal: the log takes its bytes by splice() */
        ev_io w;
} CtrStream;

struct CtrIo {
        struct ev_loop *loop;
        char id[65];
        char *log_dir, *log_path; /* NULL: no log, output is read and dropped; log_path beneath log_dir */
        CriLog *log;              /* NULL while it cannot be opened: output is dropped, a reopen tries again */
        CtrStream out, err;
        int stdin_fd; /* the writable end of the container's stdin, kept for attach */
        CtrAttach *attachments;
        unsigned walking; /* inside a walk of attachments: ctr_attach_free() only marks them */
};

struct CtrAttach {
        CtrIo *io; /* NULL once the io is gone */
        CtrAttach *next;
        const CtrAttachOps *ops;
        void *userdata;
        bool dead, ended;
};

static int take_stored(CtrStoredFds *s, const char *name) {
        for (size_t i = 0; s && i < s->n; i++)
                if (s->fds[i] >= 0 && s->names[i] && strcmp(s->names[i], name) == 0)
                        return TAKE_FD(s->fds[i]);
        return -1;
}

static void store_fd(const char *id, const char *what, int fd) {
        char state[128];
        int r;

        if (!getenv("NOTIFY_SOCKET"))
                return;
        snprintf(state, sizeof state, "FDSTORE=1\nFDNAME=ctr-%s-%s", id, what);
        r = sd_pid_notify_with_fds(0, 0, state, &fd, 1);
        if (r <= 0)
                log_debug_errno(r, "container %s: cannot keep its %s in systemd's fd store: %m", id, what);
}

void ctr_io_forget(const char *id) {
        static const char *const what[] = { "out", "err", "in" };
        char state[128];

        if (!getenv("NOTIFY_SOCKET"))
                return;
        for (size_t i = 0; i < ELEMENTSOF(what); i++) {
                snprintf(state, sizeof state, "FDSTOREREMOVE=1\nFDNAME=ctr-%s-%s", id, what[i]);
                (void) sd_notify(0, state);
        }
}

static void attach_sweep(CtrIo *io) {
        if (io->walking > 0)
                return;
        for (CtrAttach **p = &io->attachments; *p;) {
                CtrAttach *a = *p;
                if (a->dead) {
                        *p = a->next;
                        free(a);
                } else
                        p = &a->next;
        }
}

static void attach_output(CtrIo *io, CriStream stream, const void *buf, size_t n) {
        io->walking++;
        for (CtrAttach *a = io->attachments; a; a = a->next)
                if (!a->dead && !a->ended && a->ops->output)
                        a->ops->output(stream, buf, n, a->userdata);
        io->walking--;
        attach_sweep(io);
}

/* The container's output ended: every attachment hears it once. */
static void attach_end_all(CtrIo *io) {
        io->walking++;
        for (CtrAttach *a = io->attachments; a; a = a->next)
                if (!a->dead && !a->ended) {
                        a->ended = true;
                        if (a->ops->ended)
                                a->ops->ended(a->userdata);
                }
        io->walking--;
        attach_sweep(io);
}

/* ended: the container's end of it is closed (its last line is ended in the log); else the daemon
 * lets go of it (the next one reads on from systemd's fd store). */
static void stream_close(CtrStream *s, bool ended) {
        if (s->fd < 0)
                return;
        ev_io_stop(s->io->loop, &s->w);
        s->fd = safe_close(s->fd);
        if (s->io->log)
                (void) (ended ? cri_log_end(s->io->log, s->stream) : cri_log_flush(s->io->log, s->stream));
}

/* The daemon's own pipe that tee() copies a stream's bytes into, to be read (for the log's record
 * boundaries and the attached clients) while they are still in the stream's pipe. Emptied after
 * every use; the loop is single-threaded, so one serves every container. */
static int peek_pipe[2] = { -1, -1 };

static int peek_pipe_get(void) {
        if (peek_pipe[0] < 0 && pipe2(peek_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

/* Reads what the stream's pipe holds without taking it: into buf, at most size bytes. 0: the
 * pipe is empty and has no writer left; -EAGAIN: empty. */
static ssize_t stream_peek(CtrStream *s, char *buf, size_t size) {
        ssize_t n, got = 0;

        if (peek_pipe_get() < 0)
                return -errno;
        n = tee(s->fd, peek_pipe[1], size, SPLICE_F_NONBLOCK);
        if (n <= 0)
                return n < 0 ? -errno : 0;
        while (got < n) {
                ssize_t k = read(peek_pipe[0], buf + got, (size_t) (n - got));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        /* Never left holding stale bytes for the next stream: a new one next time. */
                        peek_pipe[0] = safe_close(peek_pipe[0]);
                        peek_pipe[1] = safe_close(peek_pipe[1]);
                        return -EIO;
                }
                got += k;
        }
        return n;
}

/* Takes len bytes out of the stream's pipe without a log to write them to. */
static void stream_drop(CtrStream *s, size_t len) {
        char buf[4096];

        while (len > 0) {
                ssize_t n = read(s->fd, buf, MIN(len, sizeof buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                len -= (size_t) n;
        }
}

/* A pipe with a log: each record's text goes from the pipe to the file by splice(), so a daemon
 * killed at any moment has lost no output; what remains in the pipe the next daemon reads. */
static void stream_pipe_cb(CtrStream *s) {
        char buf[64 * 1024];

        for (int i = 0; i < 16 && s->io->log; i++) {
                ssize_t n = stream_peek(s, buf, sizeof buf);
                size_t taken = 0;
                int r;

                if (n == -EAGAIN || n == -EINTR)
                        return;
                if (n < 0) {
                        /* Not a pipe after all, or no peek pipe to be had (out of fds): read() then,
                         * never leave the container's output unread. */
                        log_debug_errno((int) n, "container %s: cannot peek at its output, reading it: %m", s->io->id);
                        s->pipe = false;
                        return;
                }
                if (n == 0) {
                        stream_close(s, true);
                        return;
                }
                r = cri_log_splice(s->io->log, s->stream, s->fd, buf, (size_t) n, &taken);
                if (r < 0) {
                        log_debug_errno(r, "container %s: cannot write its log: %m", s->io->id);
                        stream_drop(s, (size_t) n - taken);
                }
                if (s->io->attachments)
                        attach_output(s->io, s->stream, buf, (size_t) n);
        }
}

static void stream_read_cb(CtrStream *s) {
        char buf[64 * 1024];

        for (int i = 0; i < 16; i++) {
                ssize_t n = read(s->fd, buf, sizeof buf);

                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        /* EOF, or EIO from a terminal whose last slave closed. */
                        stream_close(s, true);
                        return;
                }
                if (s->io->log) {
                        int r = cri_log_feed(s->io->log, s->stream, buf, (size_t) n);
                        if (r < 0)
                                log_debug_errno(r, "container %s: cannot write its log: %m", s->io->id);
                }
                if (s->io->attachments)
                        attach_output(s->io, s->stream, buf, (size_t) n);
        }
}

static void stream_cb(struct ev_loop *loop, ev_io *w, int revents) {
        CtrStream *s = container_of(w, CtrStream, w);

        if (s->pipe && s->io->log)
                stream_pipe_cb(s);
        else
                stream_read_cb(s);
}

static void stream_start(CtrIo *io, CtrStream *s, int fd, CriStream stream) {
        s->io = io;
        s->fd = fd;
        s->stream = stream;
        if (fd < 0)
                return;
        struct stat st;
        s->pipe = fstat(fd, &st) >= 0 && S_ISFIFO(st.st_mode);
        (void) fd_nonblock(fd, true);
        ev_io_init(&s->w, stream_cb, fd, EV_READ);
        ev_io_start(io->loop, &s->w);
}

static int io_log_open(CtrIo *io) {
        int r;

        /* The pod's log directory is made as any path is (it may lie behind the operator's
         * symlinks); what kubelet's log_path adds beneath it cannot. */
        r = mkdir_p(io->log_dir, 0755);
        if (r >= 0)
                r = cri_log_open(io->log_dir, io->log_path, 0, &io->log);
        return r;
}

/* must_open: fail when the log cannot be opened; else read and drop the output until a reopen
 * succeeds. */
static int io_alloc(struct ev_loop *loop, const char *id, const char *log_dir, const char *log_path, bool must_open,
                    CtrIo **ret) {
        CtrIo *io = calloc(1, sizeof *io);
        int r;

        if (!io)
                return -ENOMEM;
        io->loop = loop;
        snprintf(io->id, sizeof io->id, "%s", id);
        io->out.fd = io->err.fd = io->stdin_fd = -1;
        if (log_path && log_path[0]) {
                io->log_dir = strdup(log_dir ?: "");
                io->log_path = strdup(log_path);
                r = io->log_dir && io->log_path ? io_log_open(io) : -ENOMEM;
                if (r < 0 && (must_open || r == -ENOMEM)) {
                        ctr_io_free(io);
                        return r;
                }
                if (r < 0)
                        log_warning_errno(r, "container %s: cannot open its log '%s' beneath %s, dropping its output "
                                          "until ReopenContainerLog succeeds: %m", id, io->log_path, io->log_dir);
        }
        *ret = io;
        return 0;
}

static int open_pty(int *ret_master, int *ret_slave) {
        int master, slave;
        char name[128];

        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                return -errno;
        if (grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, name, sizeof name) != 0) {
                int r = negative_errno();
                safe_close(master);
                return r;
        }
        slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) {
                int r = -errno;
                safe_close(master);
                return r;
        }
        *ret_master = master;
        *ret_slave = slave;
        return 0;
}

int ctr_io_new(struct ev_loop *loop, const char *id, const char *log_dir, const char *log_path, bool tty, bool stdin_,
               CtrIo **ret, int ret_fds[3]) {
        int out[2] = { -1, -1 }, err[2] = { -1, -1 }, in[2] = { -1, -1 }, r;
        CtrIo *io;

        r = io_alloc(loop, id, log_dir, log_path, true, &io);
        if (r < 0)
                return r;
        if (tty) {
                r = open_pty(&out[0], &out[1]);
                if (r < 0)
                        goto fail;
                /* One terminal for the three: its master is the container's stdout in the log. */
                ret_fds[0] = stdin_ ? fcntl(out[1], F_DUPFD_CLOEXEC, 3) : -1;
                ret_fds[1] = out[1];
                ret_fds[2] = fcntl(out[1], F_DUPFD_CLOEXEC, 3);
                if (stdin_)
                        io->stdin_fd = fcntl(out[0], F_DUPFD_CLOEXEC, 3);
                stream_start(io, &io->out, out[0], CRI_STDOUT);
                /* Its stdin is the same master: the store would drop a second copy (it compares the
                 * files), and ctr_io_adopt() makes it again from "out". */
                store_fd(id, "out", out[0]);
        } else {
                if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || (stdin_ && pipe2(in, O_CLOEXEC) < 0)) {
                        r = -errno;
                        goto fail;
                }
                ret_fds[0] = in[0];
                ret_fds[1] = out[1];
                ret_fds[2] = err[1];
                io->stdin_fd = in[1];
                if (io->stdin_fd >= 0)
                        store_fd(id, "in", io->stdin_fd);
                stream_start(io, &io->out, out[0], CRI_STDOUT);
                stream_start(io, &io->err, err[0], CRI_STDERR);
                store_fd(id, "out", out[0]);
                store_fd(id, "err", err[0]);
        }
        *ret = io;
        return 0;
fail:
        safe_close(out[0]);
        safe_close(out[1]);
        safe_close(err[0]);
        safe_close(err[1]);
        safe_close(in[0]);
        safe_close(in[1]);
        ctr_io_free(io);
        return r;
}

int ctr_io_adopt(struct ev_loop *loop, CtrStoredFds *stored, const char *id, const char *log_dir, const char *log_path,
                 bool tty, bool stdin_, CtrIo **ret) {
        char name[128];
        int out, err, in, r;
        CtrIo *io;

        snprintf(name, sizeof name, "ctr-%s-out", id);
        out = take_stored(stored, name);
        snprintf(name, sizeof name, "ctr-%s-err", id);
        err = take_stored(stored, name);
        snprintf(name, sizeof name, "ctr-%s-in", id);
        in = take_stored(stored, name);
        if (out < 0 && err < 0) {
                safe_close(in);
                return -ENOENT;
        }
        /* Whatever became of the log meanwhile, the pipes are kept: closing them would kill the
         * container with SIGPIPE at its next write. */
        r = io_alloc(loop, id, log_dir, log_path, false, &io);
        if (r < 0) {
                safe_close(out);
                safe_close(err);
                safe_close(in);
                return r;
        }
        /* A terminal's stdin is its master, the stored "out": systemd's store keeps one copy of a file
         * (it compares them), so there is no "in" of its own to take back. */
        if (tty && stdin_ && in < 0 && out >= 0)
                in = fcntl(out, F_DUPFD_CLOEXEC, 3);
        stream_start(io, &io->out, out, CRI_STDOUT);
        stream_start(io, &io->err, err, CRI_STDERR);
        io->stdin_fd = in;
        *ret = io;
        return 0;
}

CtrIo *ctr_io_free(CtrIo *io) {
        if (!io)
                return NULL;
        /* Whatever is still in the pipes belongs in the log. */
        if (io->out.fd >= 0)
                stream_cb(io->loop, &io->out.w, EV_READ);
        if (io->err.fd >= 0)
                stream_cb(io->loop, &io->err.w, EV_READ);
        stream_close(&io->out, false);
        stream_close(&io->err, false);
        safe_close(io->stdin_fd);
        /* The attachments end, and outlive the io until their owners free them. */
        attach_end_all(io);
        while (io->attachments) {
                CtrAttach *a = io->attachments;
                io->attachments = a->next;
                if (a->dead)
                        free(a);
                else
                        a->io = NULL;
        }
        cri_log_free(io->log);
        free(io->log_dir);
        free(io->log_path);
        free(io);
        return NULL;
}

int ctr_io_reopen(CtrIo *io) {
        if (!io || !io->log_path)
                return 0;
        if (!io->log)
                return io_log_open(io);
        return cri_log_reopen(io->log);
}

void ctr_io_exited(CtrIo *io) {
        if (!io)
                return;
        /* What the container wrote last is in the pipes still: the log and the clients get it first. */
        if (io->out.fd >= 0)
                stream_cb(io->loop, &io->out.w, EV_READ);
        if (io->err.fd >= 0)
                stream_cb(io->loop, &io->err.w, EV_READ);
        attach_end_all(io);
}

int ctr_attach(Container *c, const CtrAttachOps *ops, void *userdata, int *ret_in_fd, CtrAttach **ret, Error *error) {
        CtrIo *io = c->io;
        CtrAttach *a;
        int in = -1;

        assert(ops);
        if (!io)
                return error_set(error, ERROR_WRONG_STATE, 0,
                                 "container %s: its output was lost when rktlet restarted without systemd's fd store",
                                 c->id);
        if (io->out.fd < 0 && io->err.fd < 0)
                return error_set(error, ERROR_WRONG_STATE, 0, "container %s closed its stdout and stderr", c->id);
        if (io->stdin_fd >= 0) {
                in = fcntl(io->stdin_fd, F_DUPFD_CLOEXEC, 3);
                if (in < 0)
                        return error_errno(error, -errno, "container %s: cannot duplicate its stdin", c->id);
        }
        a = calloc(1, sizeof *a);
        if (!a) {
                safe_close(in);
                return error_errno(error, -ENOMEM, "container %s: attach", c->id);
        }
        *a = (CtrAttach) { .io = io, .next = io->attachments, .ops = ops, .userdata = userdata };
        io->attachments = a;
        *ret_in_fd = in;
        *ret = a;
        return 0;
}

CtrAttach *ctr_attach_free(CtrAttach *a) {
        if (!a)
                return NULL;
        if (!a->io) {
                free(a);
                return NULL;
        }
        a->dead = true;
        attach_sweep(a->io);
        return NULL;
}

int ctr_attach_resize(CtrAttach *a, unsigned short cols, unsigned short rows) {
        struct winsize ws = { .ws_col = cols, .ws_row = rows };

        if (!a || !a->io || a->io->out.fd < 0)
                return -EBADF;
        /* The pty master the log is read from (a pipe says ENOTTY). */
        if (ioctl(a->io->out.fd, TIOCSWINSZ, &ws) < 0)
                return -errno;
        return 0;
}

void ctr_attach_close_stdin(CtrAttach *a) {
        CtrIo *io = a ? a->io : NULL;

        if (!io || io->stdin_fd < 0)
                return;
        io->stdin_fd = safe_close(io->stdin_fd);
        if (getenv("NOTIFY_SOCKET")) {
                char state[128];
                snprintf(state, sizeof state, "FDSTOREREMOVE=1\nFDNAME=ctr-%s-in", io->id);
                (void) sd_notify(0, state);
        }
        io->walking++;
        for (CtrAttach *o = io->attachments; o; o = o->next)
                if (o != a && !o->dead && !o->ended && o->ops->stdin_closed)
                        o->ops->stdin_closed(o->userdata);
        io->walking--;
        attach_sweep(io);
}
