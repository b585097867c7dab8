/* A cgroup's figures read from its files: the unified hierarchy (v2), or the v1 controllers with
 * PSI from a hybrid unified hierarchy. Each hierarchy's directory is opened once per sample and its
 * files relative to it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "stats.h"

typedef struct Layout {
        bool known, unified;
        /* v1: the directories of the controllers under the root, NULL when not mounted */
        const char *cpuacct, *memory, *pids, *blkio;
        bool psi; /* hybrid: a unified hierarchy at <root>/unified, for the pressure files */
} Layout;

static char cgroup_root[256] = "/sys/fs/cgroup";
static Layout layout;

void stats_cgroup_set_root(const char *root) {
        snprintf(cgroup_root, sizeof cgroup_root, "%s", root ?: "/sys/fs/cgroup");
        layout = (Layout) {};
}

static bool has(const char *dir, const char *file) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s%s%s", cgroup_root, dir, *dir ? "/" : "", file);
        return access(p, F_OK) == 0;
}

static const Layout *get_layout(void) {
        static const char *const cpuacct[] = { "cpuacct", "cpu,cpuacct", "cpuacct,cpu" };

        if (layout.known)
                return &layout;
        layout = (Layout) { .known = true, .unified = has("", "cgroup.controllers") };
        if (!layout.unified) {
                for (size_t i = 0; i < ELEMENTSOF(cpuacct) && !layout.cpuacct; i++)
                        if (has(cpuacct[i], "cpuacct.usage"))
                                layout.cpuacct = cpuacct[i];
                layout.memory = has("memory", "memory.usage_in_bytes") ? "memory" : NULL;
                layout.pids = has("pids", "cgroup.procs") ? "pids" : NULL;
                layout.blkio = has("blkio", "cgroup.procs") ? "blkio" : NULL;
                layout.psi = has("unified", "cgroup.procs");
        }
        return &layout;
}

