/* Commands run in a running container (ExecSync): the OCI runtime's detached exec, the command's
 * own process watched through a pidfd.
 *
 * `<runtime> exec --detach` starts the command in the container with the container's process
 * settings (its config.json's "process": user, groups, environment, working directory,
 * capabilities, no_new_privs, AppArmor profile, rlimits; seccomp and the cgroup are the
 * container's) and exits. The command then has no parent: the daemon, as child subreaper, becomes
 * it, so that no runtime process is left while the command runs and the exit status comes from
 * waitid(). Its stdout and stderr are pipes the daemon reads on the loop.
 *
 * The runtime makes the command a session leader. A timeout (or the caller going away) kills
 * that session: the process group, and every process of the container's cgroup still in the
 * session; what a command started and then moved to a session of its own is beyond reach.
 *
 * Files: <run dir>/exec/<n>.json (the process), <n>.pid (written by the runtime), <n>.log (its
 * log). A daemon restarted during an exec finds the pid files left and kills those sessions. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "child.h"
#include "ctr-internal.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "quote.h"
#include "time-util.h"

#define RUNTIME_TIMEOUT_USEC (30ULL * USEC_PER_SEC)

struct CtrExec {
        CtrExec *prev, *next;
        struct ev_loop *loop;
        char ctr_id[65];
        char *unit; /* the container's unit: its cgroup is where the session's processes are */
        char *dir, *base; /* <run dir>/exec, <dir>/<n> */
        Child *runtime, *process;
        pid_t pid;
        int out_fd, err_fd; /* read ends, until the process is adopted */
        bool held;      /* orphans are held while the runtime runs */
        bool timed_out; /* killed by the timeout */
        bool detached;  /* the caller went away: no callback */
        size_t max_output;
        /* Interactive (Exec): the caller gets the fds once the command runs. */
        bool interactive, tty;
        int in_fd;      /* the write end of the command's stdin, or -1 */
        int console_fd; /* tty: the socket the runtime sends the pty master to */
        int dir_fd;     /* tty: dir, for a console socket path short enough for sun_path */
        CtrExecStarted started;
        ev_timer timer;
        CtrExecDone done;
        void *userdata;
};

static CtrExec *execs = NULL;

static char *exec_file(const CtrExec *e, const char *suffix) {
        char *p;
        return asprintf(&p, "%s%s", e->base, suffix) < 0 ? NULL : p;
}

static void exec_unlink_files(const CtrExec *e) {
        if (!e->base)
                return; /* set up no further than that: nothing was written */
        static const char *const suffixes[] = { ".json", ".pid", ".log", ".sock" };
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *p = exec_file(e, suffixes[i]);
                if (p)
                        (void) unlink(p);
        }
        (void) rmdir(e->dir); /* the last exec of the container takes the directory */
}

static void exec_free(CtrExec *e) {
        if (!e)
                return;
        ev_timer_stop(e->loop, &e->timer);
        if (e->held)
                child_orphans_release();
        if (e->runtime)
                child_abandon(e->runtime);
        if (e->process)
                child_abandon(e->process);
        safe_close(e->out_fd);
        safe_close(e->err_fd);
        safe_close(e->in_fd);
        safe_close(e->console_fd);
        exec_unlink_files(e);
        safe_close(e->dir_fd);
        if (e->prev)
                e->prev->next = e->next;
        else if (execs == e)
                execs = e->next;
        if (e->next)
                e->next->prev = e->prev;
        free(e->unit);
        free(e->dir);
        free(e->base);
        free(e);
}

/* The cgroup.procs file of the unit pid is in (the named systemd hierarchy on cgroup v1, the
 * unified one on v2), or NULL. */
