/* Unit tests of the CRI log writer (src/ctr/ctr-log.c): records, partial lines, rotation, and paths
 * resolved beneath the log directory through no symlink. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "ctr-log.h"

static char dir[] = "/tmp/test-ctr-log.XXXXXX";

/* The file's records as "stream tag text" lines, timestamps checked and cut off. */
static char *records(const char *path) {
        FILE *f = fopen(path, "re");
        char *out = NULL, *line = NULL;
        size_t out_len = 0, n = 0;
        FILE *o = open_memstream(&out, &out_len);

        assert_non_null(f);
        while (getline(&line, &n, f) > 0) {
                char *sp = strchr(line, ' ');
                assert_non_null(sp);
                /* 2026-11-23T01:02:03.123456789Z */
                assert_true(sp - line >= 20 && line[4] == '-' && line[10] == 'T' && sp[-1] == 'Z');
                fputs(sp + 1, o);
        }
        free(line);
        fclose(f);
        fclose(o);
        return out;
}

static void test_lines_and_streams(void **state) {
        char path[64], *r;
        CriLog *l;

        snprintf(path, sizeof path, "%s/a.log", dir);
        assert_int_equal(cri_log_open(dir, "a.log", 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "one\ntw", 6), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDERR, "err\n", 4), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "o\n\nthree", 8), 0);
        assert_int_equal(cri_log_flush(l, CRI_STDOUT), 0);
        assert_int_equal(cri_log_flush(l, CRI_STDERR), 0);
        cri_log_free(l);
        r = records(path);
        assert_string_equal(r, "stdout F one\nstderr F err\nstdout F two\nstdout F \nstdout F three\n");
        free(r);
}

static void test_long_lines_are_split(void **state) {
        char path[64], *r, *big = malloc(25);
        CriLog *l;

        snprintf(path, sizeof path, "%s/b.log", dir);
        memset(big, 'x', 25);
        assert_int_equal(cri_log_open(dir, "b.log", 10, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, big, 25), 0); /* 10 + 10 + 5 pending */
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "yy\n", 3), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "0123456789\n", 11), 0); /* exactly the maximum */
        cri_log_free(l);
        r = records(path);
        assert_string_equal(r, "stdout P xxxxxxxxxx\nstdout P xxxxxxxxxx\nstdout F xxxxxyy\nstdout F 0123456789\n");
        free(r);
        free(big);
}

static void test_reopen_after_rotation(void **state) {
        char path[64], rotated[64], *r;
        CriLog *l;

        snprintf(path, sizeof path, "%s/c.log", dir);
        snprintf(rotated, sizeof rotated, "%s/c.log.1", dir);
        assert_int_equal(cri_log_open(dir, "c.log", 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "before\n", 7), 0);
        assert_int_equal(rename(path, rotated), 0);
        assert_int_equal(cri_log_reopen(l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "after\n", 6), 0);
        cri_log_free(l);
        r = records(rotated);
        assert_string_equal(r, "stdout F before\n");
        free(r);
        r = records(path);
        assert_string_equal(r, "stdout F after\n");
        free(r);
}

static void test_timestamp(void **state) {
        char buf[40];

        cri_log_timestamp(1795395639000635973ULL, buf);
        assert_string_equal(buf, "2026-11-23T01:00:39.000635973Z");
        cri_log_timestamp(1795395639500000000ULL, buf);
        assert_string_equal(buf, "2026-11-23T01:00:39.5Z");
        cri_log_timestamp(1795395639000000000ULL, buf);
        assert_string_equal(buf, "2026-11-23T01:00:39Z");
}

/* A container's last line without a newline, written when its stream ends: a full record (F), as
 * containerd writes what is left at EOF. kubelet's parser ends each F record's text with a newline
 * and joins P records to the next, so P would glue this text to nothing that ever comes. */
static void test_last_line_without_newline_is_full(void **state) {
        char path[64], *r;
        CriLog *l;

        snprintf(path, sizeof path, "%s/d.log", dir);
        assert_int_equal(cri_log_open(dir, "d.log", 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "done\nno newline", 15), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDERR, "err", 3), 0);
        assert_int_equal(cri_log_flush(l, CRI_STDOUT), 0); /* the stream's end */
        assert_int_equal(cri_log_flush(l, CRI_STDERR), 0);
        assert_int_equal(cri_log_flush(l, CRI_STDOUT), 0); /* nothing left: no empty record */
        cri_log_free(l);
        r = records(path);
        assert_string_equal(r, "stdout F done\nstdout F no newline\nstderr F err\n");
        free(r);
}

