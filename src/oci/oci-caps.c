/* Capabilities: their names, the defaults containerd gives, the bounding set, Kubernetes add/drop. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"
#include "oci-spec.h"
#include "quote.h"
#include "strv.h"

/* Indexed by the capability's number (linux/capability.h). */
static const char *const cap_names[] = {
        "CAP_CHOWN",           "CAP_DAC_OVERRIDE",   "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
        "CAP_FSETID",          "CAP_KILL",           "CAP_SETGID",          "CAP_SETUID",
        "CAP_SETPCAP",         "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",       "CAP_NET_RAW",        "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",      "CAP_SYS_RAWIO",      "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",       "CAP_SYS_ADMIN",      "CAP_SYS_BOOT",        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",    "CAP_SYS_TIME",       "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
        "CAP_LEASE",           "CAP_AUDIT_WRITE",    "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",    "CAP_MAC_ADMIN",      "CAP_SYSLOG",          "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",   "CAP_AUDIT_READ",     "CAP_PERFMON",         "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
};

const char *const oci_default_capabilities[] = {
        "CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FSETID",     "CAP_FOWNER",           "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID",      "CAP_SETUID",     "CAP_SETFCAP",          "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",           "CAP_SYS_CHROOT", "CAP_KILL",             "CAP_AUDIT_WRITE",
        NULL,
};

/* "net_admin", "CAP_NET_ADMIN" → 12; -EINVAL when unknown. */
static int cap_from_name(const char *name) {
        const char *n = strncasecmp(name, "CAP_", 4) == 0 ? name + 4 : name;

        for (size_t i = 0; i < ELEMENTSOF(cap_names); i++)
                if (strcasecmp(cap_names[i] + 4, n) == 0)
                        return (int) i;
        return -EINVAL;
}

static int read_cap_last_cap(unsigned *ret) {
        FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
        unsigned v;
        int r;

        if (!f)
                return negative_errno();
        r = fscanf(f, "%u", &v);
        fclose(f);
        if (r != 1)
                return -EIO;
        *ret = v;
        return 0;
}

/* The bits of what this kernel knows, this process's bounding set holds and we have a name for. */
static int bounding_mask(uint64_t *ret) {
        FILE *f = fopen("/proc/self/status", "re");
        char *line = NULL;
        size_t n = 0;
        uint64_t mask = 0;
        unsigned last = ELEMENTSOF(cap_names) - 1;
        bool found = false;

        if (!f)
                return negative_errno();
        while (getline(&line, &n, f) > 0)
                if (strncmp(line, "CapBnd:", 7) == 0) {
                        found = sscanf(line + 7, "%" SCNx64, &mask) == 1;
                        break;
                }
        free(line);
        fclose(f);
        if (!found)
                return -EIO;

        /* Without cap_last_cap (old kernels), CapBnd alone decides. */
        (void) read_cap_last_cap(&last);
        last = MIN(last, (unsigned) ELEMENTSOF(cap_names) - 1);
        if (last < 63)
                mask &= (UINT64_C(1) << (last + 1)) - 1;
        *ret = mask;
        return 0;
}

static char **mask_to_strv(uint64_t mask) {
        char **l = calloc(1, sizeof(char *));

        for (size_t i = 0; l && i < ELEMENTSOF(cap_names); i++)
                if ((mask & (UINT64_C(1) << i)) && strv_push(&l, cap_names[i]) < 0) {
                        strv_free(l);
                        return NULL;
                }
        return l;
}

char **oci_bounding_capabilities(void) {
        uint64_t mask;
        int r = bounding_mask(&mask);

        if (r < 0) {
                errno = -r;
                return NULL;
        }
        return mask_to_strv(mask);
}

static bool strv_has_all(char **l) {
        for (char **p = l; p && *p; p++)
                if (strcasecmp(*p, "ALL") == 0)
                        return true;
        return false;
}

/* The bits of l's names ("ALL" skipped); -EINVAL with the message for an unknown one. */
static int names_to_mask(const char *const *l, uint64_t *ret, char **ret_message) {
        uint64_t mask = 0;

        for (const char *const *p = l; p && *p; p++) {
                int c;

                if (strcasecmp(*p, "ALL") == 0)
                        continue;
                c = cap_from_name(*p);
                if (c < 0) {
                        if (ret_message && asprintf(ret_message, "unknown capability %s", QUOTE(*p)) < 0)
                                *ret_message = NULL;
                        return c;
                }
                mask |= UINT64_C(1) << c;
        }
        *ret = mask;
        return 0;
}

char **oci_capabilities_resolve(const char *const *base, char **add, char **drop, char **ret_message) {
        uint64_t bounding, set, add_mask, drop_mask;
        char **l;
        int r;

        if (ret_message)
                *ret_message = NULL;

        if ((r = names_to_mask(base, &set, ret_message)) < 0 ||
            (r = names_to_mask((const char *const *) add, &add_mask, ret_message)) < 0 ||
            (r = names_to_mask((const char *const *) drop, &drop_mask, ret_message)) < 0) {
                errno = -r;
                return NULL;
        }
        r = bounding_mask(&bounding);
        if (r < 0) {
                if (ret_message && asprintf(ret_message, "cannot read the capability bounding set: %s",
                                            strerror(-r)) < 0)
                        *ret_message = NULL;
                errno = -r;
                return NULL;
        }

        /* containerd's order: add ALL, drop ALL, then the named adds, then the named drops. */
        if (strv_has_all(add))
                set = bounding;
        if (strv_has_all(drop))
                set = 0;
        set |= add_mask;
        set &= ~drop_mask;

        l = mask_to_strv(set & bounding);
        if (!l)
                errno = ENOMEM;
        return l;
}
