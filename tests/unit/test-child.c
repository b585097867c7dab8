/* Unit tests of the child-process module: real processes, a real libev loop, pidfds. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "child.h"
#include "test-loop.h"
#include "time-util.h"

typedef struct Outcome {
        bool done;
        pid_t pid;
        int exit_code, signal;
        bool timed_out, out_truncated;
        char out[4096], err[4096];
        size_t out_len;
} Outcome;

static void on_done(Child *c, const ChildResult *r, void *userdata) {
        Outcome *o = userdata;
        o->done = true;
        o->pid = r->pid;
        o->exit_code = r->exit_code;
        o->signal = r->signal;
        o->timed_out = r->timed_out;
        o->out_truncated = r->out_truncated;
        o->out_len = r->out_len;
        snprintf(o->out, sizeof o->out, "%s", r->out);
        snprintf(o->err, sizeof o->err, "%s", r->err);
}

static bool outcome_in(void *userdata) {
        Outcome *o = userdata;
        return o ? o->done : child_count() == 0;
}

/* Runs the loop until the outcome is in (or no children are left), at most 10 s. */
static void run_until(struct ev_loop *loop, Outcome *o) {
        loop_run_until(loop, outcome_in, o, 10.);
}

static void assert_reaped(pid_t pid) {
        /* Neither running nor a zombie: the pid is no child of ours any more. */
        assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
}