static void test_open_failure(void **state) {
        CriLog *l = NULL;
        assert_int_equal(cri_log_open("/nonexistent-dir", "x.log", 0, &l), -ENOENT);
        assert_null(l);
}

/* A path under dir (a new string). */
static char *at(const char *name) {
        char *p;
        assert_true(asprintf(&p, "%s/%s", dir, name) >= 0);
        return p;
}

static int entries(const char *path) {
        DIR *d = opendir(path);
        struct dirent *e;
        int n = 0;

        assert_non_null(d);
        while ((e = readdir(d)))
                n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
        closedir(d);
        return n;
}

/* kubelet's "<container>/<attempt>.log": the directories on the way are made. */
static void test_nested_path_makes_its_directories(void **state) {
        char *logs = at("nested"), *file = at("nested/c/deeper/0.log"), *r;
        struct stat st;
        CriLog *l;

        assert_int_equal(mkdir(logs, 0755), 0);
        assert_int_equal(cri_log_open(logs, "c/deeper/0.log", 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "nested\n", 7), 0);
        cri_log_free(l);
        r = records(file);
        assert_string_equal(r, "stdout F nested\n");
        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0640);
        /* Again, with the directories there now, and with "." and empty components. */
        assert_int_equal(cri_log_open(logs, "./c//deeper/0.log", 0, &l), 0);
        cri_log_free(l);
        free(r);
        free(logs);
        free(file);
}

/* The log directory itself may be a symlink (an operator's /var/log elsewhere): it is opened as any
 * path is. */
static void test_log_directory_may_be_a_symlink(void **state) {
        char *real = at("real-logs"), *link = at("logs-link"), *file = at("real-logs/x.log");
        CriLog *l;

        assert_int_equal(mkdir(real, 0755), 0);
        assert_int_equal(symlink("real-logs", link), 0);
        assert_int_equal(cri_log_open(link, "x.log", 0, &l), 0);
        cri_log_free(l);
        assert_int_equal(access(file, F_OK), 0);
        free(real);
        free(link);
        free(file);
}

/* A symlink anywhere beneath the log directory is refused, and nothing is made where it points. */
static void test_symlinks_beneath_are_refused(void **state) {
        char *logs = at("pod-logs"), *outside = at("outside"), *dirlink = at("pod-logs/dirlink"),
             *filelink = at("pod-logs/file.log"), *dangling = at("pod-logs/dangling.log"),
             *deep = at("pod-logs/c"), *deeplink = at("pod-logs/c/link");
        CriLog *l = NULL;

        assert_int_equal(mkdir(logs, 0755), 0);
        assert_int_equal(mkdir(outside, 0755), 0);
        assert_int_equal(mkdir(deep, 0755), 0);
        assert_int_equal(symlink(outside, dirlink), 0);
        assert_int_equal(symlink("../outside/target.log", filelink), 0);
        assert_int_equal(symlink("/nonexistent-target.log", dangling), 0);
        assert_int_equal(symlink("../../outside", deeplink), 0);

        assert_int_equal(cri_log_open(logs, "dirlink/x.log", 0, &l), -ELOOP);
        assert_int_equal(cri_log_open(logs, "dirlink/sub/x.log", 0, &l), -ELOOP);
        assert_int_equal(cri_log_open(logs, "file.log", 0, &l), -ELOOP);
        assert_int_equal(cri_log_open(logs, "dangling.log", 0, &l), -ELOOP);
        assert_int_equal(cri_log_open(logs, "c/link/x.log", 0, &l), -ELOOP);
        assert_int_equal(cri_log_open(logs, "../outside/x.log", 0, &l), -EXDEV);
        assert_null(l);
        assert_int_equal(entries(outside), 0);
        assert_int_equal(access("/nonexistent-target.log", F_OK), -1);
        free(logs);
        free(outside);
        free(dirlink);
        free(filelink);
        free(dangling);
        free(deep);
        free(deeplink);
}

