/* Children that make a pod's namespaces and pin them with bind mounts, or take them down. They
 * run forked from the daemon (no exec), so the bind mounts land in the daemon's mount namespace
 * while unshare() changes only the child. Errors go to stderr, which the daemon reports. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "fd-util.h"
#include "macro.h"
#include "pod-internal.h"

int pod_child_die_with_daemon(const Pod *pod) {
        /* Killed, the daemon leaves its children running: one that went on pinning namespaces or
         * mounting after the next daemon undid the pod would leave mounts nobody knows of. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                return child_fail(errno, "prctl(PR_SET_PDEATHSIG)");
        if (getppid() != pod->table->pid) /* it died before the line above */
                return child_fail(ESRCH, "rktlet is gone");
        return 0;
}

/* Bind-mounts the namespace ns of process pid (0: ourselves) on its pin. */
static int pin(const Pod *pod, const char *ns, pid_t pid) {
        char *target = pod_ns_path(pod, ns), source[64];
        int fd;

        if (!target)
                return 0;
        if (pid > 0)
                snprintf(source, sizeof source, "/proc/%d/ns/%s", (int) pid, ns);
        else
                snprintf(source, sizeof source, "/proc/self/ns/%s", ns);
        fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
        if (fd < 0) {
                int r = child_fail(errno, "create %s", target);
                free(target);
                return r;
        }
        close(fd);
        if (mount(source, target, NULL, MS_BIND, NULL) < 0) {
                int r = child_fail(errno, "bind-mount the namespace on %s", target);
                free(target);
                return r;
        }
        free(target);
        return 0;
}

static int loopback_up(void) {
        struct ifreq ifr = {};
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return child_fail(errno, "socket");
        strcpy(ifr.ifr_name, "lo");
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags |= IFF_UP | IFF_RUNNING, ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)) {
                int r = child_fail(errno, "bring up %s", "lo");
                close(fd);
                return r;
        }
        close(fd);
        return 0;
}

static int write_sysctl(const char *key, const char *value) {
        char path[512];
        int fd;

        /* Keys were checked: letters, digits, '_', '-', '.'; no "..". */
        snprintf(path, sizeof path, "/proc/sys/%s", key);
        for (char *p = path + strlen("/proc/sys/"); *p; p++)
                if (*p == '.')
                        *p = '/';
        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return child_fail(errno, "sysctl %s", key);
        if (write(fd, value, strlen(value)) < 0) {
                int r = child_fail(errno, "sysctl %s", key);
                close(fd);
                return r;
        }
        close(fd);
        return 0;
}

static int write_map(pid_t pid, const char *file, const PodIdMap *m) {
        char path[64], line[64];
        int fd;
        ssize_t n;

        snprintf(path, sizeof path, "/proc/%d/%s", (int) pid, file);
        snprintf(line, sizeof line, "%" PRIu32 " %" PRIu32 " %" PRIu32 "\n", m->container_id, m->host_id, m->length);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return child_fail(errno, "open %s", path);
        n = write(fd, line, strlen(line));
        if (n != (ssize_t) strlen(line)) {
                int r = child_fail(n < 0 ? errno : EIO, "write %s", path);
                close(fd);
                return r;
        }
        close(fd);
        return 0;
}

static int join(pid_t pid, const char *ns, int type) {
        char path[64];
        int fd;

        snprintf(path, sizeof path, "/proc/%d/ns/%s", (int) pid, ns);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return child_fail(errno, "open %s", path);
        if (setns(fd, type) < 0) {
                int r = child_fail(errno, "join %s", path);
                close(fd);
                return r;
        }
        close(fd);
        return 0;
}

/* The pod's user namespace, and in it (so that they are its own, and root in the pod may use
 * them: sysctls, routes, the host name) its network, UTS and IPC namespaces (flags). A writer in
 * the parent user namespace must write the mappings, so a second child (the holder) unshares and
 * waits; we map it, it makes the other namespaces, we join those (root of the node's user
 * namespace may) and pin all of them, then let it go. The holder dies with us in any case. */
