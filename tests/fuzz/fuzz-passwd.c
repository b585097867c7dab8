/* Fuzzes the look-up of a container's user in its image: Docker's User syntax ("name", "uid",
 * "name:group", "uid:gid") against the image's /etc/passwd and /etc/group.
 *
 * The input is "<user>\n<passwd>\n--\n<group>"; without its section a file is missing. A passwd or
 * group that reads "->TARGET" becomes a symlink to TARGET instead, and is then the only thing in the
 * rootfs: whatever it points at, no name may be found through it (the host's /etc is not the
 * image's). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fd-util.h"
#include "fileio.h"
#include "fuzz.h"
#include "json-util.h"
#include "oci-spec.h"

static char root[64];

static void cleanup(void) {
        (void) rm_rf(root);
}

/* etc/<name> as a file with these bytes, or a symlink; whether it is a symlink. */
static bool plant(const char *name, const char *data, size_t len) {
        char path[128];

        snprintf(path, sizeof path, "%s/etc/%s", root, name);
        if (len > 2 && data[0] == '-' && data[1] == '>') {
                char *target = strndup(data + 2, len - 2);
                if (!target || symlink(target, path) < 0) {
                        free(target);
                        return false;
                }
                free(target);
                return true;
        }
        if (write_file_replace(path, data, len, 0644) < 0)
                abort();
        return false;
}

static bool is_decimal(const char *s) {
        return s[0] && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 9;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *d = (const char *) data, *end = d + size, *nl = memchr(d, '\n', size);
        char etc[128], *user, *group_part;
        bool linked = false;
        uid_t uid = 0;
        gid_t gid = 0, *gids = NULL, g2;
        size_t n_gids = 0;
        Error message = ERROR_INIT;
        int r;

        if (!root[0]) {
                snprintf(root, sizeof root, "/tmp/rktlet-fuzz-passwd.%d", (int) getpid());
                atexit(cleanup);
        }
        if (memchr(d, '\0', nl ? (size_t) (nl - d) : size))
                return 0; /* the CRI's strings hold no NUL */
        (void) rm_rf(root);
        snprintf(etc, sizeof etc, "%s/etc", root);
        if (mkdir_p(etc, 0755) < 0)
                abort();
        user = strndup(d, nl ? (size_t) (nl - d) : size);
        if (!user)
                abort();
        if (nl) {
                const char *p = nl + 1, *sep = memmem(p, (size_t) (end - p), "\n--\n", 4);
                linked = plant("passwd", p, sep ? (size_t) (sep - p) : (size_t) (end - p));
                if (sep && !linked && plant("group", sep + 4, (size_t) (end - sep - 4))) {
                        linked = true;
                        snprintf(etc, sizeof etc, "%s/etc/passwd", root);
                        (void) unlink(etc);
                }
        }

        /* The string as a group first (a Docker User's group part is looked up the same way). */
        r = oci_lookup_group(root, user, &g2, &message);
        if (r < 0 && !error_is_set(&message) && r != -ENOMEM)
                abort();
        if (r >= 0 && linked && !is_decimal(user))
                abort();
        error_done(&message);

        r = oci_lookup_user(root, user, &uid, &gid, &gids, &n_gids, &message);
        if (r < 0) {
                if (r != -ENOMEM && !error_is_set(&message))
                        abort(); /* a refusal says why */
        } else {
                char *colon = strchr(user, ':');
                if (colon)
                        *colon = '\0';
                /* A numeric uid is that uid, whatever passwd says. */
                if (is_decimal(user) && uid != (uid_t) strtoul(user, NULL, 10))
                        abort();
                if (!user[0] && uid != 0)
                        abort();
                /* Nothing is found through a symlink when the rootfs holds nothing else. */
                if (linked && !is_decimal(user[0] ? user : "0"))
                        abort();
                for (size_t i = 0; i < n_gids; i++) {
                        if (gids[i] == gid)
                                abort(); /* the primary group is not a supplementary one */
                        for (size_t k = 0; k < i; k++)
                                if (gids[k] == gids[i])
                                        abort();
                }
                group_part = colon ? colon + 1 : NULL;
                if (group_part && is_decimal(group_part) && gid != (gid_t) strtoul(group_part, NULL, 10))
                        abort();
                if (linked && group_part && group_part[0] && !is_decimal(group_part))
                        abort();
        }
        free(gids);
        error_done(&message);
        free(user);
        return 0;
}