static char *procs_file_of(pid_t pid) {
        _cleanup_free_ char *text = NULL;
        char path[64], *line, *save = NULL, *r = NULL;

        snprintf(path, sizeof path, "/proc/%i/cgroup", (int) pid);
        if (read_file(path, 64 * 1024, &text, NULL) < 0)
                return NULL;
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                const char *cg = NULL;
                if (strncmp(line, "0::", 3) == 0)
                        cg = line + 3;
                else if (strstr(line, ":name=systemd:"))
                        cg = strstr(line, ":name=systemd:") + strlen(":name=systemd:");
                if (!cg)
                        continue;
                free(r);
                if (asprintf(&r, "/sys/fs/cgroup%s%s/cgroup.procs", line[0] == '0' && line[1] == ':' ? "" : "/systemd",
                             cg) < 0)
                        r = NULL;
                if (line[0] != '0') /* v1: the named hierarchy wins */
                        break;
        }
        return r;
}

/* A process's parent and session, from /proc/<pid>/stat; -1 when it is gone. */
static int parent_and_session(pid_t pid, pid_t *ret_ppid, pid_t *ret_sid) {
        _cleanup_free_ char *text = NULL;
        char path[64];
        const char *p;
        int ppid, pgrp, sid;
        char state;

        snprintf(path, sizeof path, "/proc/%i/stat", (int) pid);
        if (read_file(path, 4096, &text, NULL) < 0 || !(p = strrchr(text, ')')))
                return -1;
        if (sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) != 4)
                return -1;
        *ret_ppid = ppid;
        *ret_sid = sid;
        return 0;
}

typedef struct Proc {
        pid_t pid, ppid, sid;
        bool doomed;
} Proc;

/* SIGKILL to the command pid leads and everything it started that is still in its cgroup: its
 * process group, every process of its session, and every descendant of any of them (one that
 * made a session of its own while its parent lives). What double-forked into a session of its own
 * is beyond reach. */
static void kill_session(pid_t pid) {
        _cleanup_free_ char *procs = procs_file_of(pid), *text = NULL;
        _cleanup_free_ Proc *l = NULL;
        size_t n = 0, cap = 0;
        bool more;

        /* The tree is read before anything is killed: a dead parent's children lose their link. */
        if (!procs || read_file(procs, 16 * 1024 * 1024, &text, NULL) < 0)
                text = NULL;
        for (char *p = text ?: "", *end; *p; p = end) {
                long q = strtol(p, &end, 10);
                if (end == p)
                        break;
                Proc pr = { .pid = (pid_t) q };
                if (q <= 0 || parent_and_session(pr.pid, &pr.ppid, &pr.sid) < 0)
                        continue;
                if (n == cap) {
                        Proc *nl = realloc(l, (cap = cap ? cap * 2 : 64) * sizeof *l);
                        if (!nl)
                                break;
                        l = nl;
                }
                pr.doomed = pr.pid == pid || pr.sid == pid;
                l[n++] = pr;
        }
        /* Descendants of the doomed, until nothing changes. */
        do {
                more = false;
                for (size_t i = 0; i < n; i++)
                        for (size_t j = 0; !l[i].doomed && j < n; j++)
                                if (l[j].doomed && l[i].ppid == l[j].pid)
                                        more = l[i].doomed = true;
        } while (more);
        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL);
        for (size_t i = 0; i < n; i++)
                if (l[i].doomed)
                        (void) kill(l[i].pid, SIGKILL);
}

static void exec_reply(CtrExec *e, const Error *error, const ChildResult *res) {
        CtrExecDone done = e->done;
        void *userdata = e->userdata;
        bool detached = e->detached;

        e->done = NULL;
        /* The files go before the reply: a client that looks finds them gone. */
        exec_unlink_files(e);
        if (!detached && done) {
                CtrExecResult r = {};
                if (res) {
                        r.exit_code = res->exit_code >= 0 ? res->exit_code : 128 + res->signal;
                        r.out = res->out;
                        r.out_len = res->out_len;
                        r.err = res->err;
                        r.err_len = res->err_len;
                        r.truncated = res->out_truncated || res->err_truncated;
                }
                done(error, res ? &r : NULL, userdata);
        }
}

static void process_done(Child *child, const ChildResult *res, void *userdata) {
        CtrExec *e = userdata;

        e->process = NULL; /* freed by child.c after this */
        if (e->timed_out) {
                Error error = ERROR_INIT;
                (void) error_set(&error, ERROR_TIMEOUT, ETIMEDOUT, "container %s: the command timed out and was killed",
                                 e->ctr_id);
                exec_reply(e, &error, NULL);
                error_done(&error);
        } else {
                log_debug("container %s: exec %s ended (%s %i).", e->ctr_id, e->base, res->signal ? "signal" : "exit status",
                          res->signal ?: res->exit_code);
                exec_reply(e, NULL, res);
        }
        exec_free(e);
}

