/* Drives an sd-bus connection from a libev loop: its fd, its events and its timeout. */
#include "bus-ev.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>

#include "log.h"
#include "macro.h"
#include "time-util.h"

static void bus_ev_process(BusEv *b) {
        int r;

        /* Take a reference: a callback run by sd_bus_process() may detach us. */
        sd_bus *bus = sd_bus_ref(b->bus);
        do
                r = sd_bus_process(bus, NULL);
        while (r > 0 && b->bus == bus);
        sd_bus_unref(bus);

        if (r < 0 && b->bus == bus) {
                log_debug_errno(r, "D-Bus connection failed: %m");
                bus_ev_detach(b);
                if (b->on_disconnect)
                        b->on_disconnect(b, r);
        }
}

static void bus_io_cb(struct ev_loop *loop, ev_io *w, int revents) {
        bus_ev_process(container_of(w, BusEv, io));
}

static void bus_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        bus_ev_process(container_of(w, BusEv, timer));
}

/* Before the loop sleeps, tell it what sd-bus waits for now: the events it wants and its deadline. */
static void bus_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
        BusEv *b = container_of(w, BusEv, prepare);
        int events, fd, want = 0;
        uint64_t until;

        if (!b->bus)
                return;
        fd = sd_bus_get_fd(b->bus);
        events = sd_bus_get_events(b->bus);
        if (fd < 0 || events < 0)
                return;
        if (events & POLLIN)
                want |= EV_READ;
        if (events & POLLOUT)
                want |= EV_WRITE;
        if (want != (b->io.events & (EV_READ | EV_WRITE)) || fd != b->io.fd) {
                ev_io_stop(loop, &b->io);
                ev_io_set(&b->io, fd, want);
                if (want)
                        ev_io_start(loop, &b->io);
        }

        ev_timer_stop(loop, &b->timer);
        if (sd_bus_get_timeout(b->bus, &until) >= 0 && until != UINT64_MAX) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                ev_timer_set(&b->timer, until > now ? (double) (until - now) / USEC_PER_SEC : 0., 0.);
                ev_timer_start(loop, &b->timer);
        }
}

int bus_ev_attach(BusEv *b, struct ev_loop *loop, sd_bus *bus) {
        assert(b);
        assert(loop);
        assert(bus);
        b->loop = loop;
        b->bus = sd_bus_ref(bus);
        ev_io_init(&b->io, bus_io_cb, -1, 0);
        ev_timer_init(&b->timer, bus_timer_cb, 0., 0.);
        ev_prepare_init(&b->prepare, bus_prepare_cb);
        ev_prepare_start(loop, &b->prepare);
        return 0;
}

void bus_ev_detach(BusEv *b) {
        assert(b);
        if (!b->bus)
                return;
        ev_io_stop(b->loop, &b->io);
        ev_timer_stop(b->loop, &b->timer);
        ev_prepare_stop(b->loop, &b->prepare);
        b->bus = sd_bus_unref(b->bus);
}
