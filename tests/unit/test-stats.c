/* Unit tests of src/stats/: cgroup v1 and v2 files as the kernel writes them (captured), the reader
 * over a fake /sys/fs/cgroup of each layout, the CPU rate, and netlink link dumps. */
#include <errno.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fd-util.h"
#include "fileio.h"
#include "macro.h"
#include "stats.h"

/* A v1 memory.stat (kernel 6.1, a container's cgroup), trimmed of nothing. */
static const char v1_memory_stat[] =
        "cache 10035200\nrss 7950336\nrss_huge 0\nshmem 9580544\nmapped_file 7966720\ndirty 24576\n"
        "writeback 0\nworkingset_refault_anon 0\nworkingset_refault_file 5054\nswap 0\nswapcached 0\n"
        "pgpgin 74560\npgpgout 70169\npgfault 154322\npgmajfault 0\ninactive_anon 0\nactive_anon 1531904\n"
        "inactive_file 16384\nactive_file 438272\nunevictable 15998976\n"
        "hierarchical_memory_limit 9223372036854771712\nhierarchical_memsw_limit 9223372036854771712\n"
        "total_cache 1339564032\ntotal_rss 182759424\ntotal_rss_huge 6291456\ntotal_shmem 49455104\n"
        "total_mapped_file 122286080\ntotal_dirty 17473536\ntotal_writeback 0\n"
        "total_workingset_refault_anon 0\ntotal_workingset_refault_file 2688671\ntotal_swap 0\n"
        "total_swapcached 0\ntotal_pgpgin 498173428\ntotal_pgpgout 497896053\ntotal_pgfault 588987519\n"
        "total_pgmajfault 43817\ntotal_inactive_anon 194928640\ntotal_active_anon 21123072\n"
        "total_inactive_file 558141440\ntotal_active_file 744620032\ntotal_unevictable 15998976\n";

/* The same, in a cgroup limited to 2 GiB and 3 GiB with swap (hierarchical: its own or an ancestor's). */
static const char v1_memory_stat_limited[] =
        "cache 10035200\nrss 7950336\nhierarchical_memory_limit 2147483648\nhierarchical_memsw_limit 3221225472\n"
        "total_rss 182759424\ntotal_pgfault 588987519\ntotal_pgmajfault 43817\ntotal_inactive_file 558141440\n";

/* A v2 memory.stat (kernel 6.1). */
static const char v2_memory_stat[] =
        "anon 71102464\nfile 133079040\nkernel 8597504\nkernel_stack 557056\npagetables 1081344\n"
        "sec_pagetables 0\npercpu 1120\nsock 0\nvmalloc 0\nshmem 67108864\nzswap 0\nzswapped 0\n"
        "file_mapped 0\nfile_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\nfile_thp 0\nshmem_thp 0\n"
        "inactive_anon 138149888\nactive_anon 57344\ninactive_file 65966080\nactive_file 4096\n"
        "unevictable 0\nslab_reclaimable 6516824\nslab_unreclaimable 335776\nslab 6852600\n"
        "workingset_refault_anon 0\nworkingset_refault_file 0\nworkingset_activate_anon 0\n"
        "workingset_activate_file 0\nworkingset_restore_anon 0\nworkingset_restore_file 0\n"
        "workingset_nodereclaim 0\npgscan 0\npgsteal 0\npgscan_kswapd 0\npgscan_direct 0\n"
        "pgsteal_kswapd 0\npgsteal_direct 0\npgfault 50123\npgmajfault 17\npgrefill 0\npgactivate 1\n"
        "pgdeactivate 0\npglazyfree 0\npglazyfreed 0\nzswpin 0\nzswpout 0\nthp_fault_alloc 0\n"
        "thp_collapse_alloc 0\n";

static const char v2_cpu_stat[] =
        "usage_usec 5123456\nuser_usec 4000000\nsystem_usec 1123456\nnr_periods 0\nnr_throttled 0\n"
        "throttled_usec 0\nnr_bursts 0\nburst_usec 0\n";