static int open_dir(const char *hierarchy, const char *path) {
        char p[4096];
        int n;

        n = snprintf(p, sizeof p, "%s%s%s%s", cgroup_root, hierarchy ? "/" : "", hierarchy ?: "", path);
        if (n < 0 || (size_t) n >= sizeof p)
                return -ENAMETOOLONG;
        int fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* What fd holds, NUL-terminated in buf: its length, or a negative errno (-EFBIG when it fills buf). */
static ssize_t read_fd(int fd, char *buf, size_t size) {
        size_t len = 0;

        for (;;) {
                ssize_t k = read(fd, buf + len, size - 1 - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len == size - 1)
                        return -EFBIG;
        }
        buf[len] = '\0';
        return (ssize_t) len;
}

static ssize_t read_at(int dir, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = -1;

        if (dir < 0)
                return -EBADF;
        fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return read_fd(fd, buf, size);
}

static bool read_u64(int dir, const char *name, uint64_t *ret) {
        char buf[64];
        return read_at(dir, name, buf, sizeof buf) >= 0 && stats_parse_u64(buf, ret) >= 0;
}

static bool read_limit(int dir, const char *name, bool *ret_limited, uint64_t *ret) {
        char buf[64];
        return read_at(dir, name, buf, sizeof buf) >= 0 && stats_parse_limit(buf, ret_limited, ret) >= 0;
}

static void read_psi(int dir, const char *name, StatsPsi *ret) {
        char buf[256];
        if (read_at(dir, name, buf, sizeof buf) < 0 || stats_parse_psi(buf, ret) < 0)
                *ret = (StatsPsi) {};
}

static void read_memory(int dir, bool v2, StatsCgroup *s) {
        char buf[8192];
        uint64_t usage, memsw;

        if (!read_u64(dir, v2 ? "memory.current" : "memory.usage_in_bytes", &usage) ||
            read_at(dir, "memory.stat", buf, sizeof buf) < 0 || stats_memory_from_stat(s, usage, buf, v2) < 0)
                return;
        if (v2) {
                (void) read_limit(dir, "memory.max", &s->has_memory_limit, &s->memory_limit);
                s->has_swap = read_u64(dir, "memory.swap.current", &s->swap_usage);
                if (s->has_swap)
                        (void) read_limit(dir, "memory.swap.max", &s->has_swap_limit, &s->swap_limit);
        } else if (read_u64(dir, "memory.memsw.usage_in_bytes", &memsw)) {
                /* v1 counts memory and swap together (memsw), where swap accounting is on; the
                 * limits came with memory.stat. */
                s->has_swap = true;
                s->swap_usage = memsw > usage ? memsw - usage : 0;
        } else
                s->has_swap_limit = false;
}

/* One file of the cgroup in a v1 hierarchy, by its whole path (one lookup, no directory fd). */
static ssize_t read_in(const char *hierarchy, const char *path, const char *name, char *buf, size_t size) {
        char p[4096];
        int n = snprintf(p, sizeof p, "%s/%s%s/%s", cgroup_root, hierarchy, path, name);
        _cleanup_close_ int fd = -1;

        if (n < 0 || (size_t) n >= sizeof p)
                return -ENAMETOOLONG;
        fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return read_fd(fd, buf, size);
}

int stats_cgroup_read(const char *path, StatsRead what, StatsCgroup *ret) {
        const Layout *l = get_layout();
        StatsCgroup s = {};
        struct timespec ts;
        bool found = false;
        char buf[8192];

        clock_gettime(CLOCK_REALTIME, &ts);
        s.timestamp_ns = (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s.monotonic_ns = (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;

        if (l->unified) {
                _cleanup_close_ int dir = open_dir(NULL, path);
                uint64_t usec;

                if (dir < 0)
                        return dir;
                if (read_at(dir, "cpu.stat", buf, sizeof buf) >= 0 && stats_parse_keyed(buf, "usage_usec", &usec) >= 0) {
                        s.has_cpu = true;
                        s.cpu_usage_ns = usec * 1000;
                }
                read_memory(dir, true, &s);
                if (what & STATS_READ_PIDS)
                        s.has_pids = read_u64(dir, "pids.current", &s.pids);
                if (what & STATS_READ_IO)
                        s.has_io = read_at(dir, "io.stat", buf, sizeof buf) >= 0 &&
                                   stats_parse_io_stat(buf, &s.io_read_bytes, &s.io_write_bytes, &s.io_reads,
                                                       &s.io_writes) >= 0;
                read_psi(dir, "cpu.pressure", &s.cpu_psi);
                read_psi(dir, "memory.pressure", &s.memory_psi);
                read_psi(dir, "io.pressure", &s.io_psi);
                *ret = s;
                return 0;
        }

        if (l->cpuacct) {
                ssize_t k = read_in(l->cpuacct, path, "cpuacct.usage", buf, 64);
                found = found || k != -ENOENT;
                s.has_cpu = k >= 0 && stats_parse_u64(buf, &s.cpu_usage_ns) >= 0;
        }
        if (l->memory) {
                _cleanup_close_ int dir = open_dir(l->memory, path);
                found = found || dir >= 0;
                if (dir >= 0)
                        read_memory(dir, false, &s);
        }
        if (l->pids && (what & STATS_READ_PIDS)) {
                ssize_t k = read_in(l->pids, path, "pids.current", buf, 64);
                found = found || k != -ENOENT;
                s.has_pids = k >= 0 && stats_parse_u64(buf, &s.pids) >= 0;
        }
        if (l->blkio && (what & STATS_READ_IO)) {
                _cleanup_close_ int dir = open_dir(l->blkio, path);
                found = found || dir >= 0;
                if (read_at(dir, "blkio.throttle.io_service_bytes_recursive", buf, sizeof buf) >= 0 &&
                    stats_parse_blkio(buf, &s.io_read_bytes, &s.io_write_bytes) >= 0 &&
                    read_at(dir, "blkio.throttle.io_serviced_recursive", buf, sizeof buf) >= 0 &&
                    stats_parse_blkio(buf, &s.io_reads, &s.io_writes) >= 0)
                        s.has_io = true;
        }
        if (l->psi) {
                _cleanup_close_ int dir = open_dir("unified", path);
                uint64_t usec;
                if (dir >= 0) {
                        /* cgroup2's core cpu.stat counts CPU without the cpu controller: a slice
                         * systemd made has it before any v1 controller has its directory. */
                        if (!s.has_cpu && read_at(dir, "cpu.stat", buf, sizeof buf) >= 0 &&
                            stats_parse_keyed(buf, "usage_usec", &usec) >= 0) {
                                s.has_cpu = true;
                                s.cpu_usage_ns = usec * 1000;
                                found = true;
                        }
                        read_psi(dir, "cpu.pressure", &s.cpu_psi);
                        read_psi(dir, "memory.pressure", &s.memory_psi);
                        read_psi(dir, "io.pressure", &s.io_psi);
                }
        }
        if (!found)
                return -ENOENT;
        *ret = s;
        return 0;
}
