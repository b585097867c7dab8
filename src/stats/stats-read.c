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

/* name in dir, NUL-terminated in buf: its length, or a negative errno (-EFBIG when it fills buf). */
static ssize_t read_at(int dir, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = -1;
        size_t len = 0;

        if (dir < 0)
                return -EBADF;
        fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
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
        uint64_t usage;

        if (!read_u64(dir, v2 ? "memory.current" : "memory.usage_in_bytes", &usage) ||
            read_at(dir, "memory.stat", buf, sizeof buf) < 0 || stats_memory_from_stat(s, usage, buf, v2) < 0)
                return;
        s->has_memory_limit = false;
        (void) read_limit(dir, v2 ? "memory.max" : "memory.limit_in_bytes", &s->has_memory_limit, &s->memory_limit);
        if (v2) {
                s->has_swap = read_u64(dir, "memory.swap.current", &s->swap_usage);
                if (s->has_swap)
                        (void) read_limit(dir, "memory.swap.max", &s->has_swap_limit, &s->swap_limit);
        } else {
                /* v1 counts memory and swap together (memsw), where swap accounting is on. */
                uint64_t memsw, memsw_limit;
                bool limited = false;
                if (read_u64(dir, "memory.memsw.usage_in_bytes", &memsw)) {
                        s->has_swap = true;
                        s->swap_usage = memsw > usage ? memsw - usage : 0;
                        if (read_limit(dir, "memory.memsw.limit_in_bytes", &limited, &memsw_limit) && limited &&
                            s->has_memory_limit) {
                                s->has_swap_limit = true;
                                s->swap_limit = memsw_limit > s->memory_limit ? memsw_limit - s->memory_limit : 0;
                        }
                }
        }
}

int stats_cgroup_read(const char *path, StatsCgroup *ret) {
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
                s.has_pids = read_u64(dir, "pids.current", &s.pids);
                s.has_io = read_at(dir, "io.stat", buf, sizeof buf) >= 0 &&
                           stats_parse_io_stat(buf, &s.io_read_bytes, &s.io_write_bytes, &s.io_reads, &s.io_writes) >= 0;
                read_psi(dir, "cpu.pressure", &s.cpu_psi);
                read_psi(dir, "memory.pressure", &s.memory_psi);
                read_psi(dir, "io.pressure", &s.io_psi);
                *ret = s;
                return 0;
        }

        if (l->cpuacct) {
                _cleanup_close_ int dir = open_dir(l->cpuacct, path);
                found = found || dir >= 0;
                s.has_cpu = read_u64(dir, "cpuacct.usage", &s.cpu_usage_ns);
        }
        if (l->memory) {
                _cleanup_close_ int dir = open_dir(l->memory, path);
                found = found || dir >= 0;
                if (dir >= 0)
                        read_memory(dir, false, &s);
        }
        if (l->pids) {
                _cleanup_close_ int dir = open_dir(l->pids, path);
                found = found || dir >= 0;
                s.has_pids = read_u64(dir, "pids.current", &s.pids);
        }
        if (l->blkio) {
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
                if (dir >= 0) {
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
