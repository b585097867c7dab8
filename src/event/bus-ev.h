/* Drives an sd-bus connection from a libev loop: its fd, its events and its timeout. */
#pragma once

#include <ev.h>
#include <systemd/sd-bus.h>

typedef struct BusEv {
        struct ev_loop *loop;
        sd_bus *bus;
        ev_io io;
        ev_timer timer;
        ev_prepare prepare;
        /* Called when the connection broke (sd_bus_process failed); the BusEv is detached by then. */
        void (*on_disconnect)(struct BusEv *b, int error);
} BusEv;

/* Takes a reference on bus. */
int bus_ev_attach(BusEv *b, struct ev_loop *loop, sd_bus *bus);
void bus_ev_detach(BusEv *b);