/* pid exists and has not exited: neither a zombie nor gone (kill(pid, 0) cannot tell a zombie). */
static bool running(pid_t pid) {
        char path[64], buf[512], *paren;
        FILE *f;
        size_t n;

        snprintf(path, sizeof path, "/proc/%i/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        paren = strrchr(buf, ')'); /* "pid (comm) S ..." */
        return paren && paren[1] == ' ' && !strchr("ZXx", paren[2]);
}

static void test_exit_code_and_output(void **state) {
        struct ev_loop *loop = *state;
        char *argv[] = { "/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL };
        ChildSpec spec = { .argv = argv };
        Outcome o = {};

        assert_int_equal(child_spawn(loop, &spec, on_done, &o, NULL), 0);
        run_until(loop, &o);
        assert_true(o.done);
        assert_int_equal(o.exit_code, 3);
        assert_int_equal(o.signal, 0);
        assert_false(o.timed_out);
        assert_string_equal(o.out, "out\n");
        assert_string_equal(o.err, "err\n");
        assert_reaped(o.pid);
        assert_int_equal(child_count(), 0);
}

static void test_stdin(void **state) {
        struct ev_loop *loop = *state;
        char *argv[] = { "cat", NULL };
        static char big[200000];
        memset(big, 'x', sizeof big); /* more than a pipe holds: written as the child reads */
        ChildSpec spec = { .argv = argv, .stdin_data = big, .stdin_len = sizeof big };
        Outcome o = {};

        assert_int_equal(child_spawn(loop, &spec, on_done, &o, NULL), 0);
        run_until(loop, &o);
        assert_true(o.done);
        assert_int_equal(o.exit_code, 0);
        assert_int_equal(o.out_len, sizeof big);
        assert_reaped(o.pid);
}

static void test_timeout_kills(void **state) {
        struct ev_loop *loop = *state;
        char *argv[] = { "sleep", "30", NULL };
        ChildSpec spec = { .argv = argv, .timeout_usec = 100 * USEC_PER_MSEC };
        Outcome o = {};

        /* The child would sleep for 30 s; run_until() gives up after 10 s (100 times the timeout):
         * an outcome at all, killed and marked timed out, is the timeout's doing. */
        assert_int_equal(child_spawn(loop, &spec, on_done, &o, NULL), 0);
        run_until(loop, &o);
        assert_true(o.done);
        assert_true(o.timed_out);
        assert_int_equal(o.signal, SIGKILL);
        assert_int_equal(o.exit_code, -1);
        assert_reaped(o.pid);
}

static void test_exec_failure(void **state) {
        struct ev_loop *loop = *state;
        char *argv[] = { "/nonexistent/binary", NULL };
        ChildSpec spec = { .argv = argv };
        Outcome o = {};

        assert_int_equal(child_spawn(loop, &spec, on_done, &o, NULL), 0);
        run_until(loop, &o);
        assert_true(o.done);
        assert_int_equal(o.exit_code, 127);
        assert_non_null(strstr(o.err, "/nonexistent/binary"));
        assert_reaped(o.pid);
}

static int failing_setup(void *userdata) {
        return -EPERM;
}

static void test_setup_failure(void **state) {
        struct ev_loop *loop = *state;
        char *argv[] = { "true", NULL };
        ChildSpec spec = { .argv = argv, .setup = failing_setup };
        Outcome o = {};

        assert_int_equal(child_spawn(loop, &spec, on_done, &o, NULL), 0);
        run_until(loop, &o);
        assert_int_equal(o.exit_code, 127);
        assert_non_null(strstr(o.err, "child setup"));
}

static void test_grandchild_keeps_pipe(void **state) {
        struct ev_loop *loop = *state;
        /* The background sleep inherits stdout and would outlive the test; the child's exit must be
         * reported while the grandchild still holds the pipe open (run_until() gives up long before
         * the sleep would end). */
        char *argv[] = { "/bin/sh", "-c", "sleep 30 & echo $!", NULL };
        ChildSpec spec = { .argv = argv };
        Outcome o = {};
        char *end;
        long grandchild;
        bool alive;

        assert_int_equal(child_spawn(loop, &spec, on_done, &o, NULL), 0);
        run_until(loop, &o);
        assert_true(o.done);
        assert_int_equal(o.exit_code, 0);
        grandchild = strtol(o.out, &end, 10);
        assert_true(grandchild > 1 && strcmp(end, "\n") == 0);
        alive = running((pid_t) grandchild);
        (void) kill((pid_t) grandchild, SIGKILL);
        assert_true(alive); /* reported before the pipe closed */
        assert_reaped(o.pid);
}

static void test_output_cap(void **state) {
        struct ev_loop *loop = *state;
        char *argv[] = { "/bin/sh", "-c", "echo 0123456789abcdef", NULL };
        ChildSpec spec = { .argv = argv, .max_output = 8 };
        Outcome o = {};

        assert_int_equal(child_spawn(loop, &spec, on_done, &o, NULL), 0);
        run_until(loop, &o);
        assert_string_equal(o.out, "01234567");
        assert_true(o.out_truncated);
}

static void test_abandon_reaps(void **state) {
        struct ev_loop *loop = *state;
        char *argv[] = { "sleep", "30", NULL };
        ChildSpec spec = { .argv = argv };
        Outcome o = {};
        Child *c;

        assert_int_equal(child_spawn(loop, &spec, on_done, &o, &c), 0);
        pid_t pid = child_pid(c);
        child_abandon(c);
        run_until(loop, NULL);
        assert_false(o.done); /* nobody is called back */
        assert_int_equal(child_count(), 0);
        assert_reaped(pid);
}

static void test_many_concurrent(void **state) {
        struct ev_loop *loop = *state;
        Outcome o[20] = {};

        for (int i = 0; i < 20; i++) {
                char code[8];
                snprintf(code, sizeof code, "exit %d", i);
                char *argv[] = { "/bin/sh", "-c", code, NULL };
                ChildSpec spec = { .argv = argv };
                assert_int_equal(child_spawn(loop, &spec, on_done, &o[i], NULL), 0);
        }
        run_until(loop, NULL);
        for (int i = 0; i < 20; i++) {
                assert_true(o[i].done);
                assert_int_equal(o[i].exit_code, i);
                assert_reaped(o[i].pid);
        }
}

static int setup(void **state) {
        signal(SIGPIPE, SIG_IGN);
        *state = ev_loop_new(EVBACKEND_EPOLL);
        return *state ? 0 : -1;
}

static int teardown(void **state) {
        ev_loop_destroy(*state);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_exit_code_and_output),
                cmocka_unit_test(test_stdin),
                cmocka_unit_test(test_timeout_kills),
                cmocka_unit_test(test_exec_failure),
                cmocka_unit_test(test_setup_failure),
                cmocka_unit_test(test_grandchild_keeps_pipe),
                cmocka_unit_test(test_output_cap),
                cmocka_unit_test(test_abandon_reaps),
                cmocka_unit_test(test_many_concurrent),
        };
        return cmocka_run_group_tests_name("child", tests, setup, teardown);
}