/* The pty master the runtime sent to the console socket (SCM_RIGHTS). The runtime exited after the
 * command started, so it is in the socket's queue by now: nothing here waits. */
static int receive_pty(int listen_fd, int *ret) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        char name[4096];
        struct iovec iov = { .iov_base = name, .iov_len = sizeof name };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control };
        struct cmsghdr *cm;
        int conn, fd = -1;

        conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (conn < 0)
                return -errno;
        if (recvmsg(conn, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT) < 0) {
                int r = -errno;
                close(conn);
                return r;
        }
        close(conn);
        for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
        if (fd < 0)
                return -EBADMSG;
        (void) fd_nonblock(fd, true);
        *ret = fd;
        return 0;
}

/* The runtime's own error: the last "msg" of its JSON log, else the exit status. */
static char *runtime_message(const CtrExec *e, const ChildResult *res) {
        _cleanup_free_ char *path = exec_file(e, ".log"), *text = NULL;
        char *m = NULL;

        if (path && read_file(path, 256 * 1024, &text, NULL) >= 0) {
                char *save = NULL;
                for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                        yajl_val v = json_parse(line, NULL, 0);
                        const char *msg = json_get_str(v, "msg"), *level = json_get_str(v, "level");
                        if (msg && (!level || strcmp(level, "error") == 0 || strcmp(level, "fatal") == 0)) {
                                free(m);
                                m = strdup(msg);
                        }
                        yajl_tree_free(v);
                }
        }
        if (m)
                return m;
        if (res->timed_out)
                return strdup("it did not finish in time");
        if (asprintf(&m, "%s %i", res->signal ? "killed by signal" : "exit status", res->signal ?: res->exit_code) < 0)
                return NULL;
        return m;
}

static int read_pid(const CtrExec *e, pid_t *ret) {
        _cleanup_free_ char *path = exec_file(e, ".pid"), *text = NULL;
        long pid;
        char *end;

        if (!path || read_file(path, 64, &text, NULL) < 0)
                return -ENOENT;
        errno = 0;
        pid = strtol(text, &end, 10);
        if (errno || end == text || pid <= 1 || pid > INT32_MAX)
                return -EBADMSG;
        *ret = (pid_t) pid;
        return 0;
}

static void runtime_done(Child *child, const ChildResult *res, void *userdata) {
        CtrExec *e = userdata;
        Error error = ERROR_INIT;
        int r;

        e->runtime = NULL;
        if (res->exit_code != 0 || read_pid(e, &e->pid) < 0) {
                _cleanup_free_ char *m = runtime_message(e, res);
                pid_t pid;
                /* A runtime that failed or was killed (the timeout, a cancel, its own time limit)
                 * may have started the command: it dies too. Orphans are still held, so the pid
                 * cannot be another process's yet. */
                if (read_pid(e, &pid) >= 0)
                        kill_session(pid);
                if (e->timed_out)
                        (void) error_set(&error, ERROR_TIMEOUT, ETIMEDOUT,
                                         "container %s: the command timed out before it started", e->ctr_id);
                else
                        (void) error_set(&error, ERROR_START, EIO, "container %s: exec failed: %s", e->ctr_id,
                                         m ?: "the OCI runtime failed");
                exec_reply(e, &error, NULL);
                error_done(&error);
                exec_free(e);
                return;
        }

        int pty_fd = -1;
        if (e->tty && (r = receive_pty(e->console_fd, &pty_fd)) < 0) {
                kill_session(e->pid);
                child_orphans_release();
                e->held = false;
                (void) error_errno(&error, r, "container %s: the terminal of the command did not arrive", e->ctr_id);
                exec_reply(e, &error, NULL);
                error_done(&error);
                exec_free(e);
                return;
        }
        e->console_fd = safe_close(e->console_fd);
        if (e->interactive)
                r = child_adopt(e->loop, e->pid, -1, -1, 0, process_done, e, &e->process);
        else
                r = child_adopt(e->loop, e->pid, TAKE_FD(e->out_fd), TAKE_FD(e->err_fd), e->max_output, process_done, e,
                                &e->process);
        child_orphans_release();
        e->held = false;
        if (r < 0)
                safe_close(pty_fd);
        if (r < 0) {
                kill_session(e->pid);
                (void) error_errno(&error, r, "container %s: the command's process %i cannot be watched", e->ctr_id,
                                   (int) e->pid);
                exec_reply(e, &error, NULL);
                error_done(&error);
                exec_free(e);
                return;
        }
        if (e->timed_out || e->detached) { /* it came too late */
                kill_session(e->pid);
                safe_close(pty_fd);
                return;
        }
        if (e->interactive && e->started) {
                CtrExecIo io = { .in_fd = TAKE_FD(e->in_fd), .out_fd = TAKE_FD(e->out_fd), .err_fd = TAKE_FD(e->err_fd),
                                 .pty_fd = pty_fd };
                e->started(&io, e->userdata); /* the fds are the caller's */
        } else
                safe_close(pty_fd);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        CtrExec *e = container_of(w, CtrExec, timer);

        e->timed_out = true;
        log_debug("container %s: exec %s timed out; killing it.", e->ctr_id, e->base);
        if (e->process)
                kill_session(e->pid);
        else if (e->runtime)
                (void) child_kill(e->runtime, SIGKILL);
}

