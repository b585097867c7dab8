/* Pure parsers of cgroup v1 and v2 files, and the CPU rate between two samples. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

static const char *skip_space(const char *p) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
                p++;
        return p;
}

/* A decimal number at p, ending at a space, '\n' or NUL: its end in *ret_end. */
static int parse_number(const char *p, uint64_t *ret, const char **ret_end) {
        uint64_t v = 0;
        const char *s = p;

        for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        if (p == s || (*p && *p != ' ' && *p != '\t' && *p != '\n'))
                return -EINVAL;
        *ret = v;
        if (ret_end)
                *ret_end = p;
        return 0;
}

int stats_parse_u64(const char *text, uint64_t *ret) {
        const char *end;
        uint64_t v;
        int r;

        r = parse_number(skip_space(text), &v, &end);
        if (r < 0)
                return r;
        if (*skip_space(end))
                return -EINVAL;
        *ret = v;
        return 0;
}

int stats_parse_limit(const char *text, bool *ret_limited, uint64_t *ret) {
        const char *p = skip_space(text);
        uint64_t v;
        int r;

        if (strncmp(p, "max", 3) == 0 && !*skip_space(p + 3)) {
                *ret_limited = false;
                *ret = 0;
                return 0;
        }
        r = stats_parse_u64(text, &v);
        if (r < 0)
                return r;
        /* v1 says "unlimited" as PAGE_COUNTER_MAX pages in bytes: 9223372036854771712 on 4 KiB pages. */
        *ret_limited = v < (1ULL << 62);
        *ret = *ret_limited ? v : 0;
        return 0;
}

int stats_parse_keyed(const char *text, const char *key, uint64_t *ret) {
        size_t n = strlen(key);

        for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                if (strncmp(line, key, n) != 0 || line[n] != ' ')
                        continue;
                const char *end;
                uint64_t v;
                int r = parse_number(line + n + 1, &v, &end);
                if (r < 0)
                        return r;
                if (*end && *end != '\n')
                        return -EINVAL;
                *ret = v;
                return 0;
        }
        return -ENOENT;
}

/* "avg10=0.12 avg60=0.00 avg300=0.00 total=1234" after "some " or "full ". */
static int parse_psi_line(const char *p, StatsPsiData *ret) {
        StatsPsiData d = {};
        unsigned seen = 0;

        while (*p && *p != '\n') {
                p = skip_space(p);
                if (!*p)
                        break;
                const char *eq = strchr(p, '=');
                const char *stop = strpbrk(p, " \n");
                if (!eq || (stop && stop < eq))
                        return -EINVAL;
                size_t klen = (size_t) (eq - p);
                const char *v = eq + 1;
                char *end;
                if (klen == 5 && strncmp(p, "total", 5) == 0) {
                        int r = parse_number(v, &d.total, (const char **) &end);
                        if (r < 0)
                                return r;
                        seen |= 1;
                } else {
                        double x;
                        errno = 0;
                        x = strtod(v, &end);
                        if (errno != 0 || end == v || (*end && *end != ' ' && *end != '\n') || !(x >= 0 && x <= 100))
                                return -EINVAL;
                        if (klen == 5 && strncmp(p, "avg10", 5) == 0)
                                d.avg10 = x, seen |= 2;
                        else if (klen == 5 && strncmp(p, "avg60", 5) == 0)
                                d.avg60 = x, seen |= 4;
                        else if (klen == 6 && strncmp(p, "avg300", 6) == 0)
                                d.avg300 = x, seen |= 8;
                }
                p = end;
        }
        if (seen != 15)
                return -EINVAL;
        *ret = d;
        return 0;
}

int stats_parse_psi(const char *text, StatsPsi *ret) {
        StatsPsi psi = {};
        int r;

        for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                if (strncmp(line, "some ", 5) == 0) {
                        r = parse_psi_line(line + 5, &psi.some);
                        if (r < 0)
                                return r;
                        psi.has_some = true;
                } else if (strncmp(line, "full ", 5) == 0) {
                        r = parse_psi_line(line + 5, &psi.full);
                        if (r < 0)
                                return r;
                        psi.has_full = true;
                } else if (*line != '\n')
                        return -EINVAL;
        }
        if (!psi.has_some)
                return -EINVAL;
        *ret = psi;
        return 0;
}

