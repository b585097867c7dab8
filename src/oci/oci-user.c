/* Users and groups of an image: <rootfs>/etc/passwd and /etc/group, opened with openat2()
 * RESOLVE_IN_ROOT so that the image's symlinks cannot point the look-up outside the rootfs. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"
#include "oci-spec.h"
#include "quote.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

#define MAX_LINE 4096

/* path (relative, "etc/passwd") inside rootfs as a stream; -ENOENT when it is not there. */
static int open_in_root(const char *rootfs, const char *path, FILE **ret) {
        struct open_how how = {
                .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        _cleanup_close_ int dfd = -1, fd = -1;
        struct stat st;
        FILE *f;

        dfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        fd = (int) syscall(SYS_openat2, dfd, path, &how, sizeof how);
        if (fd < 0)
                return negative_errno(); /* -ENOSYS on kernels before 5.6: no unsafe fallback */
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EBADF; /* a FIFO or device planted by the image */
        f = fdopen(fd, "re");
        if (!f)
                return negative_errno();
        TAKE_FD(fd);
        *ret = f;
        return 0;
}

/* A decimal id: digits only, below (uint32_t) -1. */
static bool parse_id(const char *s, uint32_t *ret) {
        unsigned long long v = 0;

        if (!s || !*s || strlen(s) > 10)
                return false;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                v = v * 10 + (unsigned) (*p - '0');
        }
        if (v >= UINT32_MAX)
                return false;
        *ret = (uint32_t) v;
        return true;
}

/* The next "a:b:c:d…" line split in at most n fields (the rest empty); false at the end. */
static bool next_entry(FILE *f, char **line, size_t *size, char **fields, size_t n) {
        ssize_t l;

        while ((l = getline(line, size, f)) >= 0) {
                char *p = *line;
                size_t k = 0;

                if (l > MAX_LINE)
                        continue;
                p[strcspn(p, "\n")] = '\0';
                if (*p == '\0' || *p == '#' || *p == '+' || *p == '-')
                        continue;
                for (; k < n; k++)
                        fields[k] = p ? strsep(&p, ":") : (char *) "";
                return true;
        }
        return false;
}

typedef struct Passwd {
        char *name;
        uid_t uid;
        gid_t gid;
} Passwd;

/* by name, or by uid when name is NULL; 1 found, 0 not. */
static int passwd_find(FILE *f, const char *name, uid_t uid, Passwd *ret) {
        char *line = NULL, *fields[4];
        size_t size = 0;
        int r = 0;

        while (next_entry(f, &line, &size, fields, ELEMENTSOF(fields))) {
                uint32_t u, g;

                if (!parse_id(fields[2], &u) || !parse_id(fields[3], &g))
                        continue;
                if (name ? strcmp(fields[0], name) != 0 : u != uid)
                        continue;
                ret->name = strdup(fields[0]);
                ret->uid = u;
                ret->gid = g;
                r = ret->name ? 1 : -ENOMEM;
                break;
        }
        free(line);
        return r;
}

/* A group's gid by name; 1 found, 0 not. */
static int group_find(FILE *f, const char *name, gid_t *ret) {
        char *line = NULL, *fields[4];
        size_t size = 0;
        int r = 0;

        while (next_entry(f, &line, &size, fields, ELEMENTSOF(fields))) {
                uint32_t g;

                if (strcmp(fields[0], name) == 0 && parse_id(fields[2], &g)) {
                        *ret = g;
                        r = 1;
                        break;
                }
        }
        free(line);
        return r;
}

/* The gids of the groups listing user as a member, except primary. */
static int group_memberships(FILE *f, const char *user, gid_t primary, gid_t **ret, size_t *ret_n) {
        char *line = NULL, *fields[4];
        size_t size = 0, n = 0;
        gid_t *gids = NULL;

        while (next_entry(f, &line, &size, fields, ELEMENTSOF(fields))) {
                char *members = fields[3], *m;
                bool member = false, dup = false;
                uint32_t g;

                if (!parse_id(fields[2], &g) || g == primary)
                        continue;
                while ((m = strsep(&members, ",")))
                        if (strcmp(m, user) == 0) {
                                member = true;
                                break;
                        }
                for (size_t i = 0; member && i < n; i++)
                        dup = dup || gids[i] == g;
                if (member && !dup) {
                        gid_t *a = realloc(gids, (n + 1) * sizeof(gid_t));
                        if (!a) {
                                free(gids);
                                free(line);
                                return -ENOMEM;
                        }
                        gids = a;
                        gids[n++] = g;
                }
        }
        free(line);
        *ret = gids;
        *ret_n = n;
        return 0;
}

