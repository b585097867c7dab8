/* Unit tests of attach (src/ctr/ctr-io.c): the log writer's reads fanned out to attachments, which
 * may free themselves and each other from their callbacks; stdin duplicates and stdin_once; the end
 * at the exit and when the io goes first; resize on a tty. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <cmocka.h>

#include "ctr-internal.h"
#include "fd-util.h"
#include "test-loop.h"

static char dir[] = "/tmp/test-ctr-attach.XXXXXX";

typedef struct Client {
        char out[4096], err[4096];
        size_t n_out, n_err;
        unsigned ended, stdin_closed;
        CtrAttach *a;
        struct Client *free_other; /* frees this one's attachment from its output callback */
        bool free_self;
} Client;

static void on_output(CriStream stream, const void *data, size_t len, void *userdata) {
        Client *c = userdata;
        char *buf = stream == CRI_STDERR ? c->err : c->out;
        size_t *n = stream == CRI_STDERR ? &c->n_err : &c->n_out;

        assert_true(*n + len < sizeof c->out);
        memcpy(buf + *n, data, len);
        *n += len;
        buf[*n] = '\0';
        if (c->free_other && c->free_other->a)
                c->free_other->a = ctr_attach_free(c->free_other->a);
        if (c->free_self)
                c->a = ctr_attach_free(c->a);
}

static void on_ended(void *userdata) {
        Client *c = userdata;
        c->ended++;
}

static void on_stdin_closed(void *userdata) {
        Client *c = userdata;
        c->stdin_closed++;
}

static const CtrAttachOps ops = { .output = on_output, .ended = on_ended, .stdin_closed = on_stdin_closed };

static bool has_out(void *userdata) {
        Client *c = userdata;
        return strstr(c->out, "two\n") && strstr(c->err, "err\n");
}

static void new_container(struct ev_loop *loop, Container *c, bool tty, int fds[3]) {
        memset(c, 0, sizeof *c);
        strcpy(c->id, "0123456789abcdef");
        assert_int_equal(ctr_io_new(loop, c->id, dir, tty ? "tty.log" : "pipes.log", tty, true, &c->io, fds), 0);
}

static void test_fan_out_stdin_and_end(void **state) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        Container c;
        Client a = {}, b = {}, x = {}, y = {};
        int fds[3], in_a = -1, in_b = -1, in_x = -1, in_y = -1;
        char buf[64];
        Error error = ERROR_INIT;

        new_container(loop, &c, false, fds);
        assert_int_equal(write(fds[1], "one\n", 4), 4); /* before anyone attached: the log's only */
        loop_run_until(loop, has_out, &a, 0.2);
        /* Walked newest first: b, a, x, y. */
        assert_int_equal(ctr_attach(&c, &ops, &y, &in_y, &y.a, &error), 0);
        assert_int_equal(ctr_attach(&c, &ops, &x, &in_x, &x.a, &error), 0);
        assert_int_equal(ctr_attach(&c, &ops, &a, &in_a, &a.a, &error), 0);
        assert_int_equal(ctr_attach(&c, &ops, &b, &in_b, &b.a, &error), 0);
        assert_true(in_a >= 0 && in_b >= 0 && in_x >= 0 && in_y >= 0);
        /* b frees x (not reached yet) from its callback, y frees itself: both during the walk. */
        b.free_other = &x;
        y.free_self = true;
        assert_int_equal(write(fds[1], "two\n", 4), 4);
        assert_int_equal(write(fds[2], "err\n", 4), 4);
        loop_run_until(loop, has_out, &a, 5);
        loop_run_until(loop, has_out, &b, 5);
        assert_string_equal(a.out, "two\n");
        assert_string_equal(a.err, "err\n");
        assert_string_equal(b.out, "two\n");
        assert_null(x.a);
        assert_int_equal(x.n_out + x.n_err, 0);
        assert_null(y.a);
        assert_true(y.n_out + y.n_err > 0);
        safe_close(in_x);
        safe_close(in_y);

        /* stdin: each attachment's duplicate writes to the container's stdin. */
        assert_int_equal(write(in_a, "from-a\n", 7), 7);
        assert_int_equal(write(in_b, "from-b\n", 7), 7);
        assert_int_equal(read(fds[0], buf, sizeof buf), 14);
        assert_memory_equal(buf, "from-a\nfrom-b\n", 14);

        /* stdin_once: a's end closes the container's stdin, b is told to close its own. */
        safe_close(in_a);
        ctr_attach_close_stdin(a.a);
        assert_int_equal(a.stdin_closed, 0);
        assert_int_equal(b.stdin_closed, 1);
        safe_close(in_b);
        assert_int_equal(read(fds[0], buf, sizeof buf), 0); /* EOF: no write end is left */
        int again = -1;
        Client late = {};
        assert_int_equal(ctr_attach(&c, &ops, &late, &again, &late.a, &error), 0);
        assert_int_equal(again, -1); /* no stdin any more */
        late.a = ctr_attach_free(late.a);

        /* The exit: what the pipes hold first, then every attachment ends once. */
        assert_int_equal(write(fds[1], "last\n", 5), 5);
        ctr_io_exited(c.io);
        assert_non_null(strstr(a.out, "last\n"));
        assert_int_equal(a.ended, 1);
        assert_int_equal(b.ended, 1);
        ctr_io_exited(c.io);
        assert_int_equal(a.ended, 1);

        a.a = ctr_attach_free(a.a);
        c.io = ctr_io_free(c.io);
        /* b outlived the io: its owner frees it still. */
        assert_int_equal(b.ended, 1);
        b.a = ctr_attach_free(b.a);
        for (int i = 0; i < 3; i++)
                safe_close(fds[i]);
        error_done(&error);
        ev_loop_destroy(loop);
}