static int userns_enter(const Pod *pod, int flags) {
        int to_holder[2] = { -1, -1 }, from_holder[2] = { -1, -1 }, r = 0;
        pid_t holder;
        char c = 0;

        if (pipe2(to_holder, O_CLOEXEC) < 0 || pipe2(from_holder, O_CLOEXEC) < 0)
                return child_fail(errno, "pipe");
        holder = fork();
        if (holder < 0)
                return child_fail(errno, "fork");
        if (holder == 0) {
                close(to_holder[1]);
                close(from_holder[0]);
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || unshare(CLONE_NEWUSER) < 0) {
                        (void) child_fail(errno, "unshare the user namespace");
                        _exit(1);
                }
                if (write(from_holder[1], &c, 1) != 1 || read(to_holder[0], &c, 1) != 1)
                        _exit(1);
                if (flags && unshare(flags) < 0) {
                        (void) child_fail(errno, "unshare in the user namespace");
                        _exit(1);
                }
                if (write(from_holder[1], &c, 1) != 1)
                        _exit(1);
                (void) read(to_holder[0], &c, 1); /* until we close it */
                _exit(0);
        }
        close(to_holder[0]);
        close(from_holder[1]);
        if (read(from_holder[0], &c, 1) != 1)
                r = child_fail(EPIPE, "the user namespace's holder failed");
        if (r >= 0)
                r = write_map(holder, "uid_map", &pod->spec.uids[0]);
        if (r >= 0)
                r = write_map(holder, "gid_map", &pod->spec.gids[0]);
        if (r >= 0 && write(to_holder[1], &c, 1) != 1)
                r = child_fail(errno, "wake the user namespace's holder");
        if (r >= 0 && read(from_holder[0], &c, 1) != 1)
                r = child_fail(EPIPE, "the user namespace's holder failed");
        if (r >= 0 && (flags & CLONE_NEWNET))
                r = join(holder, "net", CLONE_NEWNET);
        if (r >= 0 && (flags & CLONE_NEWUTS))
                r = join(holder, "uts", CLONE_NEWUTS);
        if (r >= 0 && (flags & CLONE_NEWIPC))
                r = join(holder, "ipc", CLONE_NEWIPC);
        if (r >= 0)
                r = pin(pod, "user", holder);
        close(to_holder[1]); /* the holder leaves */
        close(from_holder[0]);
        (void) waitpid(holder, NULL, 0);
        return r;
}

int pod_ns_setup_child(void *userdata) {
        const Pod *pod = userdata;
        const PodSpec *s = &pod->spec;
        char *dir, *run = pod_run_dir(pod);
        int flags = 0, r;

        if ((r = pod_child_die_with_daemon(pod)) < 0)
                return r;
        if (!run || asprintf(&dir, "%s/ns", run) < 0)
                return -ENOMEM;
        r = mkdir_p(dir, 0755);
        if (r < 0)
                return child_fail(-r, "create %s", dir);
        if (s->network == POD_NS_POD)
                flags |= CLONE_NEWNET | CLONE_NEWUTS;
        if (s->ipc == POD_NS_POD)
                flags |= CLONE_NEWIPC;
        if (s->userns == POD_NS_POD) {
                if ((r = userns_enter(pod, flags)) < 0)
                        return r;
        } else if (flags && unshare(flags) < 0)
                return child_fail(errno, "unshare");
        if (s->network == POD_NS_POD) {
                if (sethostname(pod->hostname, strlen(pod->hostname)) < 0)
                        return child_fail(errno, "set the host name '%s'", pod->hostname);
                if ((r = loopback_up()) < 0)
                        return r;
        }
        for (size_t i = 0; i < s->n_sysctls; i++)
                if ((r = write_sysctl(s->sysctls[i].key, s->sysctls[i].value)) < 0)
                        return r;
        if ((r = pin(pod, "net", 0)) < 0 || (r = pin(pod, "uts", 0)) < 0 || (r = pin(pod, "ipc", 0)) < 0)
                return r;
        if (s->ipc == POD_NS_POD) {
                /* The pod's /dev/shm, which its containers share (as they share its IPC namespace). */
                char *shm;
                if (asprintf(&shm, "%s/shm", run) < 0)
                        return -ENOMEM;
                if (mkdir(shm, 0755) < 0 && errno != EEXIST)
                        return child_fail(errno, "create %s", shm);
                if (mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") < 0)
                        return child_fail(errno, "mount the pod's /dev/shm on %s", shm);
                free(shm);
        }
        return 0;
}

int pod_ns_teardown_child(void *userdata) {
        const Pod *pod = userdata;
        static const char *const names[] = { "net", "uts", "ipc", "pid", "user" };
        char *run = pod_run_dir(pod), *dir = NULL;
        int r = pod_child_die_with_daemon(pod);

        if (r < 0)
                return r;
        if (!run)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                char *p;
                if (asprintf(&p, "%s/ns/%s", run, names[i]) < 0)
                        return -ENOMEM;
                if (umount2(p, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                        r = child_fail(errno, "unmount %s", p);
                else if (unlink(p) < 0 && errno != ENOENT)
                        r = child_fail(errno, "remove %s", p);
                free(p);
        }
        if (asprintf(&dir, "%s/ns", run) >= 0 && rmdir(dir) < 0 && errno != ENOENT)
                r = child_fail(errno, "remove %s", dir);
        free(dir);
        if (asprintf(&dir, "%s/shm", run) >= 0) {
                if (umount2(dir, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                        r = child_fail(errno, "unmount %s", dir);
                else if (rmdir(dir) < 0 && errno != ENOENT)
                        r = child_fail(errno, "remove %s", dir);
        }
        return r;
}
