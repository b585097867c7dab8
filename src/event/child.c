/* Child processes watched through pidfds in the loop: output captured, optional stdin, timeout. */
#include "child.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buffer.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "time-util.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

typedef struct ChildStream {
        ev_io io;
        Buffer buf;
        bool truncated;
} ChildStream;

struct Child {
        struct ev_loop *loop;
        pid_t pid;
        int pidfd;
        ev_io pidfd_io;
        ev_timer timeout;
        ChildStream out, err;
        ev_io in_io;
        const uint8_t *in_data; /* points into in_copy */
        uint8_t *in_copy;
        size_t in_left;
        size_t max_output;
        bool timed_out;
        size_t max_total; /* of both streams together; 0: none */
        ChildDone done;
        void *userdata;
        struct Child *abandoned_prev, *abandoned_next; /* in the abandoned list, once abandoned */
        bool abandoned;
        struct Child *prev, *next; /* every child */
};

/* At the exit, what the child wrote is in its pipes (a pipe holds 1 MiB at most unless enlarged):
 * 64 reads of 16 KiB take it; a grandchild that goes on writing does not keep the loop. */
#define FINAL_DRAIN_READS 64

static unsigned n_children = 0;
static Child *children = NULL;
/* Children nobody waits for any more: freed when reaped, or by child_free_abandoned() at exit. */
static Child *abandoned = NULL;

unsigned child_count(void) {
        return n_children;
}

pid_t child_pid(const Child *c) {
        return c->pid;
}

static int pidfd_open_(pid_t pid) {
        return (int) syscall(SYS_pidfd_open, pid, 0);
}

int child_kill(Child *c, int sig) {
        if (c->pidfd < 0)
                return -ESRCH;
        if (syscall(SYS_pidfd_send_signal, c->pidfd, sig, NULL, 0) < 0)
                return -errno;
        return 0;
}

static void stream_close(Child *c, ChildStream *s) {
        if (s->io.fd < 0)
                return;
        ev_io_stop(c->loop, &s->io);
        safe_close(s->io.fd);
        ev_io_set(&s->io, -1, EV_READ);
}

static void stdin_close(Child *c) {
        if (c->in_io.fd < 0)
                return;
        ev_io_stop(c->loop, &c->in_io);
        safe_close(c->in_io.fd);
        ev_io_set(&c->in_io, -1, EV_WRITE);
}

static void child_free(Child *c) {
        if (c->abandoned) {
                if (c->abandoned_prev)
                        c->abandoned_prev->abandoned_next = c->abandoned_next;
                else
                        abandoned = c->abandoned_next;
                if (c->abandoned_next)
                        c->abandoned_next->abandoned_prev = c->abandoned_prev;
        }
        ev_io_stop(c->loop, &c->pidfd_io);
        ev_timer_stop(c->loop, &c->timeout);
        stream_close(c, &c->out);
        stream_close(c, &c->err);
        stdin_close(c);
        buffer_free(&c->out.buf);
        buffer_free(&c->err.buf);
        safe_close(c->pidfd);
        free(c->in_copy);
        if (c->prev)
                c->prev->next = c->next;
        else
                children = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c);
        n_children--;
}

/* Reads what is there, at most max_reads times (a writer that never stops must not keep the loop
 * here); returns true at EOF or error. */
static bool stream_drain(Child *c, ChildStream *s, unsigned max_reads) {
        uint8_t tmp[16384];

        for (unsigned i = 0; i < max_reads; i++) {
                ssize_t n = read(s->io.fd, tmp, sizeof tmp);
                if (n < 0)
                        return errno != EAGAIN && errno != EINTR;
                if (n == 0)
                        return true;
                size_t room = c->max_output - MIN(buffer_len(&s->buf), c->max_output);
                if (c->max_total > 0) {
                        size_t both = buffer_len(&c->out.buf) + buffer_len(&c->err.buf);
                        room = MIN(room, c->max_total - MIN(both, c->max_total));
                }
                if ((size_t) n > room)
                        s->truncated = true;
                if (room > 0 && buffer_append(&s->buf, tmp, MIN((size_t) n, room)) < 0)
                        s->truncated = true;
        }
        return false;
}

static void stream_cb(struct ev_loop *loop, ev_io *w, int revents) {
        ChildStream *s = container_of(w, ChildStream, io);
        /* The Child owning this stream is found through the callback's data pointer. */
        Child *c = w->data;

        /* 256 KiB a turn: the loop serves others in between (epoll reports it again). */
        if (stream_drain(c, s, 16))
                stream_close(c, s);
}