/* The container's "process", with args replaced and no terminal, as process.json. */
static int write_process(Container *c, CtrExec *e, char *const *cmd, bool tty, Error *error) {
        _cleanup_free_ char *config_path = ctr_path(c, true, "config.json"), *text = NULL, *path = exec_file(e, ".json");
        yajl_gen g = NULL;
        yajl_val config, process;
        char err[256];
        int r;

        if (!config_path || !path)
                return error_errno(error, ENOMEM, "exec");
        r = read_file(config_path, 16 * 1024 * 1024, &text, NULL);
        if (r < 0)
                /* The bundle of a running container: its absence is rktlet's fault, not the caller's. */
                return error_set(error, ERROR_INTERNAL, -r, "container %s: read %s: %s", c->id, config_path,
                                 strerror(-r));
        config = json_parse(text, err, sizeof err);
        process = json_get(config, "process");
        if (!YAJL_IS_OBJECT(process)) {
                yajl_tree_free(config);
                return error_set(error, ERROR_INTERNAL, EBADMSG, "container %s: its config.json has no process: %s",
                                 c->id, err);
        }
        g = yajl_gen_alloc(NULL);
        if (!g) {
                yajl_tree_free(config);
                return error_errno(error, ENOMEM, "exec");
        }
        yajl_gen_map_open(g);
        for (size_t i = 0; i < process->u.object.len; i++) {
                const char *key = process->u.object.keys[i];
                if (strcmp(key, "args") == 0 || strcmp(key, "terminal") == 0 || strcmp(key, "consoleSize") == 0)
                        continue;
                json_gen_str(g, key);
                json_gen_value(g, process->u.object.values[i]);
        }
        json_gen_key_strv(g, "args", (char **) cmd);
        json_gen_key_bool(g, "terminal", tty);
        yajl_gen_map_close(g);
        yajl_tree_free(config);
        r = json_gen_save(g, path, 0600);
        yajl_gen_free(g);
        if (r < 0)
                return error_errno(error, r, "container %s: write %s", c->id, path);
        return 0;
}