/* What is no regular file is refused, without blocking on a FIFO that has no reader. */
static void test_no_regular_file_is_refused(void **state) {
        char *logs = at("odd-logs"), *fifo = at("odd-logs/fifo.log"), *sub = at("odd-logs/sub");
        CriLog *l = NULL;

        assert_int_equal(mkdir(logs, 0755), 0);
        assert_int_equal(mkdir(sub, 0755), 0);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        assert_true(cri_log_open(logs, "fifo.log", 0, &l) < 0);
        assert_int_equal(cri_log_open(logs, "sub", 0, &l), -EISDIR);
        assert_null(l);
        free(logs);
        free(fifo);
        free(sub);
}

/* ReopenContainerLog after the file was replaced by a symlink: refused, the old file written on,
 * nothing written where the symlink points. */
static void test_reopen_through_a_symlink_is_refused(void **state) {
        char *logs = at("reopen-logs"), *outside = at("reopen-outside"), *file = at("reopen-logs/r.log"),
             *rotated = at("reopen-logs/r.log.1"), *r;
        CriLog *l;

        assert_int_equal(mkdir(logs, 0755), 0);
        assert_int_equal(mkdir(outside, 0755), 0);
        assert_int_equal(cri_log_open(logs, "r.log", 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "before\n", 7), 0);
        assert_int_equal(rename(file, rotated), 0);
        assert_int_equal(symlink("../reopen-outside/stolen.log", file), 0);
        assert_int_equal(cri_log_reopen(l), -ELOOP);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "after\n", 6), 0);
        cri_log_free(l);
        r = records(rotated);
        assert_string_equal(r, "stdout F before\nstdout F after\n");
        assert_int_equal(entries(outside), 0);
        free(r);
        free(logs);
        free(outside);
        free(file);
        free(rotated);
}

static int setup(void **state) {
        return mkdtemp(dir) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return type == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state) {
        return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t pipe_len(int fd) {
        int n = -1;
        assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
        return (size_t) n;
}

/* Bytes taken from a pipe by splice(): the pipe is emptied exactly of what was written; a line
 * not ended yet goes out as a P record at once, and the stream's end closes it with an empty F. */
static void test_splice_from_a_pipe(void **state) {
        char path[64], *r;
        int p[2];
        size_t taken;
        CriLog *l;

        snprintf(path, sizeof path, "%s/s.log", dir);
        assert_int_equal(pipe(p), 0);
        assert_int_equal(cri_log_open(dir, "s.log", 10, &l), 0);
        assert_int_equal(write(p[1], "one\ntwo\nthr", 11), 11);
        assert_int_equal(write(p[1], "REST-NOT-PEEKED", 15), 15);
        /* Only the first 11 bytes were peeked: only they leave the pipe. */
        assert_int_equal(cri_log_splice(l, CRI_STDOUT, p[0], "one\ntwo\nthr", 11, &taken), 0);
        assert_int_equal(taken, 11);
        assert_int_equal(pipe_len(p[0]), 15);
        char rest[15];
        assert_int_equal(read(p[0], rest, sizeof rest), 15);
        assert_int_equal(write(p[1], "ee\n0123456789abcdefghijkl\n", 26), 26);
        assert_int_equal(cri_log_splice(l, CRI_STDERR, p[0], "ee\n0123456789abcdefghijkl\n", 26, &taken), 0);
        assert_int_equal(taken, 26);
        assert_int_equal(pipe_len(p[0]), 0);
        /* The daemon letting go (a restart) ends no line: the next daemon goes on with it. */
        assert_int_equal(cri_log_flush(l, CRI_STDOUT), 0);
        assert_int_equal(cri_log_end(l, CRI_STDOUT), 0); /* stdout's "thr" line was left open */
        assert_int_equal(cri_log_end(l, CRI_STDERR), 0); /* stderr's was not */
        cri_log_free(l);
        r = records(path);
        assert_string_equal(r, "stdout F one\n"
                               "stdout F two\n"
                               "stdout P thr\n"
                               "stderr F ee\n"
                               "stderr P 0123456789\n"
                               "stderr P abcdefghij\n"
                               "stderr F kl\n"
                               "stdout F \n");
        free(r);
        close(p[0]);
        close(p[1]);
}

/* Appends tail to the log at path as a killed daemon may have left it, opens the log again, writes
 * line to stream and checks the records then. */
static void append_reopen_and_check(const char *path, const char *tail, CriStream stream, const char *line,
                                    const char *expected) {
        CriLog *l;
        char *r;
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, tail, strlen(tail)), (ssize_t) strlen(tail));
        close(fd);
        assert_int_equal(cri_log_open(dir, strrchr(path, '/') + 1, 0, &l), 0);
        assert_int_equal(cri_log_feed(l, stream, line, strlen(line)), 0);
        cri_log_free(l);
        r = records(path);
        assert_string_equal(r, expected);
        free(r);
}

