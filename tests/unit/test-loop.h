/* For unit tests on a real libev loop: run it until a condition holds, with a deadline. */
#pragma once

#include <ev.h>
#include <stdbool.h>

typedef struct LoopWait {
        bool (*done)(void *userdata);
        void *userdata;
} LoopWait;

static void loop_wait_safety_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        ev_break(loop, EVBREAK_ALL);
}

static void loop_wait_check_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
        const LoopWait *lw = w->data;
        if (lw->done(lw->userdata))
                ev_break(loop, EVBREAK_ALL);
}

/* Runs loop until done(userdata), checked before each poll (after the previous round of
 * callbacks), or for at most seconds. */
static inline void loop_run_until(struct ev_loop *loop, bool (*done)(void *), void *userdata, double seconds) {
        LoopWait lw = { done, userdata };
        ev_timer safety;
        ev_prepare check;

        ev_timer_init(&safety, loop_wait_safety_cb, seconds, 0.);
        ev_timer_start(loop, &safety);
        ev_prepare_init(&check, loop_wait_check_cb);
        check.data = &lw;
        ev_prepare_start(loop, &check);
        ev_run(loop, 0);
        ev_prepare_stop(loop, &check);
        ev_timer_stop(loop, &safety);
}