int stats_parse_io_stat(const char *text, uint64_t *rbytes, uint64_t *wbytes, uint64_t *rios, uint64_t *wios) {
        uint64_t sum[4] = {};
        static const char *const keys[4] = { "rbytes=", "wbytes=", "rios=", "wios=" };

        for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                const char *p = strchr(line, ' '), *nl = strchr(line, '\n');
                if (*line == '\n')
                        continue;
                if (!p || (nl && nl < p))
                        return -EINVAL;
                while (p && *p == ' ') {
                        p++;
                        for (size_t k = 0; k < 4; k++) {
                                size_t n = strlen(keys[k]);
                                uint64_t v;
                                if (strncmp(p, keys[k], n) != 0)
                                        continue;
                                int r = parse_number(p + n, &v, NULL);
                                if (r < 0)
                                        return r;
                                sum[k] += v;
                        }
                        p = strpbrk(p, " \n");
                }
        }
        *rbytes = sum[0];
        *wbytes = sum[1];
        *rios = sum[2];
        *wios = sum[3];
        return 0;
}

int stats_parse_blkio(const char *text, uint64_t *ret_read, uint64_t *ret_write) {
        uint64_t rd = 0, wr = 0;

        for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                /* "8:0 Read 1234", "8:0 Write 5678", …, "Total 6912" */
                const char *op = strchr(line, ' '), *nl = strchr(line, '\n');
                uint64_t v;
                if (!op || (nl && nl < op) || strncmp(line, "Total ", 6) == 0)
                        continue;
                op++;
                if (strncmp(op, "Read ", 5) == 0 && parse_number(op + 5, &v, NULL) == 0)
                        rd += v;
                else if (strncmp(op, "Write ", 6) == 0 && parse_number(op + 6, &v, NULL) == 0)
                        wr += v;
        }
        *ret_read = rd;
        *ret_write = wr;
        return 0;
}

int stats_memory_from_stat(StatsCgroup *s, uint64_t usage, const char *memory_stat, bool v2) {
        uint64_t inactive = 0, rss = 0, pgfault = 0, pgmajfault = 0;
        int r;

        r = stats_parse_keyed(memory_stat, v2 ? "inactive_file" : "total_inactive_file", &inactive);
        if (r < 0 && r != -ENOENT)
                return r;
        r = stats_parse_keyed(memory_stat, v2 ? "anon" : "total_rss", &rss);
        if (r < 0 && r != -ENOENT)
                return r;
        r = stats_parse_keyed(memory_stat, v2 ? "pgfault" : "total_pgfault", &pgfault);
        if (r < 0 && r != -ENOENT)
                return r;
        r = stats_parse_keyed(memory_stat, v2 ? "pgmajfault" : "total_pgmajfault", &pgmajfault);
        if (r < 0 && r != -ENOENT)
                return r;
        if (!v2) {
                uint64_t limit, memsw;
                s->has_memory_limit = stats_parse_keyed(memory_stat, "hierarchical_memory_limit", &limit) == 0 &&
                                      limit < (1ULL << 62);
                s->memory_limit = s->has_memory_limit ? limit : 0;
                s->has_swap_limit = s->has_memory_limit &&
                                    stats_parse_keyed(memory_stat, "hierarchical_memsw_limit", &memsw) == 0 &&
                                    memsw < (1ULL << 62);
                s->swap_limit = s->has_swap_limit ? (memsw > limit ? memsw - limit : 0) : 0;
        }
        s->has_memory = true;
        s->memory_usage = usage;
        s->inactive_file = inactive;
        s->working_set = usage > inactive ? usage - inactive : 0;
        s->rss = rss;
        s->page_faults = pgfault;
        s->major_page_faults = pgmajfault;
        return 0;
}

bool stats_memory_available(const StatsCgroup *s, uint64_t *ret) {
        if (!s->has_memory || !s->has_memory_limit)
                return false;
        *ret = s->memory_limit > s->working_set ? s->memory_limit - s->working_set : 0;
        return true;
}

bool stats_rate_update(StatsRate *r, uint64_t cpu_ns, uint64_t at_ns, uint64_t *ret_nano_cores) {
        if (!r->has_sample || cpu_ns < r->cpu_ns || at_ns < r->at_ns) {
                *r = (StatsRate) { .has_sample = true, .cpu_ns = cpu_ns, .at_ns = at_ns };
                return false;
        }
        if (at_ns - r->at_ns >= STATS_RATE_MIN_NS) {
                /* cores × 1e9 = Δcpu_ns × 1e9 / Δt_ns; in long double, Δcpu_ns × 1e9 overflows 64 bits. */
                long double rate = (long double) (cpu_ns - r->cpu_ns) * 1e9L / (long double) (at_ns - r->at_ns);
                r->nano_cores = rate >= (long double) UINT64_MAX ? UINT64_MAX : (uint64_t) rate;
                r->has_rate = true;
                r->cpu_ns = cpu_ns;
                r->at_ns = at_ns;
        }
        if (!r->has_rate)
                return false;
        *ret_nano_cores = r->nano_cores;
        return true;
}
