/* Unit tests of the generic step machine (event/op.c) and of the step tables the container and pod
 * operations run on: order per kind, op_goto, rollback, abort in the middle, first error wins,
 * detach, and the save before each step that keeps recovery's flags on disk. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ctr-internal.h"
#include "op.h"
#include "pod-internal.h"

enum { S_A, S_B, S_WAIT, S_C, S_UNDO, S_END };

typedef struct TestOp {
        Op op;
        char trace[256];     /* step names and hooks, in order */
        bool flag;           /* what recovery reads */
        bool saved_flag;     /* the flag as the last save wrote it */
        int n_saves, n_notified, n_cancelled, n_unlinked, n_freed;
        bool aborted;
        int error;
        char message[128];
        bool fail_at_b, goto_c_from_a;
} TestOp;

static TestOp *T(Op *o) {
        return container_of(o, TestOp, op);
}

static void trace(TestOp *t, const char *what) {
        strncat(t->trace, what, sizeof t->trace - strlen(t->trace) - 2);
        strcat(t->trace, " ");
}

static void step_a(Op *o) {
        trace(T(o), "a");
        T(o)->flag = true;
        op_dirty(o);
        if (T(o)->goto_c_from_a)
                op_goto(o, S_C);
        else
                op_next(o);
}

static void step_b(Op *o) {
        trace(T(o), "b");
        if (T(o)->fail_at_b) {
                op_fail(o, -EPIPE, "b failed %d", 1);
                op_fail(o, -EIO, "a later failure"); /* the first wins */
        }
        op_next(o);
}

static void step_wait(Op *o) {
        trace(T(o), "wait"); /* the test ends the wait */
}

static void step_c(Op *o) {
        trace(T(o), "c");
        op_next(o);
}

static void step_undo(Op *o) {
        trace(T(o), "undo");
        T(o)->flag = false;
        op_dirty(o);
        op_next(o);
}

static const OpStep steps[S_END] = {
        [S_A] = { "a", step_a },     [S_B] = { "b", step_b }, [S_WAIT] = { "wait", step_wait },
        [S_C] = { "c", step_c },     [S_UNDO] = { "undo", step_undo },
};
static const OpStep short_steps[S_END] = { [S_A] = { "a", step_a }, [S_C] = { "c", step_c } };

static const OpKind kind_plain = { .name = "plain", .steps = steps, .n_steps = S_UNDO }; /* undo not its */
static const OpKind kind_rollback = { .name = "make", .steps = steps, .n_steps = S_END, .has_rollback = true,
                                      .rollback_step = S_UNDO };
static const OpKind kind_short = { .name = "short", .steps = short_steps, .n_steps = S_END };

static void t_unlink(Op *o, bool aborted) {
        T(o)->n_unlinked++;
        T(o)->aborted = aborted;
        trace(T(o), aborted ? "unlink(aborted)" : "unlink");
}
static void t_notify(Op *o, const Error *error) {
        T(o)->n_notified++;
        T(o)->error = error_to_errno(error);
        snprintf(T(o)->message, sizeof T(o)->message, "%s", error_is_set(error) ? error_text(error) : "");
        trace(T(o), "notify");
}
static void t_cancel(Op *o) {
        T(o)->n_cancelled++;
}
static int t_save(Op *o) {
        T(o)->n_saves++;
        T(o)->saved_flag = T(o)->flag;
        trace(T(o), T(o)->flag ? "save(1)" : "save(0)");
        return 0;
}
/* The test owns the memory: counted, not freed. */
static void t_free(Op *o) {
        T(o)->n_freed++;
}

static const OpClass test_class = {
        .noun = "thing", .id_field = "THING_ID", .unlink = t_unlink, .notify = t_notify,
        .cancel = t_cancel, .save = t_save, .free = t_free,
};

static void start(TestOp *t, const OpKind *k) {
        memset(t, 0, sizeof *t);
        op_init(&t->op, &test_class, k, "0123abcd");
        op_start(&t->op, 0);
}

static void test_order_and_save_before_each_step(void **state) {
        TestOp t;

        start(&t, &kind_plain);
        /* a marked the record dirty: saved before b, with the flag a set */
        assert_string_equal(t.trace, "a save(1) b wait ");
        assert_string_equal(op_step_name(&t.op), "wait");
        assert_true(t.saved_flag);
        assert_int_equal(t.n_saves, 1);
        assert_int_equal(t.n_freed, 0);
        op_next(&t.op);
        assert_string_equal(t.trace, "a save(1) b wait c unlink notify ");
        assert_int_equal(t.n_saves, 1); /* nothing changed since */
        assert_int_equal(t.error, 0);
        assert_int_equal(t.n_freed, 1);
        assert_false(t.aborted);
}

static void test_goto_skips_and_steps_not_of_the_kind(void **state) {
        TestOp t;

        memset(&t, 0, sizeof t);
        t.goto_c_from_a = true;
        op_init(&t.op, &test_class, &kind_plain, "x");
        op_start(&t.op, S_A);
        assert_string_equal(t.trace, "a save(1) c unlink notify ");

        /* a kind without b and wait: a's next is c */
        start(&t, &kind_short);
        assert_string_equal(t.trace, "a save(1) c unlink notify ");
        /* op_goto past the end finishes; a start at a step not of the kind runs the next one */
        memset(&t, 0, sizeof t);
        op_init(&t.op, &test_class, &kind_short, "x");
        op_start(&t.op, S_B);
        assert_string_equal(t.trace, "c unlink notify ");
        memset(&t, 0, sizeof t);
        op_init(&t.op, &test_class, &kind_short, "x");
        op_start(&t.op, S_END);
        assert_string_equal(t.trace, "unlink notify ");
}