static void stdin_cb(struct ev_loop *loop, ev_io *w, int revents) {
        Child *c = container_of(w, Child, in_io);

        while (c->in_left > 0) {
                ssize_t n = write(w->fd, c->in_data, c->in_left);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        break; /* EPIPE: the child does not want it */
                }
                c->in_data += n;
                c->in_left -= (size_t) n;
        }
        stdin_close(c);
}

static const char *stream_text(ChildStream *s, size_t *ret_len) {
        *ret_len = buffer_len(&s->buf);
        if (buffer_append(&s->buf, "", 1) < 0)
                return "";
        return (const char *) buffer_peek(&s->buf);
}

static void pidfd_cb(struct ev_loop *loop, ev_io *w, int revents) {
        Child *c = container_of(w, Child, pidfd_io);
        siginfo_t si = {};

        if (waitid((idtype_t) P_PIDFD, (id_t) c->pidfd, &si, WEXITED | WNOHANG) < 0) {
                if (errno == EINTR || errno == EAGAIN)
                        return;
                log_debug_errno(errno, "waitid() on child %i failed: %m", (int) c->pid);
        } else if (si.si_pid == 0)
                return; /* spurious */

        /* Whatever the child wrote before it exited is in the pipes now; a grandchild that kept them
         * open must not hold us, so this is the last read. */
        if (c->out.io.fd >= 0)
                (void) stream_drain(c, &c->out, FINAL_DRAIN_READS);
        if (c->err.io.fd >= 0)
                (void) stream_drain(c, &c->err, FINAL_DRAIN_READS);

        ChildResult r = {
                .pid = c->pid,
                .exit_code = si.si_code == CLD_EXITED ? si.si_status : -1,
                .signal = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED ? si.si_status : 0,
                .timed_out = c->timed_out,
                .out_truncated = c->out.truncated,
                .err_truncated = c->err.truncated,
        };
        r.out = stream_text(&c->out, &r.out_len);
        r.err = stream_text(&c->err, &r.err_len);

        if (c->done)
                c->done(c, &r, c->userdata);
        child_free(c);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        Child *c = container_of(w, Child, timeout);

        c->timed_out = true;
        (void) child_kill(c, SIGKILL);
}

void child_abandon(Child *c) {
        c->done = NULL;
        c->userdata = NULL;
        (void) child_kill(c, SIGKILL);
        if (!c->abandoned) {
                c->abandoned = true;
                c->abandoned_next = abandoned;
                if (abandoned)
                        abandoned->abandoned_prev = c;
                abandoned = c;
        }
}

void child_free_abandoned(void) {
        while (abandoned)
                child_free(abandoned); /* killed already; the kernel reaps it with the daemon's exit */
}

_noreturn_ static void child_exec(const ChildSpec *spec, int in_fd, int out_fd, int err_fd) {
        sigset_t all;

        /* Undo what the daemon changed: signal mask and handlers. */
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) signal(sig, SIG_DFL);

        if (spec->stdio) {
                in_fd = spec->stdio[0];
                out_fd = spec->stdio[1];
                err_fd = spec->stdio[2];
        }
        /* Each fd is moved above 2 first: dup2() onto 0..2 must not clobber another of them. */
        in_fd = fcntl(in_fd, F_DUPFD_CLOEXEC, 3);
        out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
        err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 3);
        if (in_fd < 0 || out_fd < 0 || err_fd < 0 || dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
            dup2(err_fd, STDERR_FILENO) < 0)
                _exit(127);
        (void) syscall(SYS_close_range, 3U, ~0U, 0U);

        if (spec->cwd && chdir(spec->cwd) < 0) {
                dprintf(STDERR_FILENO, "chdir '%s': %s\n", spec->cwd, strerror(errno));
                _exit(127);
        }
        if (spec->setup) {
                int r = spec->setup(spec->setup_userdata);
                if (r < 0) {
                        dprintf(STDERR_FILENO, "child setup: %s\n", strerror(-r));
                        _exit(spec->argv ? 127 : 1);
                }
        }
        if (!spec->argv)
                _exit(0); /* the setup function was the whole job */
        if (spec->envp)
                execvpe(spec->argv[0], spec->argv, spec->envp);
        else
                execvp(spec->argv[0], spec->argv);
        dprintf(STDERR_FILENO, "exec '%s': %s\n", spec->argv[0], strerror(errno));
        _exit(127);
}

