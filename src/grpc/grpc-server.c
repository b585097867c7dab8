/* The gRPC server: unix listeners, accepting connections, graceful and forced stop. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fd-util.h"
#include "grpc-internal.h"
#include "log.h"

int grpc_server_new(struct ev_loop *loop, const GrpcServerConfig *config, GrpcLookup lookup,
                    void *userdata, GrpcServer **ret) {
        GrpcServer *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->loop = loop;
        s->config = *config;
        s->lookup = lookup;
        s->userdata = userdata;

        if (grpc_conn_setup_callbacks(&s->callbacks) < 0 || nghttp2_option_new(&s->option) != 0) {
                grpc_server_free(s);
                return -ENOMEM;
        }
        /* Bound what a client controls: closed streams kept for priority, and reset floods. */
        nghttp2_option_set_max_reserved_remote_streams(s->option, 0);
        nghttp2_option_set_max_outbound_ack(s->option, 1000);
        /* nghttp2's HTTP messaging checks reset every stream whose :authority holds a '/', which is
         * what grpc-go (kubelet, crictl) sends on a unix socket: the socket path. grpc-call.c checks
         * the request itself and answers what it refuses with a status, never a bare reset. */
        nghttp2_option_set_no_http_messaging(s->option, 1);

        *ret = s;
        return 0;
}

static void server_close_listeners(GrpcServer *s) {
        for (size_t i = 0; i < s->n_listeners; i++) {
                ev_io_stop(s->loop, &s->listeners[i]->io);
                safe_close(s->listeners[i]->io.fd);
                free(s->listeners[i]);
        }
        free(s->listeners);
        s->listeners = NULL;
        s->n_listeners = 0;

        if (s->socket_path) {
                (void) unlink(s->socket_path);
                free(s->socket_path);
                s->socket_path = NULL;
        }
}

void grpc_server_close_connections(GrpcServer *s) {
        /* A connection being processed further up the stack is only marked; it goes when that ends. */
        for (GrpcConn *c = s->conns, *next; c; c = next) {
                next = c->next;
                grpc_conn_kill(c);
        }
}

GrpcServer *grpc_server_free(GrpcServer *s) {
        if (!s)
                return NULL;
        s->shutdown_done = NULL;
        server_close_listeners(s);
        grpc_server_close_connections(s);
        nghttp2_session_callbacks_del(s->callbacks);
        nghttp2_option_del(s->option);
        free(s);
        return NULL;
}

unsigned grpc_server_n_connections(const GrpcServer *s) {
        return s->n_conns;
}

void grpc_server_pause(GrpcServer *s, bool pause) {
        s->paused = pause;
        for (size_t i = 0; i < s->n_listeners; i++)
                if (pause)
                        ev_io_stop(s->loop, &s->listeners[i]->io);
                else
                        ev_io_start(s->loop, &s->listeners[i]->io);
}

static void listener_cb(struct ev_loop *loop, ev_io *w, int revents) {
        GrpcListener *l = container_of(w, GrpcListener, io);
        GrpcServer *s = l->server;

        for (int i = 0; i < 64; i++) {
                int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN)
                                log_warning_errno(errno, "Failed to accept a connection: %m");
                        return;
                }
                if (s->n_conns >= s->config.max_connections) {
                        log_warning("Refusing a connection: %u connections are open already.", s->n_conns);
                        safe_close(fd);
                        continue;
                }
                int r = grpc_conn_new(s, fd);
                if (r < 0) {
                        log_warning_errno(r, "Failed to set up a connection: %m");
                        safe_close(fd);
                }
        }
}

int grpc_server_add_listener_fd(GrpcServer *s, int fd) {
        GrpcListener *l, **a;
        int r;

        r = fd_nonblock(fd, true);
        if (r < 0)
                return r;
        l = calloc(1, sizeof *l);
        a = reallocarray(s->listeners, s->n_listeners + 1, sizeof *a);
        if (!l || !a) {
                free(l);
                if (a)
                        s->listeners = a;
                return -ENOMEM;
        }
        s->listeners = a;
        l->server = s;
        ev_io_init(&l->io, listener_cb, fd, EV_READ);
        if (!s->paused)
                ev_io_start(s->loop, &l->io);
        s->listeners[s->n_listeners++] = l;
        return 0;
}

/* Removes a socket file left by a previous run, but never one somebody still listens on. */
static int remove_stale_socket(const char *path, const struct sockaddr_un *sa, socklen_t salen) {
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) sa, salen) == 0)
                return -EADDRINUSE;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int grpc_server_listen_unix(GrpcServer *s, const char *path, mode_t mode) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t salen;
        int r;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

        r = mkdir_parents(path, 0711);
        if (r < 0)
                return r;
        r = remove_stale_socket(path, &sa, salen);
        if (r < 0)
                return r;

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* The socket must never be reachable with looser permissions than asked, not even briefly. */
        mode_t old = umask(0777 & ~mode);
        r = bind(fd, (struct sockaddr *) &sa, salen);
        umask(old);
        if (r < 0)
                return -errno;
        if (chmod(path, mode) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                (void) unlink(path);
                return r;
        }

        s->socket_path = strdup(path);
        if (!s->socket_path) {
                (void) unlink(path);
                return -ENOMEM;
        }
        r = grpc_server_add_listener_fd(s, fd);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

void grpc_server_shutdown(GrpcServer *s, void (*done)(void *userdata), void *userdata) {
        s->shutting_down = true;
        s->shutdown_done = done;
        s->shutdown_userdata = userdata;
        server_close_listeners(s);

        for (GrpcConn *c = s->conns, *next; c; c = next) {
                next = c->next;
                grpc_conn_goaway(c); /* may free c */
        }

        if (s->n_conns == 0 && s->shutdown_done) {
                s->shutdown_done = NULL;
                done(userdata);
        }
}