static int exec_new(Container *c, CtrExecDone done, void *userdata, CtrExec **ret, Error *error) {
        _cleanup_free_ char *dir = ctr_path(c, true, "exec");
        uint64_t n;
        CtrExec *e;

        if (!dir)
                return error_errno(error, ENOMEM, "exec");
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return error_errno(error, errno, "container %s: mkdir %s", c->id, dir);
        e = calloc(1, sizeof *e);
        if (!e)
                return error_errno(error, ENOMEM, "exec");
        e->loop = c->table->env.loop;
        e->out_fd = e->err_fd = e->in_fd = e->console_fd = e->dir_fd = -1;
        e->done = done;
        e->userdata = userdata;
        strcpy(e->ctr_id, c->id);
        ev_timer_init(&e->timer, timer_cb, 0., 0.);
        e->next = execs;
        if (execs)
                execs->prev = e;
        execs = e;
        if (getrandom(&n, sizeof n, 0) != sizeof n)
                n = (uint64_t) now_usec(CLOCK_MONOTONIC) ^ ((uint64_t) getpid() << 32);
        e->dir = TAKE_PTR(dir);
        e->unit = ctr_unit_name(c);
        if (!e->unit || asprintf(&e->base, "%s/%016llx", e->dir, (unsigned long long) n) < 0) {
                e->base = NULL;
                exec_free(e);
                return error_errno(error, ENOMEM, "exec");
        }
        *ret = e;
        return 0;
}

/* The console socket: <dir>/<n>.sock, bound and given to the runtime through /proc/<pid>/fd/<dir fd>/
 * (the directory's own path may be longer than sun_path allows). */
static int console_listen(CtrExec *e, char **ret_path, Error *error) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *name = strrchr(e->base, '/') + 1;
        char *path;
        int fd;

        e->dir_fd = open(e->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (e->dir_fd < 0)
                return error_errno(error, errno, "container %s: open %s", e->ctr_id, e->dir);
        if (snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%i/%s.sock", e->dir_fd, name) >=
                    (int) sizeof sa.sun_path ||
            asprintf(&path, "/proc/%i/fd/%i/%s.sock", (int) getpid(), e->dir_fd, name) < 0)
                return error_errno(error, ENOMEM, "exec: console socket");
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(fd, 1) < 0) {
                int r = errno;
                safe_close(fd);
                free(path);
                return error_errno(error, r, "container %s: console socket", e->ctr_id);
        }
        e->console_fd = fd;
        *ret_path = path;
        return 0;
}

static int exec_start(Container *c, char *const *cmd, uint64_t timeout_usec, size_t max_output, bool interactive,
                      bool in, bool tty, CtrExecStarted started, CtrExecDone done, void *userdata, CtrExec **ret,
                      Error *error) {
        _cleanup_free_ char *process = NULL, *pidfile = NULL, *logfile = NULL, *console = NULL;
        _cleanup_(strv_freep) char **argv = NULL;
        CtrTable *t;
        CtrExec *e = NULL;
        int out[2] = { -1, -1 }, err[2] = { -1, -1 }, inp[2] = { -1, -1 }, devnull = -1, r;

        assert(c);
        assert(done);
        t = c->table;
        if (!cmd || !cmd[0] || !cmd[0][0])
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "cmd: no command given");
        if (c->state != CTR_RUNNING || !c->pid || c->removing)
                return error_set(error, ERROR_WRONG_STATE, EPERM, "container %s is not running (%s)", c->id,
                                 c->removing ? "being removed" : ctr_state_to_string(ctr_reported_state(c)));
        r = child_orphans_watch(t->env.loop);
        if (r < 0)
                return error_set(error, ERROR_INTERNAL, -r, "cannot become the child subreaper: %s", strerror(-r));

        r = exec_new(c, done, userdata, &e, error);
        if (r < 0)
                return r;
        e->max_output = max_output;
        e->interactive = interactive;
        e->tty = tty;
        e->started = started;
        r = write_process(c, e, cmd, tty, error);
        if (r < 0)
                goto fail;
        if (tty && (r = console_listen(e, &console, error)) < 0)
                goto fail;

        process = exec_file(e, ".json");
        pidfile = exec_file(e, ".pid");
        logfile = exec_file(e, ".log");
        if (process && pidfile && logfile) {
                char *args[] = { "--log", logfile, "--log-format", "json", "exec", "--detach", "--pid-file", pidfile,
                                 "--process", process, tty ? "--console-socket" : c->id, tty ? console : NULL,
                                 tty ? c->id : NULL, NULL };
                argv = ctr_runtime_argv(c, args);
        }
        if (!argv) {
                r = error_errno(error, ENOMEM, "exec");
                goto fail;
        }
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || (in && pipe2(inp, O_CLOEXEC) < 0) ||
            (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
                r = error_errno(error, errno, "exec: pipes");
                goto fail;
        }
        int stdio[3] = { in ? inp[0] : devnull, out[1], err[1] };
        ChildSpec spec = {
                .argv = argv,
                .timeout_usec = RUNTIME_TIMEOUT_USEC,
                .stdio = stdio,
        };
        child_orphans_hold();
        e->held = true;
        r = child_spawn(t->env.loop, &spec, runtime_done, e, &e->runtime);
        if (r < 0) {
                (void) error_errno(error, r, "exec: start %s", c->runtime);
                goto fail;
        }
        safe_close(devnull);
        safe_close(out[1]);
        safe_close(err[1]);
        safe_close(inp[0]);
        e->out_fd = out[0];
        e->err_fd = err[0];
        e->in_fd = inp[1];
        if (timeout_usec > 0) {
                ev_timer_set(&e->timer, (double) timeout_usec / USEC_PER_SEC, 0.);
                ev_timer_start(e->loop, &e->timer);
        }
        log_debug("container %s: exec %s%s: %s%s", c->id, e->base, interactive ? " (interactive)" : "", QUOTE(cmd[0]),
                  cmd[1] ? " …" : "");
        if (ret)
                *ret = e;
        return 0;