static int spawn_exec(const ChildSpec *spec, int in_fd, int out_fd, int err_fd, pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        int r;

        if (spec->stdio) {
                in_fd = spec->stdio[0];
                out_fd = spec->stdio[1];
                err_fd = spec->stdio[2];
        }
        /* dup2() onto 0..2 must not clobber one of the others: all three are above 2 (the daemon's
         * own 0..2 are open), else the fork path takes it. */
        if (in_fd < 3 || out_fd < 3 || err_fd < 3)
                return -EBADF;
        if (posix_spawn_file_actions_init(&fa) != 0)
                return -ENOMEM;
        if (posix_spawnattr_init(&attr) != 0) {
                posix_spawn_file_actions_destroy(&fa);
                return -ENOMEM;
        }
        sigemptyset(&none);
        sigfillset(&all);
        r = posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        if (r == 0 && spec->cwd)
                r = posix_spawn_file_actions_addchdir_np(&fa, spec->cwd);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = (strchr(spec->argv[0], '/') ? posix_spawn : posix_spawnp)(
                        ret_pid, spec->argv[0], &fa, &attr, spec->argv, spec->envp ?: environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

static Child *child_alloc(struct ev_loop *loop, size_t max_output, ChildDone done, void *userdata) {
        Child *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->loop = loop;
        c->pidfd = -1;
        c->max_output = max_output ? max_output : 1024 * 1024;
        c->done = done;
        c->userdata = userdata;
        ev_io_init(&c->out.io, stream_cb, -1, EV_READ);
        ev_io_init(&c->err.io, stream_cb, -1, EV_READ);
        ev_io_init(&c->in_io, stdin_cb, -1, EV_WRITE);
        ev_io_init(&c->pidfd_io, pidfd_cb, -1, EV_READ);
        ev_timer_init(&c->timeout, timeout_cb, 0., 0.);
        c->out.io.data = c->err.io.data = c;
        c->next = children;
        if (children)
                children->prev = c;
        children = c;
        n_children++;
        return c;
}

/* Starts reading the output streams (fds taken over, -1: none) and watching the pidfd. */
static void child_watch(Child *c, int out_fd, int err_fd) {
        if (out_fd >= 0) {
                (void) fd_nonblock(out_fd, true);
                ev_io_set(&c->out.io, out_fd, EV_READ);
                ev_io_start(c->loop, &c->out.io);
        }
        if (err_fd >= 0) {
                (void) fd_nonblock(err_fd, true);
                ev_io_set(&c->err.io, err_fd, EV_READ);
                ev_io_start(c->loop, &c->err.io);
        }
        ev_io_set(&c->pidfd_io, c->pidfd, EV_READ);
        ev_io_start(c->loop, &c->pidfd_io);
}

int child_spawn(struct ev_loop *loop, const ChildSpec *spec, ChildDone done, void *userdata, Child **ret) {
        int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, inp[2] = { -1, -1 };
        Child *c;
        int r;

        if (spec->argv ? !spec->argv[0] : !spec->setup)
                return -EINVAL;

        c = child_alloc(loop, spec->max_output, done, userdata);
        if (!c)
                return -ENOMEM;

        if (spec->stdio)
                ; /* the caller's fds: nothing to make */
        else if (spec->stdin_data) {
                c->in_copy = malloc(spec->stdin_len ? spec->stdin_len : 1);
                if (!c->in_copy) {
                        r = -ENOMEM;
                        goto fail;
                }
                memcpy(c->in_copy, spec->stdin_data, spec->stdin_len);
                c->in_data = c->in_copy;
                c->in_left = spec->stdin_len;
                if (pipe2(inp, O_CLOEXEC) < 0)
                        goto fail_errno;
        } else {
                inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (inp[0] < 0)
                        goto fail_errno;
        }
        if (!spec->stdio && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0))
                goto fail_errno;

        pid_t pid = -1;
        /* A plain exec needs no copy of the daemon's page tables: posix_spawn() (a vfork-like
         * clone) costs the loop a fraction of a fork(). Where it cannot exec, the fork below
         * reports it as before (exit status 127 and the reason on stderr). */
        if (!spec->setup && spawn_exec(spec, inp[0], outp[1], errp[1], &pid) < 0)
                pid = -1;
        if (pid < 0)
                pid = fork();
        if (pid < 0)
                goto fail_errno;
        if (pid == 0)
                child_exec(spec, inp[0], outp[1], errp[1]);

        c->pid = pid;
        /* Race-free: the pid cannot be reused before we reap it, and nobody else reaps. */
        c->pidfd = pidfd_open_(pid);
        if (c->pidfd < 0) {
                r = -errno;
                kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0); /* it dies at once; we must not leave a zombie */
                goto fail;
        }

        safe_close(inp[0]);
        safe_close(outp[1]);
        safe_close(errp[1]);
        if (inp[1] >= 0) {
                (void) fd_nonblock(inp[1], true);
                ev_io_set(&c->in_io, inp[1], EV_WRITE);
                ev_io_start(loop, &c->in_io);
        }
        child_watch(c, outp[0], errp[0]);
        ev_timer_set(&c->timeout, (double) spec->timeout_usec / USEC_PER_SEC, 0.);
        if (spec->timeout_usec > 0)
                ev_timer_start(loop, &c->timeout);

        if (ret)
                *ret = c;
        return 0;

fail_errno:
        r = -errno;
fail:
        safe_close(inp[0]);
        safe_close(inp[1]);
        safe_close(outp[0]);
        safe_close(outp[1]);
        safe_close(errp[0]);
        safe_close(errp[1]);
        child_free(c);
        return r;
}

