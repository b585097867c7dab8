/* Unpacking one layer blob (tar, gzip or zstd) into a directory, in a child process that is
 * chrooted into that directory, with whiteouts turned into overlayfs form.
 *
 * Nothing is written outside the directory, whatever the tar says: the child's root is the layer
 * directory (the kernel resolves every path, "..", absolute names and symlinks inside it), and
 * libarchive's secure flags refuse "..", absolute paths and writing through symlinks on top. A
 * layer that tries is refused as a whole with a message naming the entry. */
#include "image-unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fd-util.h"

static int bad(const char *entry, const char *why) {
        fprintf(stderr, "layer entry '%s': %s\n", entry, why);
        return -EPERM;
}

/* "a/b/../c", "/etc", "..": a path a layer has no business using. */
static int path_escapes(const char *p) {
        if (p[0] == '/')
                return 1;
        for (const char *c = p; *c;) {
                size_t n = strcspn(c, "/");
                if (n == 2 && c[0] == '.' && c[1] == '.')
                        return 1;
                c += n;
                while (*c == '/')
                        c++;
        }
        return 0;
}

static char *parent_of(const char *p) {
        char *d = strdup(p);
        if (!d)
                return NULL;
        char *r = strdup(dirname(d));
        free(d);
        return r;
}

static int whiteout(const char *path) {
        char *dir = parent_of(path), *base = strrchr(path, '/'), *target = NULL;
        int r = 0;

        base = base ? base + 1 : (char *) path;
        if (!dir)
                return -ENOMEM;
        if (mkdir_p(dir, 0755) < 0) {
                r = bad(path, "cannot create its directory");
                goto out;
        }
        if (strcmp(base, ".wh..wh..opq") == 0) {
                /* An opaque directory: nothing from lower layers shows through. */
                if (lsetxattr(dir, "trusted.overlay.opaque", "y", 1, 0) < 0)
                        r = bad(path, strerror(errno));
                goto out;
        }
        if (asprintf(&target, "%s/%s", dir, base + 4) < 0) {
                r = -ENOMEM;
                goto out;
        }
        /* A deleted file: a 0/0 character device of the same name. */
        (void) unlink(target);
        if (mknod(target, S_IFCHR | 0000, makedev(0, 0)) < 0)
                r = bad(path, strerror(errno));
out:
        free(dir);
        free(target);
        return r;
}

int image_unpack_child(void *userdata) {
        const UnpackJob *job = userdata;
        struct archive *in = NULL, *out = NULL;
        struct archive_entry *e;
        uint64_t bytes = 0, inodes = 0;
        int fd, r = 0, flags;

        fd = open(job->blob, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "open %s: %s\n", job->blob, strerror(errno));
                return -errno;
        }
        if (mkdir(job->dir, 0755) < 0 || chroot(job->dir) < 0 || chdir("/") < 0) {
                fprintf(stderr, "enter %s: %s\n", job->dir, strerror(errno));
                return -errno;
        }
        umask(0);

        in = archive_read_new();
        out = archive_write_disk_new();
        if (!in || !out)
                return -ENOMEM;
        archive_read_support_filter_all(in);
        archive_read_support_format_tar(in);
        archive_read_support_format_gnutar(in);
        flags = ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
                ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;
        archive_write_disk_set_options(out, flags);
        /* Owners by number only: a name lookup would read the image's own /etc/passwd. */
        if (archive_read_open_fd(in, fd, 128 * 1024) != ARCHIVE_OK) {
                fprintf(stderr, "layer: %s\n", archive_error_string(in));
                return -EIO;
        }
        for (;;) {
                const char *path, *link, *base;

                r = archive_read_next_header(in, &e);
                if (r == ARCHIVE_EOF) {
                        r = 0;
                        break;
                }
                if (r < ARCHIVE_WARN) {
                        fprintf(stderr, "layer: %s\n", archive_error_string(in));
                        return -EIO;
                }
                path = archive_entry_pathname(e);
                if (!path)
                        return bad("?", "no name");
                while (path[0] == '.' && path[1] == '/')
                        path += 2;
                if (!path[0] || strcmp(path, ".") == 0)
                        continue; /* the root itself */
                if (path_escapes(path))
                        return bad(path, "its path leaves the layer");
                link = archive_entry_hardlink(e);
                if (link && path_escapes(link))
                        return bad(path, "it is a hard link to outside the layer");
                archive_entry_set_pathname(e, path);

                base = strrchr(path, '/');
                base = base ? base + 1 : path;
                if (strncmp(base, ".wh.", 4) == 0) {
                        r = whiteout(path);
                        if (r < 0)
                                return r;
                        inodes++;
                        continue;
                }
                r = archive_write_header(out, e);
                if (r < ARCHIVE_WARN)
                        return bad(path, archive_error_string(out));
                if (archive_entry_size(e) > 0) {
                        const void *buf;
                        size_t size;
                        la_int64_t offset;
                        while ((r = archive_read_data_block(in, &buf, &size, &offset)) == ARCHIVE_OK)
                                if (archive_write_data_block(out, buf, size, offset) < ARCHIVE_WARN)
                                        return bad(path, archive_error_string(out));
                        if (r != ARCHIVE_EOF)
                                return bad(path, archive_error_string(in));
                        bytes += (uint64_t) archive_entry_size(e);
                }
                if (archive_write_finish_entry(out) < ARCHIVE_WARN)
                        return bad(path, archive_error_string(out));
                inodes++;
        }
        if (archive_write_close(out) < ARCHIVE_WARN) {
                fprintf(stderr, "layer: %s\n", archive_error_string(out));
                return -EIO;
        }
        printf("%llu %llu\n", (unsigned long long) bytes, (unsigned long long) inodes);
        fflush(stdout);
        return 0;
}