static const char psi_cpu[] = "some avg10=97.07 avg60=91.12 avg300=62.29 total=11264134388\n"
                              "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
static const char psi_io_old[] = "some avg10=0.02 avg60=0.11 avg300=0.58 total=247923567\n"; /* cpu before 5.13 */

static const char v2_io_stat[] = "8:0 rbytes=1048576 wbytes=4096 rios=12 wios=1 dbytes=0 dios=0\n"
                                 "253:1 rbytes=2048 wbytes=8192 rios=2 wios=3 dbytes=0 dios=0\n";

static const char v1_blkio_bytes[] = "8:0 Read 1048576\n8:0 Write 4096\n8:0 Sync 1052672\n8:0 Async 0\n"
                                     "8:0 Discard 0\n8:0 Total 1052672\nTotal 1052672\n";

static void test_numbers(void **state) {
        uint64_t v;
        bool limited;

        (void) state;
        assert_int_equal(stats_parse_u64("123\n", &v), 0);
        assert_int_equal(v, 123);
        assert_int_equal(stats_parse_u64(" 0 ", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(stats_parse_u64("18446744073709551615\n", &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(stats_parse_u64("18446744073709551616\n", &v), -ERANGE);
        assert_int_equal(stats_parse_u64("", &v), -EINVAL);
        assert_int_equal(stats_parse_u64("12a\n", &v), -EINVAL);
        assert_int_equal(stats_parse_u64("1 2\n", &v), -EINVAL);
        assert_int_equal(stats_parse_u64("-1\n", &v), -EINVAL);

        assert_int_equal(stats_parse_limit("max\n", &limited, &v), 0);
        assert_false(limited);
        assert_int_equal(stats_parse_limit("9223372036854771712\n", &limited, &v), 0); /* v1 unlimited */
        assert_false(limited);
        assert_int_equal(stats_parse_limit("33554432\n", &limited, &v), 0);
        assert_true(limited);
        assert_int_equal(v, 32 << 20);
        assert_int_equal(stats_parse_limit("maximum\n", &limited, &v), -EINVAL);
}

static void test_keyed(void **state) {
        uint64_t v;

        (void) state;
        assert_int_equal(stats_parse_keyed(v2_cpu_stat, "usage_usec", &v), 0);
        assert_int_equal(v, 5123456);
        assert_int_equal(stats_parse_keyed(v2_cpu_stat, "burst_usec", &v), 0);
        assert_int_equal(v, 0);
        /* A key is a whole word: "rss" is not "rss_huge", "inactive_file" not "total_inactive_file". */
        assert_int_equal(stats_parse_keyed(v1_memory_stat, "rss", &v), 0);
        assert_int_equal(v, 7950336);
        assert_int_equal(stats_parse_keyed(v1_memory_stat, "inactive_file", &v), 0);
        assert_int_equal(v, 16384);
        assert_int_equal(stats_parse_keyed(v1_memory_stat, "usage", &v), -ENOENT);
        assert_int_equal(stats_parse_keyed("a 1\nb x\n", "b", &v), -EINVAL);
        assert_int_equal(stats_parse_keyed("a 1\nb", "b", &v), -ENOENT);
        assert_int_equal(stats_parse_keyed("", "a", &v), -ENOENT);
}

static void test_memory_v1(void **state) {
        StatsCgroup s = {};
        uint64_t avail;

        (void) state;
        assert_int_equal(stats_memory_from_stat(&s, 1000000000, v1_memory_stat, false), 0);
        assert_true(s.has_memory);
        assert_int_equal(s.memory_usage, 1000000000);
        assert_int_equal(s.inactive_file, 558141440);
        assert_int_equal(s.working_set, 1000000000 - 558141440);
        assert_int_equal(s.rss, 182759424);
        assert_int_equal(s.page_faults, 588987519);
        assert_int_equal(s.major_page_faults, 43817);
        assert_false(s.has_memory_limit || s.has_swap_limit); /* PAGE_COUNTER_MAX: none */
        assert_false(stats_memory_available(&s, &avail)); /* no limit */
        s.has_memory_limit = true;
        s.memory_limit = 1ULL << 30;
        assert_true(stats_memory_available(&s, &avail));
        assert_int_equal(avail, (1ULL << 30) - s.working_set);
        s.memory_limit = 1;
        assert_true(stats_memory_available(&s, &avail));
        assert_int_equal(avail, 0);

        /* inactive_file above usage (the counters are read one after the other): 0, not a wrap. */
        assert_int_equal(stats_memory_from_stat(&s, 4096, v1_memory_stat, false), 0);
        assert_int_equal(s.working_set, 0);
}

static void test_memory_v2(void **state) {
        StatsCgroup s = {};

        (void) state;
        assert_int_equal(stats_memory_from_stat(&s, 213000192, v2_memory_stat, true), 0);
        assert_int_equal(s.inactive_file, 65966080);
        assert_int_equal(s.working_set, 213000192 - 65966080);
        assert_int_equal(s.rss, 71102464);
        assert_int_equal(s.page_faults, 50123);
        assert_int_equal(s.major_page_faults, 17);
        assert_int_equal(stats_memory_from_stat(&s, 1, "anon x\n", true), -EINVAL);
}

static void test_psi(void **state) {
        StatsPsi p;

        (void) state;
        assert_int_equal(stats_parse_psi(psi_cpu, &p), 0);
        assert_true(p.has_some && p.has_full);
        assert_true(p.some.avg10 > 97.06 && p.some.avg10 < 97.08);
        assert_true(p.some.avg300 > 62.28 && p.some.avg300 < 62.30);
        assert_true(p.some.total == 11264134388ULL);
        assert_int_equal(p.full.total, 0);
        assert_int_equal(stats_parse_psi(psi_io_old, &p), 0);
        assert_true(p.has_some && !p.has_full);
        assert_int_equal(p.some.total, 247923567);
        assert_int_equal(stats_parse_psi("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", &p), -EINVAL);
        assert_int_equal(stats_parse_psi("some avg10=0.00 avg60=0.00 total=0\n", &p), -EINVAL);
        assert_int_equal(stats_parse_psi("some avg10=x avg60=0.00 avg300=0.00 total=0\n", &p), -EINVAL);
        assert_int_equal(stats_parse_psi("other\n", &p), -EINVAL);
        assert_int_equal(stats_parse_psi("", &p), -EINVAL);
}

static void test_io(void **state) {
        uint64_t rb, wb, ri, wi;

        (void) state;
        assert_int_equal(stats_parse_io_stat(v2_io_stat, &rb, &wb, &ri, &wi), 0);
        assert_int_equal(rb, 1048576 + 2048);
        assert_int_equal(wb, 4096 + 8192);
        assert_int_equal(ri, 14);
        assert_int_equal(wi, 4);
        assert_int_equal(stats_parse_io_stat("", &rb, &wb, &ri, &wi), 0);
        assert_int_equal(rb, 0);
        assert_int_equal(stats_parse_io_stat("8:0 rbytes=x\n", &rb, &wb, &ri, &wi), -EINVAL);
        assert_int_equal(stats_parse_blkio(v1_blkio_bytes, &rb, &wb), 0);
        assert_int_equal(rb, 1048576);
        assert_int_equal(wb, 4096);
}

static void test_rate(void **state) {
        StatsRate r = {};
        uint64_t v = 0;
        const uint64_t S = 1000000000ULL;

        (void) state;
        /* The first sample: no rate, rather than a wrong one. */
        assert_false(stats_rate_update(&r, 5 * S, 100 * S, &v));
        /* Too soon for a first rate. */
        assert_false(stats_rate_update(&r, 5 * S + 1000, 100 * S + 1000, &v));
        /* One busy core over 2 s: 1e9 nano cores. */
        assert_true(stats_rate_update(&r, 7 * S, 102 * S, &v));
        assert_int_equal(v, S);
        /* Soon after: the last rate again, and the kept sample stays. */
        assert_true(stats_rate_update(&r, 7 * S + 10, 102 * S + 10, &v));
        assert_int_equal(v, S);
        /* Half a core over 4 s. */
        assert_true(stats_rate_update(&r, 9 * S, 106 * S, &v));
        assert_int_equal(v, S / 2);
        /* The counter went back (a new cgroup): start again. */
        assert_false(stats_rate_update(&r, 1 * S, 107 * S, &v));
        assert_true(stats_rate_update(&r, 3 * S, 108 * S, &v));
        assert_int_equal(v, 2 * S);
        /* Large counters do not overflow. */
        r = (StatsRate) {};
        assert_false(stats_rate_update(&r, UINT64_MAX / 4, S, &v));
        assert_true(stats_rate_update(&r, UINT64_MAX / 4 + 3 * S, 2 * S, &v));
        assert_int_equal(v, 3 * S);
}

/* --- the reader over fake hierarchies ----------------------------------------------------------- */

static char root[] = "/tmp/test-stats.XXXXXX";

static void put(const char *rel, const char *text) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", root, rel);
        char *slash = strrchr(p, '/');
        *slash = '\0';
        assert_int_equal(mkdir_p(p, 0755), 0);
        *slash = '/';
        assert_int_equal(write_file_atomic(p, text, strlen(text), 0644), 0);
}

static void test_read_v1(void **state) {
        StatsCgroup s;

        (void) state;
        assert_non_null(mkdtemp(root));
        put("cpuacct/cgroup.procs", "");
        put("cpuacct/cpuacct.usage", "0\n");
        put("memory/memory.usage_in_bytes", "0\n");
        put("pids/cgroup.procs", "");
        put("unified/cgroup.procs", "");
        put("cpuacct/a.slice/b.service/cpuacct.usage", "2500000000\n");
        put("memory/a.slice/b.service/memory.usage_in_bytes", "1000000000\n");
        put("memory/a.slice/b.service/memory.stat", v1_memory_stat_limited);
        put("memory/a.slice/b.service/memory.memsw.usage_in_bytes", "1000004096\n");
        put("pids/a.slice/b.service/pids.current", "3\n");
        put("unified/a.slice/b.service/cpu.pressure", psi_cpu);
        stats_cgroup_set_root(root);

        assert_int_equal(stats_cgroup_read("/a.slice/b.service", STATS_READ_PIDS | STATS_READ_IO, &s), 0);
        assert_true(s.timestamp_ns > 0 && s.monotonic_ns > 0);
        assert_true(s.has_cpu);
        assert_true(s.cpu_usage_ns == 2500000000ULL);
        assert_true(s.has_memory);
        assert_int_equal(s.memory_usage, 1000000000);
        assert_int_equal(s.working_set, 1000000000 - 558141440);
        assert_true(s.has_memory_limit);
        assert_true(s.memory_limit == 2147483648ULL);
        assert_true(s.has_swap);
        assert_int_equal(s.swap_usage, 4096);
        assert_true(s.has_swap_limit);
        assert_true(s.swap_limit == 1073741824ULL);
        assert_true(s.has_pids);
        assert_int_equal(s.pids, 3);
        assert_false(s.has_io); /* no blkio hierarchy here */
        /* What was not asked for is not read. */
        assert_int_equal(stats_cgroup_read("/a.slice/b.service", 0, &s), 0);
        assert_false(s.has_pids);
        assert_true(s.has_cpu && s.has_memory);
        assert_true(s.cpu_psi.has_some && !s.memory_psi.has_some);
        /* A cgroup that is nowhere. */
        assert_int_equal(stats_cgroup_read("/a.slice/gone.service", 0, &s), -ENOENT);
        /* One only some controllers have: what is there. */
        put("pids/a.slice/half.service/pids.current", "1\n");
        assert_int_equal(stats_cgroup_read("/a.slice/half.service", STATS_READ_PIDS, &s), 0);
        assert_false(s.has_cpu || s.has_memory);
        assert_true(s.has_pids);
        /* A slice only systemd made (no v1 controller has it yet): the CPU from cgroup2's core
         * cpu.stat in the hybrid unified hierarchy. */
        put("unified/a.slice/only.slice/cpu.stat", v2_cpu_stat);
        assert_int_equal(stats_cgroup_read("/a.slice/only.slice", STATS_READ_PIDS, &s), 0);
        assert_true(s.has_cpu);
        assert_true(s.cpu_usage_ns == 5123456000ULL);
        assert_false(s.has_memory || s.has_pids);
        /* cpuacct wins where it is there. */
        put("unified/a.slice/b.service/cpu.stat", v2_cpu_stat);
        assert_int_equal(stats_cgroup_read("/a.slice/b.service", STATS_READ_PIDS | STATS_READ_IO, &s), 0);
        assert_true(s.cpu_usage_ns == 2500000000ULL);
}

static void test_read_v2(void **state) {
        char v2root[sizeof root + 8];
        StatsCgroup s;

        (void) state;
        snprintf(v2root, sizeof v2root, "%s/v2", root);
        put("v2/cgroup.controllers", "cpuset cpu io memory pids\n");
        put("v2/a.slice/b.service/cpu.stat", v2_cpu_stat);
        put("v2/a.slice/b.service/memory.current", "213000192\n");
        put("v2/a.slice/b.service/memory.stat", v2_memory_stat);
        put("v2/a.slice/b.service/memory.max", "max\n");
        put("v2/a.slice/b.service/memory.swap.current", "8192\n");
        put("v2/a.slice/b.service/memory.swap.max", "1048576\n");
        put("v2/a.slice/b.service/pids.current", "7\n");
        put("v2/a.slice/b.service/io.stat", v2_io_stat);
        put("v2/a.slice/b.service/cpu.pressure", psi_cpu);
        put("v2/a.slice/b.service/memory.pressure", psi_cpu);
        put("v2/a.slice/b.service/io.pressure", psi_io_old);
        stats_cgroup_set_root(v2root);

        assert_int_equal(stats_cgroup_read("/a.slice/b.service", STATS_READ_PIDS | STATS_READ_IO, &s), 0);
        assert_true(s.has_cpu);
        assert_true(s.cpu_usage_ns == 5123456000ULL);
        assert_false(s.memory_limit); /* "max" */
        assert_true(s.has_memory);
        assert_int_equal(s.working_set, 213000192 - 65966080);
        assert_int_equal(s.rss, 71102464);
        assert_false(s.has_memory_limit);
        assert_true(s.has_swap && s.has_swap_limit);
        assert_int_equal(s.swap_usage, 8192);
        assert_int_equal(s.swap_limit, 1048576);
        assert_int_equal(s.pids, 7);
        assert_true(s.has_io);
        assert_int_equal(s.io_read_bytes, 1048576 + 2048);
        assert_true(s.cpu_psi.has_full && s.memory_psi.has_some && s.io_psi.has_some && !s.io_psi.has_full);
        assert_int_equal(stats_cgroup_read("/gone", 0, &s), -ENOENT);
        stats_cgroup_set_root(NULL);

        char cmd[sizeof root + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", root);
        assert_int_equal(system(cmd), 0);
}

/* --- netlink ------------------------------------------------------------------------------------ */

static size_t add_attr(uint8_t *p, unsigned short type, const void *data, size_t len) {
        struct rtattr rta = { .rta_len = (unsigned short) RTA_LENGTH(len), .rta_type = type };
        memcpy(p, &rta, sizeof rta);
        memcpy(p + RTA_LENGTH(0), data, len);
        return RTA_ALIGN(rta.rta_len);
}

static size_t add_link(uint8_t *p, const char *name, unsigned type, unsigned flags, uint64_t rx, uint64_t tx) {
        struct nlmsghdr h = { .nlmsg_type = RTM_NEWLINK, .nlmsg_flags = NLM_F_MULTI };
        struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_type = (unsigned short) type, .ifi_flags = flags };
        struct rtnl_link_stats64 st = { .rx_bytes = rx, .tx_bytes = tx, .rx_errors = 1, .tx_errors = 2 };
        size_t off = NLMSG_LENGTH(sizeof ifi);

        memcpy(p + NLMSG_HDRLEN, &ifi, sizeof ifi);
        off = NLMSG_ALIGN(off);
        off += add_attr(p + off, IFLA_IFNAME, name, strlen(name) + 1);
        off += add_attr(p + off, IFLA_STATS64, &st, sizeof st);
        h.nlmsg_len = (uint32_t) off;
        memcpy(p, &h, sizeof h);
        return NLMSG_ALIGN(off);
}

static void test_netlink(void **state) {
        static uint8_t buf[4096];
        StatsNet n = {};
        bool done;
        size_t len = 0;

        (void) state;
        len += add_link(buf + len, "lo", ARPHRD_LOOPBACK, IFF_LOOPBACK | IFF_UP, 100, 100);
        len += add_link(buf + len, "eth1", ARPHRD_ETHER, IFF_UP, 10, 20);
        len += add_link(buf + len, "eth0", ARPHRD_ETHER, IFF_UP, 1234, 5678);
        assert_int_equal(stats_net_parse(buf, len, &n, &done), 0);
        assert_false(done);
        assert_int_equal(n.n_ifs, 2);
        assert_string_equal(n.ifs[0].name, "eth1");
        assert_string_equal(stats_net_default(&n)->name, "eth0");
        assert_int_equal(stats_net_default(&n)->rx_bytes, 1234);
        assert_int_equal(stats_net_default(&n)->tx_bytes, 5678);
        assert_int_equal(stats_net_default(&n)->tx_errors, 2);

        struct nlmsghdr d = { .nlmsg_len = NLMSG_LENGTH(4), .nlmsg_type = NLMSG_DONE };
        memset(buf, 0, sizeof buf);
        memcpy(buf, &d, sizeof d);
        assert_int_equal(stats_net_parse(buf, NLMSG_LENGTH(4), &n, &done), 0);
        assert_true(done);

        /* A message longer than the buffer, an attribute longer than its message. */
        len = add_link(buf, "eth2", ARPHRD_ETHER, 0, 1, 1);
        assert_int_equal(stats_net_parse(buf, len - 4, &n, &done), -EBADMSG);
        ((struct rtattr *) (buf + NLMSG_LENGTH(sizeof(struct ifinfomsg))))->rta_len = 4000;
        assert_int_equal(stats_net_parse(buf, len, &n, &done), -EBADMSG);
        stats_net_done(&n);

        struct {
                struct nlmsghdr h;
                struct nlmsgerr e;
        } err = { .h = { .nlmsg_len = sizeof err, .nlmsg_type = NLMSG_ERROR }, .e = { .error = -EPERM } };
        assert_int_equal(stats_net_parse(&err, sizeof err, &n, &done), -EPERM);
        assert_true(done);
}

static void test_netlink_self(void **state) {
        StatsNet n = {};

        (void) state;
        /* The test's own namespace, through the same code as a pod's (no path: no setns). */
        assert_int_equal(stats_net_read(NULL, &n), 0);
        for (size_t i = 0; i < n.n_ifs; i++)
                assert_string_not_equal(n.ifs[i].name, "lo");
        assert_true(n.timestamp_ns > 0);
        stats_net_done(&n);
        assert_int_equal(stats_net_read("/proc/self/ns/net", &n), 0);
        stats_net_done(&n);
        assert_true(stats_net_read("/nonexistent", &n) == -ENOENT);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_numbers),     cmocka_unit_test(test_keyed),   cmocka_unit_test(test_memory_v1),
                cmocka_unit_test(test_memory_v2),   cmocka_unit_test(test_psi),     cmocka_unit_test(test_io),
                cmocka_unit_test(test_rate),        cmocka_unit_test(test_read_v1), cmocka_unit_test(test_read_v2),
                cmocka_unit_test(test_netlink),     cmocka_unit_test(test_netlink_self),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
