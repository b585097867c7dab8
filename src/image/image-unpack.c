/* Unpacking one layer blob (tar, gzip or zstd) into a directory, in a child process that is
 * chrooted into that directory, with whiteouts turned into overlayfs form.
 *
 * Nothing is written outside the directory, whatever the tar says: the child's root is the layer
 * directory (the kernel resolves every path, "..", absolute names and symlinks inside it), and
 * libarchive's secure flags refuse "..", absolute paths and writing through symlinks on top. A
 * layer that tries is refused as a whole with a message naming the entry.
 *
 * Nor more than the limits allow: the child counts the uncompressed stream as it unpacks and checks
 * the file system's free space every few megabytes, so a layer bomb stops early, with the limit it
 * hit. What it wrote by then is the caller's to delete. */
#include "image-unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fd-util.h"
#include "macro.h"
#include "quote.h"

static int bad(const char *entry, const char *why) {
        /* A tar's names are the registry's to choose: a bounded line, newlines and all escaped. */
        fprintf(stderr, "layer entry %s: %s\n", QUOTE(entry), why);
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

static int whiteout(const char *path, bool opaque) {
        char *dir = parent_of(path), *base = strrchr(path, '/'), *target = NULL;
        int r = 0;

        base = base ? base + 1 : (char *) path;
        if (!dir)
                return -ENOMEM;
        if (mkdir_p(dir, 0755) < 0) {
                r = bad(path, "cannot create its directory");
                goto out;
        }
        if (opaque) {
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

int unpack_entry_classify(const char *path, const char *hardlink, const char **ret_path, const char **ret_why) {
        const char *base;

        assert(ret_path);
        assert(ret_why);
        *ret_path = path;
        if (!path) {
                *ret_why = "no name";
                return -EPERM;
        }
        while (path[0] == '.' && path[1] == '/')
                path += 2;
        *ret_path = path;
        if (!path[0] || strcmp(path, ".") == 0)
                return UNPACK_ENTRY_ROOT;
        if (path_escapes(path)) {
                *ret_why = "its path leaves the layer";
                return -EPERM;
        }
        if (hardlink && path_escapes(hardlink)) {
                *ret_why = "it is a hard link to outside the layer";
                return -EPERM;
        }
        base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (strcmp(base, ".wh..wh..opq") == 0)
                return UNPACK_ENTRY_OPAQUE;
        if (strncmp(base, ".wh.", 4) == 0)
                return UNPACK_ENTRY_WHITEOUT;
        return UNPACK_ENTRY_WRITE;
}

void format_size(uint64_t v, char buf[static 32]) {
        static const char units[] = "KMGT";
        int u = -1;

        while (u < 3 && v > 0 && v % 1024 == 0) {
                v /= 1024;
                u++;
        }
        if (u < 0)
                snprintf(buf, 32, "%llu", (unsigned long long) v);
        else
                snprintf(buf, 32, "%llu%c", (unsigned long long) v, units[u]);
}

void format_reserve(uint64_t bytes, uint32_t percent, char buf[static 32]) {
        if (bytes > 0)
                format_size(bytes, buf);
        else
                snprintf(buf, 32, "%u%%", percent);
}

uint64_t reserve_bytes(const struct statvfs *st, uint64_t bytes, uint32_t percent) {
        return bytes > 0 ? bytes : (uint64_t) st->f_blocks * st->f_frsize / 100 * percent;
}

#define STATVFS_EVERY (4ULL * 1024 * 1024)

typedef struct Unpack {
        const UnpackJob *job;
        struct archive *in, *out;
        uint64_t compressed;
        uint64_t ratio_max; /* 0: none */
        uint64_t next_statvfs;
        UnpackStats stats;
} Unpack;

/* Past a limit: EFBIG (or ENOSPC for free space), with the setting that says so. */
static int check_limits(Unpack *u) {
        const UnpackJob *job = u->job;
        la_int64_t pos = archive_filter_bytes(u->in, 0);
        uint64_t size = pos > 0 ? (uint64_t) pos : 0;
        char a[32];

        if (job->max_layer > 0 && size > job->max_layer) {
                format_size(job->max_layer, a);
                fprintf(stderr, "uncompressed, it exceeds MaxLayerSize=%s\n", a);
                return -EFBIG;
        }
        if (job->max_image > 0 && size > job->max_image - MIN(job->image_below, job->max_image)) {
                format_size(job->max_image, a);
                fprintf(stderr, "with the %llu bytes of the layers below it, the image exceeds MaxImageSize=%s "
                        "uncompressed\n", (unsigned long long) job->image_below, a);
                return -EFBIG;
        }
        if (u->ratio_max > 0 && size > u->ratio_max) {
                fprintf(stderr, "it expands to more than %u times its %llu compressed bytes (MaxExpansionRatio=%u)\n",
                        job->max_ratio, (unsigned long long) u->compressed, job->max_ratio);
                return -EFBIG;
        }
        if ((job->min_free_bytes > 0 || job->min_free_percent > 0) && size >= u->next_statvfs) {
                struct statvfs st;
                u->next_statvfs = size + STATVFS_EVERY;
                /* Our root is the layer directory: "/" is the store's file system. */
                if (statvfs("/", &st) == 0) {
                        uint64_t avail = (uint64_t) st.f_bavail * st.f_frsize;
                        if (avail < reserve_bytes(&st, job->min_free_bytes, job->min_free_percent)) {
                                format_reserve(job->min_free_bytes, job->min_free_percent, a);
                                fprintf(stderr, "unpacking it leaves less than MinFreeSpace=%s free on the image store "
                                        "(%llu bytes free)\n", a, (unsigned long long) avail);
                                return -ENOSPC;
                        }
                }
        }
        return 0;
}

/* A write that failed: a full file system is said as such, anything else refuses the entry. */
static int write_failed(const char *path, struct archive *out) {
        int e = archive_errno(out);

        if (e == ENOSPC || e == EDQUOT) {
                fprintf(stderr, "layer entry %s: the image store's file system is full: %s\n", QUOTE(path),
                        strerror(e));
                return -ENOSPC;
        }
        return bad(path, archive_error_string(out));
}

/* One file's data, counted against the limits as it is written. */
static int copy_data(Unpack *u, struct archive_entry *e, const char *path) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        int r;

        while ((r = archive_read_data_block(u->in, &buf, &size, &offset)) == ARCHIVE_OK) {
                if (archive_write_data_block(u->out, buf, size, offset) < ARCHIVE_WARN)
                        return write_failed(path, u->out);
                r = check_limits(u);
                if (r < 0)
                        return r;
        }
        if (r != ARCHIVE_EOF)
                return bad(path, archive_error_string(u->in));
        u->stats.bytes += (uint64_t) archive_entry_size(e);
        return 0;
}

static int unpack_entry(Unpack *u, struct archive_entry *e) {
        const char *path, *why;
        int kind, r;

        kind = unpack_entry_classify(archive_entry_pathname(e), archive_entry_hardlink(e), &path, &why);
        if (kind < 0)
                return bad(path ?: "?", why);
        if (kind == UNPACK_ENTRY_ROOT)
                return 0;
        archive_entry_set_pathname(e, path);
        if (kind == UNPACK_ENTRY_WHITEOUT || kind == UNPACK_ENTRY_OPAQUE) {
                r = whiteout(path, kind == UNPACK_ENTRY_OPAQUE);
                if (r < 0)
                        return r;
                u->stats.inodes++;
                return 0;
        }
        r = archive_write_header(u->out, e);
        if (r < ARCHIVE_WARN)
                return write_failed(path, u->out);
        if (archive_entry_size(e) > 0) {
                r = copy_data(u, e, path);
                if (r < 0)
                        return r;
        }
        if (archive_write_finish_entry(u->out) < ARCHIVE_WARN)
                return write_failed(path, u->out);
        u->stats.inodes++;
        return 0;
}

int image_unpack_stream(struct archive *in, uint64_t compressed, const UnpackJob *job, UnpackStats *ret) {
        Unpack u = { .job = job, .in = in, .compressed = compressed };
        struct archive_entry *e;
        int r, flags;

        assert(in);
        assert(job);
        assert(ret);
        if (job->max_ratio > 0 && u.compressed <= UINT64_MAX / job->max_ratio)
                u.ratio_max = MAX(u.compressed * job->max_ratio, UNPACK_RATIO_FLOOR);
        u.out = archive_write_disk_new();
        if (!u.out)
                return -ENOMEM;
        flags = ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
                ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;
        archive_write_disk_set_options(u.out, flags);
        /* Owners by number only: a name lookup would read the image's own /etc/passwd. */
        r = check_limits(&u); /* the free space, before anything is written */
        while (r >= 0) {
                r = archive_read_next_header(u.in, &e);
                if (r == ARCHIVE_EOF) {
                        r = 0;
                        break;
                }
                if (r < ARCHIVE_WARN) {
                        fprintf(stderr, "layer: %s\n", archive_error_string(u.in));
                        r = -EIO;
                        break;
                }
                r = check_limits(&u);
                if (r >= 0)
                        r = unpack_entry(&u, e);
        }
        if (r >= 0 && archive_write_close(u.out) < ARCHIVE_WARN) {
                fprintf(stderr, "layer: %s\n", archive_error_string(u.out));
                r = archive_errno(u.out) == ENOSPC || archive_errno(u.out) == EDQUOT ? -ENOSPC : -EIO;
        }
        if (r < 0)
                /* As the child's exit leaves it: no fix-ups of what was written before the refusal. */
                (void) archive_write_fail(u.out);
        archive_write_free(u.out);
        if (r < 0)
                return r;
        la_int64_t size = archive_filter_bytes(u.in, 0);
        u.stats.size = size > 0 ? (uint64_t) size : 0;
        *ret = u.stats;
        return 0;
}

static int unpack(const UnpackJob *job) {
        UnpackStats stats;
        struct archive *in;
        struct stat st;
        int fd, r;

        fd = open(job->blob, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "open %s: %s\n", job->blob, strerror(errno));
                return -EIO;
        }
        if (mkdir(job->dir, 0755) < 0 || chroot(job->dir) < 0 || chdir("/") < 0) {
                fprintf(stderr, "enter %s: %s\n", job->dir, strerror(errno));
                return errno == ENOSPC || errno == EDQUOT ? -ENOSPC : -EIO;
        }
        umask(0);

        in = archive_read_new();
        if (!in)
                return -ENOMEM;
        archive_read_support_filter_all(in);
        archive_read_support_format_tar(in);
        archive_read_support_format_gnutar(in);
        if (archive_read_open_fd(in, fd, 128 * 1024) != ARCHIVE_OK) {
                fprintf(stderr, "layer: %s\n", archive_error_string(in));
                return -EIO;
        }
        r = image_unpack_stream(in, (uint64_t) st.st_size, job, &stats);
        if (r < 0)
                return r;
        printf("%llu %llu %llu\n", (unsigned long long) stats.bytes, (unsigned long long) stats.inodes,
               (unsigned long long) stats.size);
        fflush(stdout);
        return 0;
}

int image_unpack_child(void *userdata) {
        int r = unpack(userdata);

        if (r < 0) {
                printf("error %d\n", -r);
                fflush(stdout);
        }
        return r;
}