int child_adopt(struct ev_loop *loop, pid_t pid, int out_fd, int err_fd, size_t max_total, ChildDone done,
                void *userdata, Child **ret) {
        siginfo_t si = {};
        Child *c;
        int pidfd;

        pidfd = pidfd_open_(pid);
        if (pidfd < 0) {
                int r = -errno;
                safe_close(out_fd);
                safe_close(err_fd);
                return r;
        }
        /* Only a child can be waited for: anything else (the pid of a process some other parent
         * owns, or one already reaped and reused) is refused. */
        if (waitid((idtype_t) P_PIDFD, (id_t) pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
                int r = -errno;
                safe_close(pidfd);
                safe_close(out_fd);
                safe_close(err_fd);
                return r;
        }
        c = child_alloc(loop, max_total, done, userdata);
        if (!c) {
                safe_close(pidfd);
                safe_close(out_fd);
                safe_close(err_fd);
                return -ENOMEM;
        }
        c->pid = pid;
        c->pidfd = pidfd;
        c->max_total = max_total;
        child_watch(c, out_fd, err_fd);
        if (ret)
                *ret = c;
        return 0;
}

/* --- orphans ------------------------------------------------------------------------------------ */

static ev_signal orphan_signal;
static struct ev_loop *orphan_loop = NULL;
static unsigned orphan_holds = 0;

static bool is_watched(pid_t pid) {
        for (Child *c = children; c; c = c->next)
                if (c->pid == pid)
                        return true;
        return false;
}

/* Reaps every child of any of the daemon's threads that no Child watches and that has exited. */
static void orphans_reap(void) {
        DIR *d;
        struct dirent *e;

        if (orphan_holds > 0)
                return;
        d = opendir("/proc/self/task");
        if (!d)
                return;
        while ((e = readdir(d))) {
                char path[300], *text = NULL;
                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
                if (read_file(path, 1024 * 1024, &text, NULL) < 0)
                        continue;
                for (char *p = text, *end; *p; p = end) {
                        long pid = strtol(p, &end, 10);
                        if (end == p)
                                break;
                        siginfo_t si = {};
                        if (pid > 0 && !is_watched((pid_t) pid) &&
                            waitid(P_PID, (id_t) pid, &si, WEXITED | WNOHANG) >= 0 && si.si_pid > 0)
                                log_debug("Reaped orphan %li (%s %i).", pid,
                                          si.si_code == CLD_EXITED ? "exit status" : "signal", si.si_status);
                }
                free(text);
        }
        closedir(d);
}

static void orphan_cb(struct ev_loop *loop, ev_signal *w, int revents) {
        orphans_reap();
}

int child_orphans_watch(struct ev_loop *loop) {
        if (orphan_loop)
                return 0;
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
                return -errno;
        ev_signal_init(&orphan_signal, orphan_cb, SIGCHLD);
        ev_signal_start(loop, &orphan_signal);
        orphan_loop = loop;
        orphans_reap();
        return 0;
}

void child_orphans_unwatch(void) {
        if (!orphan_loop)
                return;
        ev_signal_stop(orphan_loop, &orphan_signal);
        orphan_loop = NULL;
}

void child_orphans_hold(void) {
        orphan_holds++;
}

void child_orphans_release(void) {
        if (orphan_holds > 0 && --orphan_holds == 0 && orphan_loop)
                orphans_reap();
}

int child_fail(int error, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fprintf(stderr, ": %s\n", strerror(error));
        return -error;
}
