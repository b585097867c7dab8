/* Resource settings as systemd's unit properties take them: kubelet's cpu shares on the CPUWeight
 * scale, cpusets as the bitmaps of AllowedCPUs and AllowedMemoryNodes. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "macro.h"
#include "systemd-unit.h"

uint64_t systemd_shares_to_weight(int64_t shares) {
        return 1 + ((uint64_t) MIN(MAX(shares, 2), 262144) - 2) * 9999 / 262142;
}

int systemd_cpuset_parse(const char *s, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *bits = NULL;
        size_t len = 0;
        const char *p = s;

        assert(s && ret && ret_len);
        if (!*s)
                return -EINVAL;
        bits = calloc(SYSTEMD_CPUSET_MAX / 8, 1);
        if (!bits)
                return -ENOMEM;
        for (;;) {
                char *end;
                unsigned long a, b;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                a = b = strtoul(p, &end, 10);
                p = end;
                if (*p == '-') {
                        p++;
                        if (*p < '0' || *p > '9')
                                return -EINVAL;
                        b = strtoul(p, &end, 10);
                        p = end;
                }
                if (a > b || b >= SYSTEMD_CPUSET_MAX)
                        return -EINVAL;
                for (unsigned long i = a; i <= b; i++)
                        bits[i / 8] |= (uint8_t) (1u << (i % 8));
                len = MAX(len, b / 8 + 1);
                if (*p == '\0')
                        break;
                if (*p != ',')
                        return -EINVAL;
                p++;
        }
        *ret = TAKE_PTR(bits);
        *ret_len = len;
        return 0;
}

int systemd_append_limits(sd_bus_message *m, int64_t shares, int64_t quota, int64_t period, int64_t memory) {
        int r = 0;

        if (shares > 0)
                r = sd_bus_message_append(m, "(sv)", "CPUWeight", "t", systemd_shares_to_weight(shares));
        if (r >= 0 && quota > 0) {
                uint64_t p = period > 0 ? (uint64_t) period : 100000;
                r = sd_bus_message_append(m, "(sv)(sv)", "CPUQuotaPerSecUSec", "t", (uint64_t) quota * 1000000 / p,
                                          "CPUQuotaPeriodUSec", "t", p);
        }
        if (r >= 0 && memory > 0)
                r = sd_bus_message_append(m, "(sv)", "MemoryMax", "t", (uint64_t) memory);
        return r;
}

int systemd_cpuset_check(const char *s) {
        uint8_t *bits = NULL;
        size_t n;
        int r;

        if (!s || !*s)
                return 0;
        r = systemd_cpuset_parse(s, &bits, &n);
        free(bits);
        return r;
}

int systemd_append_cpuset(sd_bus_message *m, const char *property, const char *list) {
        _cleanup_free_ uint8_t *bits = NULL;
        size_t n = 0;
        int r;

        /* An empty set: systemd's "unset" (the parent's CPUs). */
        if (list && list[0] && (r = systemd_cpuset_parse(list, &bits, &n)) < 0)
                return r;
        r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", property);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "ay");
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', bits, n);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}