/* A daemon killed inside a record leaves the file ending in it: a bare header is cut off (its text
 * is still in the pipe), a header with some text is ended with a newline; records go on after. */
static void test_an_interrupted_record_is_mended(void **state) {
        char path[64];

        snprintf(path, sizeof path, "%s/m.log", dir);
        append_reopen_and_check(path, "2026-12-02T10:00:00.1Z stdout F a\n2026-12-02T10:00:00.2Z stdout F ", CRI_STDOUT,
                                "b\n", "stdout F a\nstdout F b\n");
        /* The line's start: a P record, so that kubelet joins it with what follows. */
        append_reopen_and_check(path, "2026-12-02T10:00:00.3Z stdout F half of it", CRI_STDOUT, "c\n",
                                "stdout F a\nstdout F b\nstdout P half of it\nstdout F c\n");
        /* A header cut short is cut off too. */
        append_reopen_and_check(path, "2026-12-02T10:00:00.4Z std", CRI_STDERR, "d\n",
                                "stdout F a\nstdout F b\nstdout P half of it\nstdout F c\nstderr F d\n");
}

/* A record the file system takes only part of (here: the file size limit; a full disk alike)
 * is mended at once: the next record starts on a line of its own. */
static void test_a_failed_write_is_mended(void **state) {
        char path[64], *r;
        struct rlimit old, lim;
        struct stat st;
        int p[2];
        size_t taken;
        CriLog *l;

        snprintf(path, sizeof path, "%s/f.log", dir);
        assert_int_equal(pipe(p), 0);
        assert_int_equal(cri_log_open(dir, "f.log", 0, &l), 0);
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "first\n", 6), 0);
        assert_int_equal(stat(path, &st), 0);
        signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = (rlim_t) st.st_size + 40; /* the header (about 40 bytes) and a little text */
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        assert_int_equal(write(p[1], "a-rather-long-second-line\n", 26), 26);
        assert_true(cri_log_splice(l, CRI_STDOUT, p[0], "a-rather-long-second-line\n", 26, &taken) < 0);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        char rest[26];
        assert_int_equal(read(p[0], rest, 26 - taken), (ssize_t) (26 - taken));
        assert_int_equal(cri_log_feed(l, CRI_STDOUT, "third\n", 6), 0);
        cri_log_free(l);
        r = records(path); /* every line a record of its own */
        assert_true(strncmp(r, "stdout F first\n", 15) == 0);
        assert_non_null(strstr(r, "\nstdout F third\n"));
        free(r);
        close(p[0]);
        close(p[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lines_and_streams),
                cmocka_unit_test(test_long_lines_are_split),
                cmocka_unit_test(test_reopen_after_rotation),
                cmocka_unit_test(test_timestamp),
                cmocka_unit_test(test_last_line_without_newline_is_full),
                cmocka_unit_test(test_open_failure),
                cmocka_unit_test(test_nested_path_makes_its_directories),
                cmocka_unit_test(test_log_directory_may_be_a_symlink),
                cmocka_unit_test(test_symlinks_beneath_are_refused),
                cmocka_unit_test(test_no_regular_file_is_refused),
                cmocka_unit_test(test_reopen_through_a_symlink_is_refused),
                cmocka_unit_test(test_splice_from_a_pipe),
                cmocka_unit_test(test_an_interrupted_record_is_mended),
                cmocka_unit_test(test_a_failed_write_is_mended),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
