/* rktlet-pod-init: the first process of a pod whose containers share one PID namespace. It runs
 * as a systemd service in the pod's slice (Type=forking, PIDFile=): the started process joins
 * the pod's namespaces, makes a new PID namespace, forks its PID 1, pins the namespace with a
 * bind mount, writes the PID file and exits. PID 1 reaps orphans and forwards signals.
 *
 * With --user (a pod with a user namespace of its own) the PID namespace must be that namespace's,
 * as the pod's others are, since the runtime joins the user namespace first: a child joins it,
 * becomes its root (the pod's root on the host, not the node's), unshares the PID namespace and
 * forks PID 1, whose PID comes back on a pipe; we, still the node's root, pin its namespace.
 *
 *   rktlet-pod-init --pidfile PATH --pin PATH [--net PATH] [--ipc PATH] [--uts PATH] [--user PATH --root DIR]
 *
 * DIR (made, empty, if missing) is PID 1's root directory in a user namespace. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what, const char *arg) {
        fprintf(stderr, "rktlet-pod-init: %s%s%s: %s\n", what, arg ? " " : "", arg ?: "", strerror(errno));
        return EXIT_FAILURE;
}

static int join(const char *path, int type) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -1;
        if (setns(fd, type) < 0) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
        }
        close(fd);
        return 0;
}

_Noreturn static void init(void) {
        sigset_t all;
        siginfo_t si;

        /* PID 1: no default actions apply to us; every signal is handled here. */
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        (void) prctl(PR_SET_NAME, "rktlet-pod-init");
        /* The pod's root (in a user namespace) must not reach into us (ptrace, /proc/1/root,
         * /proc/1/fd): only the node's root may. The uid change made us so already; said here. */
        (void) prctl(PR_SET_DUMPABLE, 0);
        if (chdir("/") < 0) {
                /* not fatal */
        }
        for (;;) {
                if (sigwaitinfo(&all, &si) < 0)
                        continue;
                switch (si.si_signo) {
                case SIGCHLD:
                        while (waitpid(-1, NULL, WNOHANG) > 0)
                                ;
                        break;
                case SIGTERM:
                case SIGINT:
                        /* Pass it on to everything in the pod, then go: our exit takes the PID
                         * namespace down with whatever is still in it. */
                        (void) kill(-1, si.si_signo);
                        _exit(0);
                default:
                        (void) kill(-1, si.si_signo);
                }
        }
}

/* PID 1 of a PID namespace of the user namespace at path, running as that namespace's root with
 * the empty directory root as its root directory (not the node's "/", which the pod's root would
 * reach through /proc/1/root); its PID (in ours), or -1. */
