/* libcurl's multi interface driven by the daemon's libev loop: sockets become ev_io watchers, curl's
 * timeout an ev_timer. No thread, no blocking call. */
#include "curl-ev.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "macro.h"

struct CurlEv {
        struct ev_loop *loop;
        CURLM *multi;
        ev_timer timer;
        int running;
};

typedef struct CurlSocket {
        CurlEv *curl;
        ev_io io;
} CurlSocket;

typedef struct Transfer {
        CurlDone done;
        void *userdata;
} Transfer;

static void check_done(CurlEv *c) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(c->multi, &left))) {
                Transfer *t = NULL;
                CURL *easy = msg->easy_handle;
                CURLcode result = msg->data.result;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
                curl_multi_remove_handle(c->multi, easy);
                curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                if (t) {
                        CurlDone done = t->done;
                        void *userdata = t->userdata;
                        free(t);
                        done(easy, result, userdata);
                }
        }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents) {
        CurlSocket *s = container_of(w, CurlSocket, io);
        CurlEv *c = s->curl;
        int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);

        curl_multi_socket_action(c->multi, w->fd, action, &c->running);
        check_done(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        CurlEv *c = container_of(w, CurlEv, timer);

        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &c->running);
        check_done(c);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlEv *c = userp;
        CurlSocket *s = socketp;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        ev_io_stop(c->loop, &s->io);
                        free(s);
                        curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }
        if (!s) {
                s = calloc(1, sizeof *s);
                if (!s)
                        return -1;
                s->curl = c;
                curl_multi_assign(c->multi, fd, s);
        } else
                ev_io_stop(c->loop, &s->io);
        ev_io_init(&s->io, io_cb, fd, (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0));
        ev_io_start(c->loop, &s->io);
        return 0;
}

static int timer_function(CURLM *multi, long timeout_ms, void *userp) {
        CurlEv *c = userp;

        ev_timer_stop(c->loop, &c->timer);
        if (timeout_ms >= 0) {
                /* 0 means "as soon as possible": from the loop, not from inside curl. */
                ev_timer_set(&c->timer, (double) timeout_ms / 1000., 0.);
                ev_timer_start(c->loop, &c->timer);
        }
        return 0;
}

int curl_ev_new(struct ev_loop *loop, CurlEv **ret) {
        static bool initialized = false;
        CurlEv *c;

        assert(loop);
        assert(ret);
        if (!initialized) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return -EIO;
                initialized = true;
        }
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->multi = curl_multi_init();
        if (!c->multi) {
                free(c);
                return -ENOMEM;
        }
        ev_timer_init(&c->timer, timer_cb, 0., 0.);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_function);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
        *ret = c;
        return 0;
}

CurlEv *curl_ev_free(CurlEv *c) {
        if (!c)
                return NULL;
        ev_timer_stop(c->loop, &c->timer);
        curl_multi_cleanup(c->multi);
        free(c);
        return NULL;
}

int curl_ev_add(CurlEv *c, CURL *easy, CurlDone done, void *userdata) {
        Transfer *t = calloc(1, sizeof *t);

        assert(c);
        assert(easy);
        assert(done);
        if (!t)
                return -ENOMEM;
        t->done = done;
        t->userdata = userdata;
        curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
        if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
                curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                free(t);
                return -EIO;
        }
        return 0;
}

void curl_ev_remove(CurlEv *c, CURL *easy) {
        Transfer *t = NULL;

        assert(c);
        assert(easy);
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
        curl_multi_remove_handle(c->multi, easy);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(t);
}
