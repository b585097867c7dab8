/* rm_rf() (basic/fd-util.c): it removes a tree, but never what is mounted inside it, a bind mount
 * of the tree's own file system included (st_dev cannot tell that one: a hostPath volume on the
 * state directory's file system). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fd-util.h"

static char *path_of(const char *dir, const char *rel) {
        char *p;
        assert_true(asprintf(&p, "%s/%s", dir, rel) >= 0);
        return p;
}

static void touch(const char *dir, const char *rel) {
        char *p = path_of(dir, rel);
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        free(p);
}

static bool exists(const char *dir, const char *rel) {
        char *p = path_of(dir, rel);
        bool r = access(p, F_OK) == 0;
        free(p);
        return r;
}

static void test_removes_a_tree_and_symlinks_not_their_targets(void **state) {
        char dir[] = "/tmp/test-fd-util.XXXXXX";
        char *tree, *link, *deep;

        assert_non_null(mkdtemp(dir));
        tree = path_of(dir, "tree");
        assert_int_equal(mkdir_p(tree, 0755), 0);
        touch(dir, "outside");
        deep = path_of(dir, "tree/a/b/c");
        assert_int_equal(mkdir_p(deep, 0755), 0);
        free(deep);
        touch(dir, "tree/a/b/c/f");
        touch(dir, "tree/g");
        link = path_of(dir, "tree/a/l");
        assert_int_equal(symlink(dir, link), 0);
        assert_int_equal(rm_rf(tree), 0);
        assert_false(exists(dir, "tree"));
        assert_true(exists(dir, "outside"));
        assert_int_equal(rm_rf(tree), 0); /* missing: nothing to do */
        assert_int_equal(rm_rf(dir), 0);
        assert_false(exists(dir, ""));
        free(tree);
        free(link);
}

/* In the child, in a mount namespace of its own: 0, or the line of the check that failed. */
static int bind_mounts_survive(const char *dir) {
        char *tree = path_of(dir, "tree"), *vol = path_of(dir, "vol"), *mnt = path_of(dir, "tree/run/volumes/0"),
             *file = path_of(dir, "tree/run/file");
#define CHECK(x) do { if (!(x)) return __LINE__; } while (0)
        CHECK(mkdir_p(mnt, 0755) == 0 && mkdir_p(vol, 0755) == 0);
        touch(dir, "vol/secret");
        touch(dir, "tree/run/config.json");
        touch(dir, "tree/run/file");
        touch(dir, "other");
        /* The same file system: a directory and a file bound into the tree. */
        CHECK(mount(vol, mnt, NULL, MS_BIND, NULL) == 0);
        CHECK(mount(path_of(dir, "other"), file, NULL, MS_BIND, NULL) == 0);
        CHECK(rm_rf(tree) == -EBUSY);
        CHECK(exists(dir, "vol/secret") && exists(dir, "other"));
        CHECK(exists(dir, "tree/run/volumes/0/secret"));
        CHECK(!exists(dir, "tree/run/config.json")); /* the rest is gone */
        CHECK(umount2(mnt, 0) == 0 && umount2(file, 0) == 0);
        CHECK(rm_rf(tree) == 0 && !exists(dir, "tree"));
        CHECK(exists(dir, "vol/secret"));
        return 0;
#undef CHECK
}

static void test_bind_mounts_of_the_same_file_system_are_not_entered(void **state) {
        char dir[] = "/tmp/test-fd-util.XXXXXX";
        int status;
        pid_t pid;

        assert_non_null(mkdtemp(dir));
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(255);
                int line = bind_mounts_survive(dir);
                if (line != 0)
                        fprintf(stderr, "test-fd-util.c:%d: check failed\n", line);
                _exit(line != 0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 255) {
                (void) rm_rf(dir);
                printf("skipped: no mount namespace of our own (needs root): %s\n", strerror(EPERM));
                skip();
        }
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(rm_rf(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_removes_a_tree_and_symlinks_not_their_targets),
                cmocka_unit_test(test_bind_mounts_of_the_same_file_system_are_not_entered),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