static void test_first_error_wins_and_rollback(void **state) {
        TestOp t;

        memset(&t, 0, sizeof t);
        t.fail_at_b = true;
        op_init(&t.op, &test_class, &kind_rollback, "x");
        op_start(&t.op, S_A);
        /* b failed: the rollback's step runs once, saves what it undid, and the error is b's */
        assert_string_equal(t.trace, "a save(1) b undo save(0) unlink notify ");
        assert_true(t.op.rollback);
        assert_int_equal(t.error, -EPIPE);
        assert_string_equal(t.message, "b failed 1");
        assert_false(t.saved_flag);

        /* without a rollback the failure goes on to the next step, and is reported at the end */
        memset(&t, 0, sizeof t);
        t.fail_at_b = true;
        op_init(&t.op, &test_class, &kind_plain, "x");
        op_start(&t.op, S_A);
        op_next(&t.op);
        assert_string_equal(t.trace, "a save(1) b wait c unlink notify ");
        assert_int_equal(t.error, -EPIPE);
}

static void test_fail_positive_is_eio(void **state) {
        TestOp t;

        memset(&t, 0, sizeof t);
        op_init(&t.op, &test_class, &kind_plain, "x");
        op_fail(&t.op, 0, "no errno");
        assert_int_equal(error_to_errno(&t.op.error), -EIO);
        assert_string_equal(error_text(&t.op.error), "no errno");
        op_goto(&t.op, S_END);
        assert_int_equal(t.error, -EIO);
}

static void test_abort_in_the_middle(void **state) {
        TestOp t;

        start(&t, &kind_plain);
        assert_string_equal(op_step_name(&t.op), "wait");
        op_fail(&t.op, -EIO, "something"); /* its message is freed, nobody is told */
        op_abort(&t.op);
        assert_int_equal(t.n_cancelled, 1);
        assert_int_equal(t.n_unlinked, 1);
        assert_true(t.aborted);
        assert_int_equal(t.n_notified, 0);
        assert_int_equal(t.n_freed, 1);
        assert_false(error_is_set(&t.op.error));
        assert_null(t.op.error.message);
        assert_string_equal(t.trace, "a save(1) b wait unlink(aborted) ");
}

static void test_detach(void **state) {
        TestOp t;

        start(&t, &kind_plain);
        op_detach(&t.op);
        op_detach(NULL);
        op_next(&t.op);
        assert_int_equal(t.n_notified, 0);
        assert_int_equal(t.n_unlinked, 1);
        assert_int_equal(t.n_freed, 1);
        assert_string_equal(t.trace, "a save(1) b wait c unlink ");
}

/* The names of the steps a kind runs, in order, when every step goes on to the next. */
static void kind_steps(const OpKind *k, char *buf, size_t size) {
        buf[0] = '\0';
        for (size_t i = 0; i < k->n_steps; i++)
                if (k->steps[i].run) {
                        strncat(buf, k->steps[i].name, size - strlen(buf) - 2);
                        strcat(buf, " ");
                }
}

static void test_container_kinds(void **state) {
        char buf[512];

        kind_steps(ctr_op_kind(0), buf, sizeof buf);
        assert_string_equal(ctr_op_kind(0)->name, "create");
        assert_string_equal(buf, "mount config created umount delete ");
        assert_true(ctr_op_kind(0)->has_rollback);
        assert_string_equal(ctr_op_kind(0)->steps[ctr_op_kind(0)->rollback_step].name, "umount");
        kind_steps(ctr_op_kind(1), buf, sizeof buf);
        assert_string_equal(buf, "unit started ");
        kind_steps(ctr_op_kind(2), buf, sizeof buf);
        assert_string_equal(buf, "signal wait-exit kill wait-killed stopped ");
        kind_steps(ctr_op_kind(3), buf, sizeof buf);
        assert_string_equal(buf, "kill wait-killed stop-unit reset-unit runtime-delete umount delete ");
        for (unsigned k = 1; k < 4; k++)
                assert_false(ctr_op_kind(k)->has_rollback);
        assert_null(ctr_op_kind(4));
}

static void test_pod_kinds(void **state) {
        char buf[512];

        kind_steps(pod_op_kind(0), buf, sizeof buf);
        assert_string_equal(pod_op_kind(0)->name, "run");
        assert_string_equal(buf, "slice ns init cni files ready kill stop-init stop-slice cni-del ns-down stopped delete ");
        assert_true(pod_op_kind(0)->has_rollback);
        assert_string_equal(pod_op_kind(0)->steps[pod_op_kind(0)->rollback_step].name, "kill");
        kind_steps(pod_op_kind(1), buf, sizeof buf);
        assert_string_equal(buf, "kill stop-init stop-slice cni-del ns-down stopped ");
        kind_steps(pod_op_kind(2), buf, sizeof buf);
        assert_string_equal(buf, "leftovers kill stop-init stop-slice cni-del ns-down stopped delete ");
        kind_steps(pod_op_kind(3), buf, sizeof buf);
        assert_string_equal(buf, "kill ");
        assert_true(pod_op_kind(3)->quiet);
        assert_null(pod_op_kind(4));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_order_and_save_before_each_step),
                cmocka_unit_test(test_goto_skips_and_steps_not_of_the_kind),
                cmocka_unit_test(test_first_error_wins_and_rollback),
                cmocka_unit_test(test_fail_positive_is_eio),
                cmocka_unit_test(test_abort_in_the_middle),
                cmocka_unit_test(test_detach),
                cmocka_unit_test(test_container_kinds),
                cmocka_unit_test(test_pod_kinds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
