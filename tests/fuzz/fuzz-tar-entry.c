/* Fuzzes layer tar entries (src/image/image-unpack.c). The first byte picks the mode:
 *
 *   even: "<path>\0<hard link target>" (no NUL: no link) through unpack_entry_classify(), checked
 *         against the rules written out here: a path that is absolute or has a ".." component, or a
 *         link target that does, refuses the layer; "./" prefixes go; ".wh..wh..opq" is an opaque
 *         directory and any other ".wh.<name>" a whiteout; the root itself is skipped.
 *   odd:  a whole small archive (tar, maybe compressed) unpacked by image_unpack_stream() in a
 *         child that is root only in a user namespace of its own (no device nodes but whiteouts,
 *         no immutable flags, no trusted xattrs) and chrooted into a scratch directory, with the
 *         layer in <scratch>/l: whatever the archive says, nothing appears beside l, and the
 *         result is one of those image_unpack_child() documents. The child crashing is a crash. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd-util.h"
#include "fuzz.h"
#include "image-unpack.h"

static char scratch[64];

static void cleanup(void) {
        (void) rm_rf(scratch);
}

static bool has_dotdot(const char *p) {
        for (const char *c = p;;) {
                const char *slash = strchr(c, '/');
                size_t n = slash ? (size_t) (slash - c) : strlen(c);
                if (n == 2 && c[0] == '.' && c[1] == '.')
                        return true;
                if (!slash)
                        return false;
                c = slash + 1;
        }
}

static void classify(const char *d, size_t size) {
        const char *nul = memchr(d, '\0', size), *path, *why = NULL;
        char *p = strndup(d, size), *link = nul ? strndup(nul + 1, size - (size_t) (nul + 1 - d)) : NULL;
        int kind;

        if (!p || (nul && !link))
                abort();
        kind = unpack_entry_classify(p, link, &path, &why);
        /* The "./" prefixes go, and only they. */
        const char *q = p;
        while (q[0] == '.' && q[1] == '/')
                q += 2;
        if (path != q)
                abort();
        bool escapes = q[0] == '/' || has_dotdot(q);
        bool root = !q[0] || strcmp(q, ".") == 0;
        bool link_escapes = link && (link[0] == '/' || has_dotdot(link));
        if (root) {
                if (kind != UNPACK_ENTRY_ROOT)
                        abort();
        } else if (escapes || link_escapes) {
                if (kind != -EPERM || !why || !why[0])
                        abort();
        } else {
                const char *base = strrchr(q, '/');
                base = base ? base + 1 : q;
                int want = strcmp(base, ".wh..wh..opq") == 0 ? UNPACK_ENTRY_OPAQUE
                           : strncmp(base, ".wh.", 4) == 0   ? UNPACK_ENTRY_WHITEOUT
                                                             : UNPACK_ENTRY_WRITE;
                if (kind != want)
                        abort();
        }
        free(p);
        free(link);
}

static int write_at(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t n;
        if (fd < 0)
                return -1;
        n = write(fd, text, strlen(text));
        close(fd);
        return n == (ssize_t) strlen(text) ? 0 : -1;
}

/* In the child: root of a user namespace of its own, chrooted into the scratch directory. */
static int confine(void) {
        char map[64];
        uid_t uid = geteuid();
        gid_t gid = getegid();

        if (unshare(CLONE_NEWUSER) < 0)
                return -1;
        snprintf(map, sizeof map, "0 %u 1", (unsigned) uid);
        if (write_at("/proc/self/uid_map", map) < 0 || write_at("/proc/self/setgroups", "deny") < 0)
                return -1;
        snprintf(map, sizeof map, "0 %u 1", (unsigned) gid);
        if (write_at("/proc/self/gid_map", map) < 0)
                return -1;
        if (chroot(scratch) < 0 || chdir("/") < 0 || mkdir("/l", 0755) < 0 || chdir("/l") < 0)
                return -1;
        struct rlimit fsize = { 8 << 20, 8 << 20 };
        (void) setrlimit(RLIMIT_FSIZE, &fsize);
        umask(0);
        return 0;
}

static struct archive *reader(const uint8_t *data, size_t size) {
        struct archive *in = archive_read_new();

        if (!in)
                abort();
        archive_read_support_filter_all(in);
        archive_read_support_format_tar(in);
        archive_read_support_format_gnutar(in);
        if (archive_read_open_memory(in, data, size) != ARCHIVE_OK) {
                archive_read_free(in);
                return NULL;
        }
        return in;
}

/* Here, where libFuzzer sees the coverage: the archive's entries read and checked as unpacking
 * checks them, nothing written. The unpacking itself runs in the child, unseen. */
static void read_entries(const uint8_t *data, size_t size) {
        struct archive *in = reader(data, size);
        struct archive_entry *e;
        const char *path, *why;

        if (!in)
                return;
        for (unsigned n = 0; n < 4096 && archive_read_next_header(in, &e) >= ARCHIVE_WARN; n++)
                (void) unpack_entry_classify(archive_entry_pathname(e), archive_entry_hardlink(e), &path, &why);
        archive_read_free(in);
}

static void unpack_archive(const uint8_t *data, size_t size) {
        UnpackJob job = { .blob = "-", .dir = "/l", .max_layer = 4 << 20, .max_ratio = 100 };
        UnpackStats stats;
        struct archive *in;
        pid_t pid;
        int status, r;

        (void) rm_rf(scratch);
        if (mkdir(scratch, 0755) < 0)
                abort();
        pid = fork();
        if (pid < 0)
                abort();
        if (pid == 0) {
                /* stderr says why a layer is refused: not news here. */
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (null >= 0)
                        (void) dup2(null, STDERR_FILENO);
                if (confine() < 0)
                        _exit(3); /* no user namespaces here: nothing to check */
                in = reader(data, size);
                if (!in)
                        _exit(0);
                r = image_unpack_stream(in, size, &job, &stats);
                archive_read_free(in);
                if (r < 0 && r != -EPERM && r != -EIO && r != -EFBIG && r != -ENOSPC && r != -ENOMEM)
                        _exit(2);
                if (r >= 0 && stats.size > job.max_layer)
                        _exit(2);
                /* Nothing beside the layer directory. */
                DIR *d = opendir("/");
                struct dirent *de;
                while (d && (de = readdir(d)))
                        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 && strcmp(de->d_name, "l") != 0)
                                _exit(2);
                _exit(0);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        abort();
        if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (!scratch[0]) {
                snprintf(scratch, sizeof scratch, "/tmp/rktlet-fuzz-tar.%d", (int) getpid());
                atexit(cleanup);
        }
        if (size < 1 || size > 256 * 1024)
                return 0;
        if (data[0] % 2 == 0)
                classify((const char *) data + 1, size - 1);
        else {
                read_entries(data + 1, size - 1);
                unpack_archive(data + 1, size - 1);
        }
        return 0;
}