static int lookup_group_in(const char *rootfs, const char *group, gid_t *ret_gid, Error *error) {
        _cleanup_fclose_ FILE *f = NULL;
        uint32_t g;
        int r;

        if (parse_id(group, &g)) {
                *ret_gid = g;
                return 0;
        }
        r = open_in_root(rootfs, "etc/group", &f);
        if (r == -ENOENT)
                return error_set(error, ERROR_NOT_FOUND, ENOENT, "group %s: the image has no /etc/group", QUOTE(group));
        if (r < 0)
                return error_errno(error, r, "group %s: cannot open the image's /etc/group", QUOTE(group));
        r = group_find(f, group, ret_gid);
        if (r == 0)
                return error_set(error, ERROR_NOT_FOUND, ENOENT, "group %s not found in the image's /etc/group",
                                 QUOTE(group));
        return r < 0 ? r : 0;
}

int oci_lookup_group(const char *rootfs, const char *group, gid_t *ret_gid, Error *error) {
        assert(rootfs);
        assert(ret_gid);
        if (!group || !*group)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "empty group name");
        return lookup_group_in(rootfs, group, ret_gid, error);
}

int oci_lookup_user(const char *rootfs, const char *user, uid_t *ret_uid, gid_t *ret_gid, gid_t **ret_gids,
                    size_t *ret_n_gids, Error *error) {
        _cleanup_free_ char *spec = NULL;
        _cleanup_fclose_ FILE *passwd = NULL, *group = NULL;
        Passwd pw = {};
        gid_t gid, *gids = NULL;
        size_t n_gids = 0;
        const char *u, *g;
        char *colon;
        uint32_t id;
        bool numeric;
        int r;

        assert(rootfs);
        assert(ret_uid);
        assert(ret_gid);

        /* Docker's User syntax: user, uid, user:group, uid:gid; empty means root. */
        spec = strdup(user ?: "");
        if (!spec)
                return -ENOMEM;
        colon = strchr(spec, ':');
        if (colon)
                *colon = '\0';
        u = spec[0] ? spec : "0";
        g = colon && colon[1] ? colon + 1 : NULL;
        numeric = parse_id(u, &id);

        r = open_in_root(rootfs, "etc/passwd", &passwd);
        if (r < 0 && (r != -ENOENT || !numeric)) {
                if (r == -ENOENT)
                        return error_set(error, ERROR_NOT_FOUND, ENOENT, "user %s: the image has no /etc/passwd",
                                         QUOTE(u));
                return error_errno(error, r, "user %s: cannot open the image's /etc/passwd", QUOTE(u));
        }
        r = passwd ? passwd_find(passwd, numeric ? NULL : u, id, &pw) : 0;
        if (r < 0)
                return error_errno(error, r, "user %s: cannot read the image's /etc/passwd", QUOTE(u));
        if (r == 0) {
                if (!numeric)
                        return error_set(error, ERROR_NOT_FOUND, ENOENT, "user %s not found in the image's /etc/passwd",
                                         QUOTE(u));
                pw.uid = id;
                pw.gid = 0;
        }

        gid = pw.gid;
        if (g) {
                r = lookup_group_in(rootfs, g, &gid, error);
                if (r < 0)
                        goto finish;
        }

        if (pw.name) {
                r = open_in_root(rootfs, "etc/group", &group);
                if (r >= 0)
                        r = group_memberships(group, pw.name, gid, &gids, &n_gids);
                else if (r == -ENOENT)
                        r = 0;
                else
                        (void) error_errno(error, r, "user %s: cannot open the image's /etc/group", QUOTE(u));
                if (r < 0)
                        goto finish;
        }

        *ret_uid = pw.uid;
        *ret_gid = gid;
        if (ret_gids)
                *ret_gids = TAKE_PTR(gids);
        if (ret_n_gids)
                *ret_n_gids = n_gids;
        r = 0;
finish:
        free(gids);
        free(pw.name);
        return r;
}
