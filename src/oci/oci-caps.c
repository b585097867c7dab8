/* Capabilities: their names, the defaults containerd gives, the bounding set, Kubernetes add/drop. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/capability.h>

#include "macro.h"
#include "oci-spec.h"
#include "quote.h"
#include "strv.h"

const char *const oci_default_capabilities[] = {
        "CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FSETID",     "CAP_FOWNER",           "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID",      "CAP_SETUID",     "CAP_SETFCAP",          "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",           "CAP_SYS_CHROOT", "CAP_KILL",             "CAP_AUDIT_WRITE",
        NULL,
};

/* "net_admin", "CAP_NET_ADMIN" → 12; -EINVAL when unknown. libcap's cap_from_name() wants the
 * "cap_" prefix, takes numbers too and stops at the first character that cannot be in a name
 * ("cap_kill,x" is CAP_KILL): only a name that comes back from cap_to_name() counts. */
static int cap_number(const char *name) {
        char n[64], *back;
        cap_value_t c;
        bool same;

        if (strncasecmp(name, "CAP_", 4) == 0)
                name += 4;
        if ((size_t) snprintf(n, sizeof n, "cap_%s", name) >= sizeof n) /* longer than any name */
                return -EINVAL;
        if (cap_from_name(n, &c) < 0 || c < 0 || c >= 64)
                return -EINVAL;
        back = cap_to_name(c);
        if (!back)
                return -ENOMEM;
        same = strcasecmp(back, n) == 0;
        cap_free(back);
        return same ? (int) c : -EINVAL;
}

/* What this kernel knows: cap_max_bits() asks it, so a newer kernel's capabilities count as soon as
 * libcap has their names. */
static unsigned kernel_caps(void) {
        int n = cap_max_bits();

        return n < 0 ? 0 : (unsigned) MIN(n, 64);
}

/* The bits of what this kernel knows and this process's bounding set holds. */
static int bounding_mask(uint64_t *ret) {
        uint64_t mask = 0;
        unsigned n = kernel_caps();

        for (unsigned i = 0; i < n; i++) {
                int r = cap_get_bound((cap_value_t) i);

                if (r < 0)
                        return errno > 0 ? -errno : -EIO;
                if (r > 0)
                        mask |= UINT64_C(1) << i;
        }
        *ret = mask;
        return 0;
}

/* *ret = "CAP_NET_ADMIN" for 12; -ENOENT when libcap has no name for it (it gives the number). */
static int cap_name(unsigned c, char **ret) {
        char *n = cap_to_name((cap_value_t) c), *r = NULL;
        int k;

        if (!n)
                return -ENOMEM;
        if (strncasecmp(n, "cap_", 4) != 0) {
                cap_free(n);
                return -ENOENT;
        }
        k = asprintf(&r, "CAP_%s", n + 4);
        cap_free(n);
        if (k < 0)
                return -ENOMEM;
        for (char *p = r + 4; *p; p++)
                *p = (char) toupper((unsigned char) *p);
        *ret = r;
        return 0;
}

/* The names of mask's bits, in capability order; a capability libcap cannot name is left out. */
static char **mask_to_strv(uint64_t mask) {
        char **l = calloc(1, sizeof(char *));

        for (unsigned i = 0; l && i < 64; i++) {
                _cleanup_free_ char *n = NULL;
                int r;

                if (!(mask & (UINT64_C(1) << i)))
                        continue;
                r = cap_name(i, &n);
                if (r == -ENOENT)
                        continue;
                if (r < 0 || strv_push(&l, n) < 0) {
                        strv_free(l);
                        return NULL;
                }
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

/* The bits of l's names ("ALL" skipped); -EINVAL with the message for an unknown one, -ENOMEM. */
static int names_to_mask(const char *const *l, uint64_t *ret, Error *error) {
        uint64_t mask = 0;

        for (const char *const *p = l; p && *p; p++) {
                int c;

                if (strcasecmp(*p, "ALL") == 0)
                        continue;
                c = cap_number(*p);
                if (c == -EINVAL)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "unknown capability %s", QUOTE(*p));
                if (c < 0)
                        return error_errno(error, c, "capability %s", QUOTE(*p));
                mask |= UINT64_C(1) << c;
        }
        *ret = mask;
        return 0;
}

char **oci_capabilities_resolve(const char *const *base, char **add, char **drop, Error *error) {
        uint64_t bounding, set, add_mask, drop_mask;
        char **l;
        int r;

        if ((r = names_to_mask(base, &set, error)) < 0 ||
            (r = names_to_mask((const char *const *) add, &add_mask, error)) < 0 ||
            (r = names_to_mask((const char *const *) drop, &drop_mask, error)) < 0) {
                errno = -r;
                return NULL;
        }
        r = bounding_mask(&bounding);
        if (r < 0) {
                (void) error_errno(error, r, "cannot read the capability bounding set");
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