static void test_io_freed_first(void **state) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        Container c;
        Client a = {};
        int fds[3], in = -1;
        Error error = ERROR_INIT;

        new_container(loop, &c, false, fds);
        assert_int_equal(ctr_attach(&c, &ops, &a, &in, &a.a, &error), 0);
        assert_int_equal(write(fds[1], "bye\n", 4), 4);
        c.io = ctr_io_free(c.io);
        assert_string_equal(a.out, "bye\n"); /* what was in the pipe, then the end */
        assert_int_equal(a.ended, 1);
        ctr_attach_close_stdin(a.a); /* no io: nothing */
        assert_int_equal(ctr_attach_resize(a.a, 80, 24), -EBADF);
        a.a = ctr_attach_free(a.a);
        safe_close(in);
        for (int i = 0; i < 3; i++)
                safe_close(fds[i]);
        ev_loop_destroy(loop);
}

static void test_tty_resize(void **state) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        Container c, p;
        Client a = {}, b = {};
        int fds[3], pfds[3], in = -1, pin = -1;
        struct winsize ws = {};
        Error error = ERROR_INIT;

        new_container(loop, &c, true, fds);
        assert_int_equal(ctr_attach(&c, &ops, &a, &in, &a.a, &error), 0);
        assert_true(in >= 0); /* the pty master */
        assert_int_equal(ctr_attach_resize(a.a, 101, 33), 0);
        assert_int_equal(ioctl(fds[1], TIOCGWINSZ, &ws), 0);
        assert_int_equal(ws.ws_col, 101);
        assert_int_equal(ws.ws_row, 33);
        a.a = ctr_attach_free(a.a);
        safe_close(in);
        c.io = ctr_io_free(c.io);
        for (int i = 0; i < 3; i++)
                safe_close(fds[i]);

        new_container(loop, &p, false, pfds);
        assert_int_equal(ctr_attach(&p, &ops, &b, &pin, &b.a, &error), 0);
        assert_int_equal(ctr_attach_resize(b.a, 80, 24), -ENOTTY); /* pipes */
        b.a = ctr_attach_free(b.a);
        safe_close(pin);
        p.io = ctr_io_free(p.io);
        for (int i = 0; i < 3; i++)
                safe_close(pfds[i]);
        ev_loop_destroy(loop);
}

static int setup(void **state) {
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fan_out_stdin_and_end),
                cmocka_unit_test(test_io_freed_first),
                cmocka_unit_test(test_tty_resize),
        };
        unsetenv("NOTIFY_SOCKET");
        return cmocka_run_group_tests(tests, setup, teardown);
}