fail:
        safe_close(devnull);
        safe_close(out[0]);
        safe_close(out[1]);
        safe_close(err[0]);
        safe_close(err[1]);
        safe_close(inp[0]);
        safe_close(inp[1]);
        exec_free(e);
        return r < 0 ? r : -EIO;
}

int ctr_exec_sync(Container *c, char *const *cmd, uint64_t timeout_usec, size_t max_output, CtrExecDone done,
                  void *userdata, CtrExec **ret, Error *error) {
        return exec_start(c, cmd, timeout_usec, max_output, false, false, false, NULL, done, userdata, ret, error);
}

int ctr_exec_interactive(Container *c, char *const *cmd, bool in, bool tty, CtrExecStarted started, CtrExecDone done,
                         void *userdata, CtrExec **ret, Error *error) {
        assert(started);
        return exec_start(c, cmd, 0, 0, true, in && !tty, tty, started, done, userdata, ret, error);
}

void ctr_exec_cancel(CtrExec *e) {
        if (!e)
                return;
        e->detached = true;
        e->done = NULL;
        if (e->process)
                kill_session(e->pid);
        else if (e->runtime)
                (void) child_kill(e->runtime, SIGKILL); /* runtime_done() kills what it may have started */
}

void ctr_exec_abort_all(void) {
        while (execs) {
                CtrExec *e = execs;
                if (e->process)
                        kill_session(e->pid);
                e->detached = true;
                exec_free(e);
        }
}

unsigned ctr_exec_count(void) {
        unsigned n = 0;
        for (CtrExec *e = execs; e; e = e->next)
                n++;
        return n;
}

void ctr_exec_cleanup(Container *c) {
        _cleanup_free_ char *dir = ctr_path(c, true, "exec"), *unit = ctr_unit_name(c);
        DIR *d;
        struct dirent *de;

        if (!dir || !unit || !(d = opendir(dir)))
                return;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *text = NULL, *procs = NULL;
                const char *dot = strrchr(de->d_name, '.');
                long pid;

                if (de->d_name[0] == '.')
                        continue;
                if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
                        path = NULL;
                        continue;
                }
                /* A session a killed daemon left: still there only if its leader is in the
                 * container's unit (a pid reused since is somewhere else). */
                if (dot && strcmp(dot, ".pid") == 0 && read_file(path, 64, &text, NULL) >= 0 &&
                    (pid = strtol(text, NULL, 10)) > 1 && (procs = procs_file_of((pid_t) pid)) &&
                    strstr(procs, unit)) {
                        log_info("container %s: killing exec session %li left by a previous daemon.", c->id, pid);
                        kill_session((pid_t) pid);
                }
                (void) unlink(path);
        }
        closedir(d);
        (void) rmdir(dir);
}
