/* Resource statistics: pure parsers over cgroup files (v1 and v2) and netlink link dumps, the CPU
 * rate between two samples, and the readers that feed them from a cgroup or a network namespace. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct StatsPsiData {
        uint64_t total; /* µs stalled */
        double avg10, avg60, avg300;
} StatsPsiData;

/* A cgroup v2 *.pressure file: "some" always, "full" for memory and io (and cpu since 5.13). */
typedef struct StatsPsi {
        bool has_some, has_full;
        StatsPsiData some, full;
} StatsPsi;

/* One sample of a cgroup. Each has_* says the figure was read: a file missing or unreadable leaves
 * it false (and the CRI field unset), never a made-up 0. */
typedef struct StatsCgroup {
        uint64_t timestamp_ns; /* CLOCK_REALTIME when read */
        uint64_t monotonic_ns; /* for the CPU rate */

        bool has_cpu;
        uint64_t cpu_usage_ns;

        bool has_memory; /* usage, and memory.stat */
        uint64_t memory_usage, working_set, rss, page_faults, major_page_faults, inactive_file;
        bool has_memory_limit; /* false: unlimited (or unknown) */
        uint64_t memory_limit;

        bool has_swap;
        uint64_t swap_usage;
        bool has_swap_limit;
        uint64_t swap_limit;

        bool has_pids;
        uint64_t pids;

        bool has_io; /* io.stat (v2) or blkio.throttle.io_service_bytes_recursive (v1) */
        uint64_t io_read_bytes, io_write_bytes, io_reads, io_writes;

        StatsPsi cpu_psi, memory_psi, io_psi;
} StatsCgroup;

/* --- parsers: pure, over a NUL-terminated file's contents ---------------------------------------- */

/* A file holding one decimal number (whitespace around it allowed): -EINVAL otherwise. */
int stats_parse_u64(const char *text, uint64_t *ret);
/* A limit: a number, or "max" (v2), or a v1 "unlimited" (≥ 2^62, PAGE_COUNTER_MAX rounded to a
 * page): *ret_limited false then. */
int stats_parse_limit(const char *text, bool *ret_limited, uint64_t *ret);
/* The value of key in a flat keyed file ("key value" lines: cpu.stat, memory.stat): -ENOENT when
 * absent, -EINVAL when its value is not a number. */
int stats_parse_keyed(const char *text, const char *key, uint64_t *ret);
/* A pressure file ("some avg10=0.12 avg60=… avg300=… total=…", "full …"). */
int stats_parse_psi(const char *text, StatsPsi *ret);
/* io.stat: every device's "MAJ:MIN rbytes=… wbytes=… rios=… wios=… …" summed. */
int stats_parse_io_stat(const char *text, uint64_t *rbytes, uint64_t *wbytes, uint64_t *rios, uint64_t *wios);
/* v1 blkio.throttle.io_service{,_bytes}_recursive: the "Total" line, or the sum of each device's
 * Read and Write lines: *ret_read and *ret_write. */
int stats_parse_blkio(const char *text, uint64_t *ret_read, uint64_t *ret_write);

/* memory.stat into the sample (sets has_memory with usage): v1 names total_inactive_file,
 * total_rss, total_pgfault, total_pgmajfault (hierarchical) or v2's inactive_file, anon, pgfault,
 * pgmajfault. working_set = usage − inactive_file, not below 0. On v1 also the limits, from
 * hierarchical_memory_limit and hierarchical_memsw_limit (the least of the cgroup's and its
 * ancestors': what the kernel holds it to). */
int stats_memory_from_stat(StatsCgroup *s, uint64_t usage, const char *memory_stat, bool v2);

/* available_bytes: limit − working set (0 when over it); false without a limit. */
bool stats_memory_available(const StatsCgroup *s, uint64_t *ret);

/* --- the CPU rate ------------------------------------------------------------------------------- */

/* Kept per container (and pod) as containerd keeps its last sample. The first sample gives no rate;
 * a later one at least STATS_RATE_MIN_NS after the kept one gives the rate over that interval and
 * is kept in its place; one sooner gives the last rate again (two calls a millisecond apart would
 * otherwise measure noise). A counter going backwards (a new cgroup) starts again. */
#define STATS_RATE_MIN_NS (1000ULL * 1000 * 1000)
typedef struct StatsRate {
        bool has_sample, has_rate;
        uint64_t cpu_ns, at_ns; /* the kept sample (monotonic time) */
        uint64_t nano_cores;    /* the last rate */
} StatsRate;
bool stats_rate_update(StatsRate *r, uint64_t cpu_ns, uint64_t at_ns, uint64_t *ret_nano_cores);

/* --- reading a cgroup --------------------------------------------------------------------------- */

/* The cgroup at path (as systemd names it: "/a.slice/b.service", "" the root) in whatever
 * hierarchies this machine mounts under /sys/fs/cgroup: the unified one (v2), or the v1
 * controllers (cpuacct, memory, pids, blkio) with PSI from the hybrid unified hierarchy when it
 * has it. Small reads of kernel pseudo-files: cheap, never blocking on a disk. -ENOENT when the
 * cgroup exists in none of them. */
typedef enum StatsRead {
        STATS_READ_PIDS = 1 << 0, /* pids.current (a pod's process count, metrics) */
        STATS_READ_IO = 1 << 1,   /* io.stat or blkio (metrics only: the CRI's IoUsage has PSI only) */
} StatsRead;
int stats_cgroup_read(const char *path, StatsRead what, StatsCgroup *ret);
/* The root the reader looks in, for tests ("/sys/fs/cgroup" by default). Resets the layout cache. */
void stats_cgroup_set_root(const char *root);

/* --- network ------------------------------------------------------------------------------------ */

typedef struct StatsNetIf {
        char name[16];
        uint64_t rx_bytes, rx_errors, tx_bytes, tx_errors, rx_packets, tx_packets, rx_dropped, tx_dropped;
} StatsNetIf;

typedef struct StatsNet {
        uint64_t timestamp_ns;
        StatsNetIf *ifs; /* loopback left out */
        size_t n_ifs;
} StatsNet;

void stats_net_done(StatsNet *n);
/* One buffer of an RTM_GETLINK dump's reply (RTM_NEWLINK messages with IFLA_IFNAME and
 * IFLA_STATS64, or IFLA_STATS): links appended to n, loopback skipped. *ret_done when NLMSG_DONE
 * came; an NLMSG_ERROR is its negative errno. Pure: buffers from the kernel or from a fuzzer. */
int stats_net_parse(const void *buf, size_t len, StatsNet *n, bool *ret_done);
/* The links of the network namespace pinned at netns_path: a netlink socket made in it (setns
 * around socket() only, on the calling thread), RTM_GETLINK dumped, no process. NULL: the daemon's. */
int stats_net_read(const char *netns_path, StatsNet *ret);
/* The interface a pod's traffic goes through: "eth0" when there, else the first. NULL: none. */
const StatsNetIf *stats_net_default(const StatsNet *n);