static pid_t in_user_namespace(const char *path, const char *root) {
        int p[2];
        pid_t child, pid = -1;

        if (pipe2(p, O_CLOEXEC) < 0) {
                fail("pipe", NULL);
                return -1;
        }
        child = fork();
        if (child < 0) {
                fail("fork", NULL);
                return -1;
        }
        if (child == 0) {
                int userns, dir;

                close(p[0]);
                userns = open(path, O_RDONLY | O_CLOEXEC);
                if (userns < 0)
                        _exit(fail("open user namespace", path));
                /* chroot() while still the node's root: in the user namespace we may not (the mount
                 * namespace is not its). */
                if (mkdir(root, 0555) < 0 && errno != EEXIST)
                        _exit(fail("create", root));
                dir = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dir < 0 || fchdir(dir) < 0 || chroot(".") < 0 || chdir("/") < 0)
                        _exit(fail("change the root directory to", root));
                close(dir);
                if (setns(userns, CLONE_NEWUSER) < 0)
                        _exit(fail("join user namespace", path));
                close(userns);
                if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                        _exit(fail("become root of user namespace", path));
                /* Not dumpable from here on, whatever fs.suid_dumpable says: the pod's root must not
                 * ptrace or read the memory of what the node's root set up. */
                if (prctl(PR_SET_DUMPABLE, 0) < 0)
                        _exit(fail("prctl(PR_SET_DUMPABLE)", NULL));
                if (unshare(CLONE_NEWPID) < 0)
                        _exit(fail("unshare the PID namespace", NULL));
                pid = fork();
                if (pid < 0)
                        _exit(fail("fork", NULL));
                if (pid == 0) {
                        close(p[1]);
                        init();
                }
                _exit(write(p[1], &pid, sizeof pid) == sizeof pid ? EXIT_SUCCESS : EXIT_FAILURE);
        }
        close(p[1]);
        if (read(p[0], &pid, sizeof pid) != sizeof pid)
                pid = -1;
        close(p[0]);
        (void) waitpid(child, NULL, 0);
        if (pid < 0)
                fprintf(stderr, "rktlet-pod-init: no PID 1 in user namespace %s\n", path);
        return pid;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "pidfile", required_argument, NULL, 'p' }, { "pin", required_argument, NULL, 'P' },
                { "net", required_argument, NULL, 'n' },     { "ipc", required_argument, NULL, 'i' },
                { "uts", required_argument, NULL, 'u' },     { "user", required_argument, NULL, 'U' },
                { "root", required_argument, NULL, 'r' },    {},
        };
        const char *pidfile = NULL, *pin = NULL, *net = NULL, *ipc = NULL, *uts = NULL, *user = NULL, *root = NULL;
        char source[64] = "/proc/self/ns/pid_for_children";
        char tmp[4096], buf[32];
        pid_t pid;
        int c, fd;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'p': pidfile = optarg; break;
                case 'P': pin = optarg; break;
                case 'n': net = optarg; break;
                case 'i': ipc = optarg; break;
                case 'u': uts = optarg; break;
                case 'U': user = optarg; break;
                case 'r': root = optarg; break;
                default: return EXIT_FAILURE;
                }
        if (!pidfile || !pin || (user && !root)) {
                fprintf(stderr, "usage: rktlet-pod-init --pidfile PATH --pin PATH [--net PATH] [--ipc PATH] [--uts PATH] "
                        "[--user PATH --root EMPTY-DIR]\n");
                return EXIT_FAILURE;
        }
        if (net && join(net, CLONE_NEWNET) < 0)
                return fail("join network namespace", net);
        if (ipc && join(ipc, CLONE_NEWIPC) < 0)
                return fail("join IPC namespace", ipc);
        if (uts && join(uts, CLONE_NEWUTS) < 0)
                return fail("join UTS namespace", uts);
        if (user) {
                pid = in_user_namespace(user, root);
                if (pid < 0)
                        return EXIT_FAILURE;
                snprintf(source, sizeof source, "/proc/%d/ns/pid", (int) pid);
        } else {
                if (unshare(CLONE_NEWPID) < 0)
                        return fail("unshare the PID namespace", NULL);
                pid = fork();
                if (pid < 0)
                        return fail("fork", NULL);
                if (pid == 0)
                        init();
        }

        /* From here on the parent leaves with _exit(): no atexit handlers (a sanitizer's leak check
         * would clone into the new PID namespace). */
        fd = open(pin, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
        if (fd < 0 || close(fd) < 0 || mount(source, pin, NULL, MS_BIND, NULL) < 0) {
                int r = fail("pin the PID namespace on", pin);
                kill(pid, SIGKILL);
                _exit(r);
        }
        snprintf(tmp, sizeof tmp, "%s.tmp", pidfile);
        snprintf(buf, sizeof buf, "%d\n", (int) pid);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, buf, strlen(buf)) != (ssize_t) strlen(buf) || close(fd) < 0 || rename(tmp, pidfile) < 0) {
                int r = fail("write", pidfile);
                kill(pid, SIGKILL);
                _exit(r);
        }
        _exit(EXIT_SUCCESS);
}
