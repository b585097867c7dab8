/* What a killed rktlet leaves of a pod: the CNI plugins it had started, still running, and
 * directories that no record describes. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "record.h"
#include "log.h"
#include "macro.h"
#include "pod-internal.h"
#include "strv.h"
#include "time-util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* How long a dead daemon's plugins get to finish what they were doing, then how long they get to
 * die once killed. Both well within the child's own timeout. */
#define LEFTOVER_WAIT_USEC (20ULL * USEC_PER_SEC)
#define LEFTOVER_KILL_USEC (5ULL * USEC_PER_SEC)
#define LEFTOVER_POLL_USEC (10ULL * 1000)

/* Whether the NUL-separated environment of pid holds the entry marker. A process that is gone,
 * or a zombie (whose environment reads empty), does not. */
static bool environ_has(pid_t pid, const char *marker) {
        _cleanup_free_ char *buf = NULL;
        char path[64];
        size_t len = 0;

        snprintf(path, sizeof path, "/proc/%i/environ", (int) pid);
        if (read_file(path, 256 * 1024, &buf, &len) < 0)
                return false;
        for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
                if (strcmp(buf + i, marker) == 0)
                        return true;
        return false;
}

/* Counts the processes whose environment holds marker; with kill, SIGKILLs each, and the process
 * group of each that leads one (a plugin: rktlet runs each in a group of its own). */
static int scan(const char *marker, bool kill_them) {
        _cleanup_(closedirp) DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t self = getpid();
        int n = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);

                if (*end || pid <= 0 || pid == self || !environ_has((pid_t) pid, marker))
                        continue;
                n++;
                if (kill_them) {
                        if (getpgid((pid_t) pid) == (pid_t) pid)
                                (void) killpg((pid_t) pid, SIGKILL);
                        (void) kill((pid_t) pid, SIGKILL);
                }
        }
        return n;
}

int pod_cni_leftovers_child(void *userdata) {
        const Pod *pod = userdata;
        char marker[sizeof("CNI_CONTAINERID=") + 64];
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        int n = pod_child_die_with_daemon(pod);

        if (n < 0)
                return n;

        /* A plugin is let finish: killed half way, it could leave what its DEL cannot find (an
         * address file of host-local's created but not yet written). What it made, DEL undoes. */
        snprintf(marker, sizeof marker, "CNI_CONTAINERID=%s", pod->id);
        while ((n = scan(marker, false)) > 0 && now_usec(CLOCK_MONOTONIC) - start < LEFTOVER_WAIT_USEC)
                (void) usleep(LEFTOVER_POLL_USEC);
        /* Past the bound, it is killed, with what it started. */
        start = now_usec(CLOCK_MONOTONIC);
        while (n > 0) {
                if (now_usec(CLOCK_MONOTONIC) - start >= LEFTOVER_KILL_USEC) {
                        fprintf(stderr, "%d process(es) still running %ds after SIGKILL\n", n,
                                (int) (LEFTOVER_KILL_USEC / USEC_PER_SEC));
                        return -EBUSY;
                }
                (void) scan(marker, true);
                (void) usleep(LEFTOVER_POLL_USEC);
                n = scan(marker, false);
        }
        if (n < 0)
                fprintf(stderr, "read /proc: %s\n", strerror(-n));
        return n;
}

/* --- directories without a record ---------------------------------------------------------------- */

/* mountinfo escapes ' ', '\t', '\n' and '\\' as octal. */
static void unescape(char *s) {
        char *w = s;

        for (char *p = s; *p; p++) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
                    p[3] <= '7') {
                        *w++ = (char) ((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 3;
                } else
                        *w++ = *p;
        }
        *w = '\0';
}

/* Detaches every mount at or below dir, the deepest (the last mounted) first. */
static int umount_below(const char *dir) {
        _cleanup_free_ char *text = NULL;
        _cleanup_(strv_freep) char **points = NULL;
        size_t n = strlen(dir);
        int r;

        r = read_file("/proc/self/mountinfo", 16 * 1024 * 1024, &text, NULL);
        if (r < 0)
                return r;
        for (char *line = text, *next; line && *line; line = next) {
                char *field = line;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                /* ID, parent ID, major:minor, root, mount point */
                for (int i = 0; i < 4 && field; i++) {
                        field = strchr(field, ' ');
                        if (field)
                                field++;
                }
                if (!field)
                        continue;
                field[strcspn(field, " ")] = '\0';
                unescape(field);
                if (strncmp(field, dir, n) != 0 || (field[n] != '\0' && field[n] != '/'))
                        continue;
                r = strv_push(&points, field);
                if (r < 0)
                        return r;
        }
        r = 0;
        for (size_t i = strv_length(points); i > 0; i--)
                if (umount2(points[i - 1], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT && r == 0)
                        r = -errno;
        return r;
}

/* A pod directory under the root or the state directory that no record describes: a run killed
 * before its first save completed (the directories are made first), or a removal that failed half
 * way through deleting. Nothing refers to it and nothing else would ever delete it. The trees are
 * small (a record, a few files, and mounts, which are detached rather than walked): deleted here. */
static int delete_orphan(const char *root, const char *run, const char *id, void *userdata) {
        /* A pin or the shm mount of a run killed while its namespace child still went on. */
        int r = umount_below(run);
        if (r < 0)
                log_warning_errno(r, "pod %s: cannot unmount what is mounted under %s: %m", id, run);
        r = rm_rf(run);
        return r < 0 ? r : rm_rf(root);
}

void pod_gc_orphan(PodTable *t, const char *id) {
        record_delete_orphan("pod", "pods", t->env.root_dir, t->env.state_dir, id, delete_orphan, t);
}

static void run_dir_one(const char *id, void *userdata) {
        PodTable *t = userdata;
        _cleanup_free_ char *root = NULL;

        if (pod_find(t, id))
                return;
        if (asprintf(&root, "%s/pods/%s", t->env.root_dir, id) < 0) {
                root = NULL;
                return;
        }
        /* A root directory with a record that could not be read is left alone, with its state. */
        if (access(root, F_OK) == 0 || errno != ENOENT)
                return;
        pod_gc_orphan(t, id);
}

int pod_gc_run_orphans(PodTable *t) {
        _cleanup_free_ char *dir = NULL;

        if (asprintf(&dir, "%s/pods", t->env.state_dir) < 0)
                return -ENOMEM;
        return dir_for_each_id(dir, run_dir_one, t);
}
