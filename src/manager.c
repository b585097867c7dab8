/* The Manager: owns the loop, the configuration, the bus, the gRPC server and every table. */
#include "build-config.h"
#include "manager.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "child.h"
#include "cri-service.h"
#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "sandbox.h"
#include "strv.h"
#include "time-util.h"

#define SYSTEMD_CALL_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define BUS_RECONNECT_MIN_USEC (50 * USEC_PER_MSEC)
#define BUS_RECONNECT_MAX_USEC (2 * USEC_PER_SEC)

static void reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents);

int manager_new(Config *config, Manager **ret) {
        Manager *m = calloc(1, sizeof *m);
        int r;

        if (!m)
                return -ENOMEM;
        m->config = *config;
        *config = (Config) {};

        /* Our own loop, not libev's default one: that one would install a SIGCHLD handler and reap
         * children behind the pidfds' back. */
        m->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
        if (!m->loop) {
                manager_free(m);
                return -ENOMEM;
        }
        ev_timer_init(&m->reconnect_timer, reconnect_cb, 0., 0.);

        r = config_to_json(&m->config, &m->config_json);
        if (r < 0) {
                manager_free(m);
                return r;
        }

        GrpcServerConfig gc = {
                .max_message_size = m->config.max_message_size,
                .max_concurrent_streams = m->config.max_concurrent_streams,
                .max_connections = m->config.max_connections,
                .handshake_timeout_usec = 10 * USEC_PER_SEC,
                .observe = manager_metrics_observe_grpc,
                .observe_userdata = m,
        };
        r = manager_metrics_new(m);
        if (r >= 0)
                r = cri_service_init(m);
        if (r >= 0)
                r = grpc_server_new(m->loop, &gc, cri_service_lookup, m, &m->server);
        if (r < 0) {
                manager_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

/* Lets go of the bus (not of the client). */
static void manager_close_bus(Manager *m) {
        m->version_slot = sd_bus_slot_unref(m->version_slot);
        m->cgroup_slot = sd_bus_slot_unref(m->cgroup_slot);
        bus_ev_detach(&m->bus_ev);
        if (m->bus) {
                /* No flush: sd_bus_flush() blocks until the peer reads, up to sd-bus's 90 s, and a bus
                 * that stopped answering would hold up the exit past ShutdownTimeoutSec=. What is still
                 * queued belongs to work that was cancelled. */
                sd_bus_close_unref(m->bus);
                m->bus = NULL;
        }
}

static void manager_drop_bus(Manager *m) {
        if (m->loop)
                ev_timer_stop(m->loop, &m->reconnect_timer);
        m->systemd = systemd_client_free(m->systemd); /* fails the jobs in flight */
        manager_close_bus(m);
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        if (m->containers)
                m->containers->all_confirmed = NULL; /* freeing them is no recovery */
        m->server = grpc_server_free(m->server);
        m->events = cri_events_free(m->events); /* its subscribers went with the server */
        m->streaming = stream_server_free(m->streaming); /* its execs are cancelled */
        cri_service_done();
        ctr_exec_abort_all(); /* commands run by ExecSync: killed, not left to the containers */
        child_orphans_unwatch();
        m->containers = ctr_table_free(m->containers);
        m->pods = pod_table_free(m->pods);
        m->puller = puller_free(m->puller);
        m->images = image_store_free(m->images);
        manager_drop_bus(m);
        m->cni = cni_free(m->cni);
        child_free_abandoned(); /* what the tables above gave up (a CNI plugin still running) */
        free(m->pod_cidr);
        free(m->pod_init);
        for (size_t i = 0; i < m->stored.n; i++)
                safe_close(m->stored.fds[i]);
        free(m->stored.fds);
        strv_free(m->stored.names);
        if (m->loop) {
                ev_signal_stop(m->loop, &m->sigterm);
                ev_signal_stop(m->loop, &m->sigint);
                ev_signal_stop(m->loop, &m->sighup);
                /* libev put the default actions back; a SIGTERM now must not kill a daemon that is
                 * already on its way out with status 0. */
                (void) signal(SIGTERM, SIG_IGN);
                (void) signal(SIGINT, SIG_IGN);
                ev_timer_stop(m->loop, &m->shutdown_timer);
                ev_timer_stop(m->loop, &m->recovery_timer);
                manager_metrics_free(m); /* last: freeing the others still tells it of what ends */
                ev_loop_destroy(m->loop);
        }
        free(m->bus_error);
        free(m->systemd_version);
        free(m->systemd_cgroup);
        free(m->config_json);
        config_done(&m->config);
        free(m);
        return NULL;
}

static const char *bus_kind(Manager *m) {
        return m->config.user_bus ? "user" : "system";
}

/* The next connection attempt, after the current delay; the one after waits twice as long. */
static void manager_schedule_reconnect(Manager *m) {
        uint64_t delay = m->reconnect_usec ?: BUS_RECONNECT_MIN_USEC;

        /* Also while stopping: the calls still in flight may need the bus to finish. */
        m->reconnect_usec = MIN(delay * 2, BUS_RECONNECT_MAX_USEC);
        ev_timer_stop(m->loop, &m->reconnect_timer);
        ev_timer_set(&m->reconnect_timer, (double) delay / USEC_PER_SEC, 0.);
        ev_timer_start(m->loop, &m->reconnect_timer);
}

static void bus_disconnected(BusEv *b, int error) {
        Manager *m = container_of(b, Manager, bus_ev);
        char msg[256];

        snprintf(msg, sizeof msg, "the bus to systemd dropped: connection to the %s bus lost: %s", bus_kind(m),
                 strerror(-error));
        log_warning("%s; connecting again.", msg);
        (void) free_and_strdup(&m->bus_error, msg);
        /* m->bus first: what the client's callbacks ask for now finds no bus ("systemd is
         * unreachable"), not the dead one. The client keeps its jobs and watches for the next bus. */
        manager_close_bus(m);
        systemd_client_detach(m->systemd, msg);
        manager_schedule_reconnect(m);
}

/* A call failed because the connection closed under it: bus_disconnected() says so, and the next
 * bus asks again. */
static bool manager_bus_closing(Manager *m) {
        return !m->bus || sd_bus_is_open(m->bus) <= 0;
}

static void initial_version_done(const Error *error, const char *version, void *userdata) {
        Manager *m = userdata;

        m->version_slot = sd_bus_slot_unref(m->version_slot);
        if (error && manager_bus_closing(m))
                return;
        if (error) {
                log_warning("systemd on the %s bus did not answer: %s", m->config.user_bus ? "user" : "system",
                            error_text(error));
                (void) free_and_strdup(&m->bus_error, error_text(error));
                return;
        }
        (void) free_and_strdup(&m->systemd_version, version);
        log_info("Talking to systemd %s on the %s bus.", version, m->config.user_bus ? "user" : "system");
}

static void cgroup_done(const Error *error, const char *cgroup, void *userdata) {
        Manager *m = userdata;

        m->cgroup_slot = sd_bus_slot_unref(m->cgroup_slot);
        if (error && manager_bus_closing(m))
                return;
        if (error) {
                log_warning("systemd did not tell its ControlGroup: %s", error_text(error));
                return;
        }
        (void) free_and_strdup(&m->systemd_cgroup, strcmp(cgroup, "/") == 0 ? "" : cgroup);
}

static const char *ctr_env_cgroup_root(void *userdata) {
        Manager *m = userdata;
        return m->systemd_cgroup;
}

/* Asks systemd for what is not known yet and not asked for: its version, its control group. */
static void manager_ask_systemd(Manager *m) {
        int r;

        if (!m->version_slot) {
                r = systemd_get_version(m->bus, SYSTEMD_CALL_TIMEOUT_USEC, initial_version_done, m, &m->version_slot);
                if (r < 0)
                        log_warning_errno(r, "Failed to ask systemd for its version: %m");
        }
        if (!m->systemd_cgroup && !m->cgroup_slot) {
                r = systemd_get_manager_string(m->bus, "ControlGroup", SYSTEMD_CALL_TIMEOUT_USEC, cgroup_done, m,
                                               &m->cgroup_slot);
                if (r < 0)
                        log_warning_errno(r, "Failed to ask systemd for its control group: %m");
        }
}

/* systemd owns its name on the bus, the first time or again (a new bus, or a daemon-reexec): the
 * client has subscribed, re-read the watched units and checked its jobs. */
static void systemd_ready(SystemdClient *c, unsigned generation, void *userdata) {
        Manager *m = userdata;

        m->reconnect_usec = 0; /* this bus works: the next drop reconnects at once again */
        if (m->containers)
                ctr_table_watch_missing(m->containers);
        m->teardown.systemd_ready = true;
        manager_teardown_maybe_begin(m);
        if (generation == 1)
                return; /* manager_start() asked for the version and the control group */
        log_info("systemd is on the %s bus again: its units are watched and its jobs checked again.", bus_kind(m));
        manager_ask_systemd(m);
}

/* Opens the bus (never blocks: sd-bus connects a non-blocking socket and authenticates from the
 * loop) and hands it to the client. */
static int manager_connect(Manager *m) {
        sd_bus *bus = NULL;
        char msg[256];
        int r;

        assert(!m->bus);
        r = m->config.user_bus ? sd_bus_open_user(&bus) : sd_bus_open_system(&bus);
        if (r < 0) {
                snprintf(msg, sizeof msg, "systemd is unreachable: cannot connect to the %s bus: %s", bus_kind(m),
                         strerror(-r));
                (void) free_and_strdup(&m->bus_error, msg);
                return r;
        }
        (void) sd_bus_set_description(bus, "rktlet");
        if (!m->systemd) {
                r = systemd_client_new(m->loop, &m->systemd);
                if (r >= 0) {
                        systemd_client_set_ready(m->systemd, systemd_ready, m);
                        systemd_client_set_observer(m->systemd, manager_metrics_observe_systemd, m);
                }
        }
        if (r >= 0)
                r = systemd_client_attach(m->systemd, bus);
        if (r < 0) {
                snprintf(msg, sizeof msg, "systemd is unreachable: cannot watch systemd on the %s bus: %s",
                         bus_kind(m), strerror(-r));
                (void) free_and_strdup(&m->bus_error, msg);
                sd_bus_close_unref(bus);
                return r;
        }
        m->bus = bus;
        m->bus_connections++;
        m->bus_ev.on_disconnect = bus_disconnected;
        bus_ev_attach(&m->bus_ev, m->loop, bus);
        (void) free_and_strdup(&m->bus_error, NULL);
        return 0;
}

static void reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        Manager *m = container_of(w, Manager, reconnect_timer);
        int r;

        if (m->bus)
                return;
        r = manager_connect(m);
        if (r < 0) {
                log_debug("%s; again in %.2f s.", m->bus_error,
                          (double) (m->reconnect_usec ?: BUS_RECONNECT_MIN_USEC) / USEC_PER_SEC);
                manager_schedule_reconnect(m);
                return;
        }
        log_info("Connected to the %s bus again (connection %u).", bus_kind(m), m->bus_connections);
}

sd_bus *manager_get_bus(Manager *m) {
        return m->bus;
}

SystemdClient *manager_get_systemd(Manager *m) {
        return m->bus ? m->systemd : NULL;
}

void manager_save_runtime_state(Manager *m) {
        char *path = NULL, *data = NULL;
        yajl_gen g = yajl_gen_alloc(NULL);
        int r = -ENOMEM;

        if (g && asprintf(&path, "%s/runtime.json", m->config.root_dir) >= 0) {
                yajl_gen_map_open(g);
                json_gen_key_str(g, "podCIDR", m->pod_cidr);
                yajl_gen_map_close(g);
                data = json_gen_steal(g);
                if (data)
                        r = write_file_atomic(path, data, strlen(data), 0600);
        }
        if (r < 0)
                log_warning_errno(r, "Failed to save %s: %m", path ?: "runtime.json");
        if (g)
                yajl_gen_free(g);
        free(path);
        free(data);
}

static void manager_load_runtime_state(Manager *m) {
        char *path = NULL, *text = NULL;
        yajl_val v;

        if (asprintf(&path, "%s/runtime.json", m->config.root_dir) < 0)
                return;
        if (read_file(path, 64 * 1024, &text, NULL) >= 0 && (v = json_parse(text, NULL, 0))) {
                const char *cidr = json_get_str(v, "podCIDR");
                if (cidr)
                        m->pod_cidr = strdup(cidr);
                yajl_tree_free(v);
        }
        free(text);
        free(path);
}

static SystemdClient *pod_env_systemd(void *userdata) {
        return manager_get_systemd(userdata);
}

static void manager_exit(Manager *m) {
        ev_break(m->loop, EVBREAK_ALL);
}

static void shutdown_done(void *userdata) {
        Manager *m = userdata;
        log_debug("All connections closed.");
        manager_exit(m);
}

static void shutdown_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        Manager *m = container_of(w, Manager, shutdown_timer);

        log_warning("In-flight calls did not finish within the shutdown timeout; closing %u connection(s).",
                    grpc_server_n_connections(m->server));
        grpc_server_close_connections(m->server);
        manager_exit(m);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents) {
        Manager *m = w->data;

        if (m->stopping) {
                log_notice("Second signal: stopping at once.");
                grpc_server_close_connections(m->server);
                manager_exit(m);
                return;
        }
        m->stopping = true;
        log_info("Received %s, stopping.", strsignal(w->signum));
        (void) sd_notify(0, "STOPPING=1\nSTATUS=Stopping: finishing in-flight calls");

        ev_timer_set(&m->shutdown_timer, (double) m->config.shutdown_timeout_usec / USEC_PER_SEC, 0.);
        ev_timer_start(loop, &m->shutdown_timer);
        cri_events_close(m->events); /* endless streams: their clients reconnect to the next daemon */
        grpc_server_shutdown(m->server, shutdown_done, m);
}

#define MESSAGE_ID_LISTENING "MESSAGE_ID=5f8c3a1e2b7d4c6e9a0f1b2c3d4e5f60"

static void log_listening(const char *path, const char *how) {
        char listen_field[sizeof("RKTLET_LISTEN=") + sizeof(((struct sockaddr_un *) NULL)->sun_path)];
        const char *fields[] = { MESSAGE_ID_LISTENING, listen_field, NULL };

        snprintf(listen_field, sizeof listen_field, "RKTLET_LISTEN=%s", path);
        log_fields(LOG_INFO, fields, "rktlet %s listening on %s%s", PROJECT_VERSION, path, how);
}

/* --teardown: a socket listening on the path (a daemon's, or systemd's for rktlet.socket) means the
 * state has an owner, so nothing may be removed under it. Looked up in /proc/net/unix, not by
 * connecting: a connection would make systemd start the daemon. */
static int manager_check_not_serving(Manager *m) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/net/unix", "re");
        char line[4096];

        if (!f)
                return log_error_errno(-errno, "Failed to read /proc/self/net/unix: %m");
        while (fgets(line, sizeof line, f)) {
                unsigned long flags;
                char path[sizeof line];
                /* Num RefCount Protocol Flags Type St Inode Path; flag 0x10000: listening */
                if (sscanf(line, "%*s %*s %*s %lx %*s %*s %*s %4095s", &flags, path) != 2)
                        continue;
                if ((flags & 0x10000) && strcmp(path, m->config.listen) == 0)
                        return log_error_errno(-EBUSY, "Something listens on '%s' (rktlet, or rktlet.socket): stop it "
                                                       "first (systemctl stop rktlet.socket rktlet.service), then tear "
                                                       "down.", m->config.listen);
        }
        return 0;
}

static int manager_listen(Manager *m) {
        int n, r;

        char **names = NULL;
        n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read sockets passed by systemd: %m");
        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                struct sockaddr_un sa = {};
                socklen_t len = sizeof sa;
                const char *name = names ? names[fd - SD_LISTEN_FDS_START] : NULL;

                if (name && strncmp(name, "ctr-", 4) == 0) {
                        /* A container's log pipe, kept in the fd store by an earlier rktlet. */
                        int *fds = realloc(m->stored.fds, (m->stored.n + 1) * sizeof(int));
                        if (!fds || strv_push(&m->stored.names, name) < 0) {
                                free(fds ?: m->stored.fds);
                                m->stored.fds = NULL;
                                strv_free(names);
                                return log_error_errno(-ENOMEM, "Out of memory.");
                        }
                        m->stored.fds = fds;
                        m->stored.fds[m->stored.n++] = fd;
                        (void) fd_cloexec(fd, true);
                        continue;
                }
                if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
                        log_warning("Ignoring passed fd %i: not a listening unix stream socket.", fd);
                        continue;
                }
                r = grpc_server_add_listener_fd(m->server, fd);
                if (r < 0)
                        return log_error_errno(r, "Failed to serve on passed socket %i: %m", fd);
                m->socket_activated = true;
                if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0 || len <= offsetof(struct sockaddr_un, sun_path))
                        strcpy(sa.sun_path, "?");
                else if (sa.sun_path[0] == '\0')
                        sa.sun_path[0] = '@'; /* abstract */
                log_listening(sa.sun_path, " (socket passed by systemd)");
        }
        strv_free(names);
        if (m->socket_activated)
                return 0;

        r = grpc_server_listen_unix(m->server, m->config.listen, 0660);
        if (r == -EADDRINUSE)
                return log_error_errno(r, "Failed to listen on '%s': another rktlet answers there.", m->config.listen);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on '%s': %m", m->config.listen);
        log_listening(m->config.listen, "");
        return 0;
}

#define SWAP(a, b)                        \
        do {                              \
                typeof(a) _t = (a);       \
                (a) = (b);                \
                (b) = _t;                 \
        } while (0)

/* The keys a reload applies: between the configuration in use and a newly read one. */
static void swap_reloadable(Config *a, Config *b) {
        SWAP(a->log_level, b->log_level);
        SWAP(a->registry_insecure, b->registry_insecure);
        SWAP(a->registry_mirrors, b->registry_mirrors);
        SWAP(a->registry_blocked, b->registry_blocked);
        SWAP(a->registry_certs_dir, b->registry_certs_dir);
        SWAP(a->registry_auth_file, b->registry_auth_file);
        SWAP(a->image_max_layer_size, b->image_max_layer_size);
        SWAP(a->image_max_size, b->image_max_size);
        SWAP(a->image_max_ratio, b->image_max_ratio);
        SWAP(a->image_min_free, b->image_min_free);
        SWAP(a->cni_bin_dirs, b->cni_bin_dirs);
        SWAP(a->cni_timeout_usec, b->cni_timeout_usec);
        SWAP(a->metrics_address, b->metrics_address);
}

static PullRegistries pull_registries(const Config *c) {
        return (PullRegistries) {
                .insecure = c->registry_insecure,
                .mirrors = c->registry_mirrors,
                .blocked = c->registry_blocked,
                .certs_dir = c->registry_certs_dir,
                .auth_file = c->registry_auth_file,
        };
}

static PullLimits pull_limits(const Config *c) {
        return (PullLimits) {
                .max_layer_size = c->image_max_layer_size,
                .max_image_size = c->image_max_size,
                .max_ratio = c->image_max_ratio,
                .min_free_bytes = c->image_min_free.bytes,
                .min_free_percent = c->image_min_free.percent,
        };
}

/* SIGHUP: the configuration is read again. [Registries], [Images], the log level and [CNI]
 * BinDir=/PluginTimeoutSec= take effect for what starts from now on, and the CNI directory is read
 * again; [Metrics] Address= moves (or starts, or stops) the endpoint. A change of any other key is
 * reported as needing a restart and not applied. A configuration that does not load, or a step that
 * fails, changes nothing. */
static void manager_reload(Manager *m) {
        _cleanup_free_ char *before = NULL, *others = NULL, *now = NULL;
        Config next;
        int r;

        if (!m->load_config)
                return;
        if (m->load_config(&next, m->load_config_userdata) < 0) {
                log_error("Reload failed: the configuration in use is unchanged.");
                return;
        }
        PullLimits limits = pull_limits(&next);
        PullRegistries registries = pull_registries(&next);
        r = config_to_json(&m->config, &before);
        /* First the step that most often fails (an address in use), the easiest one to undo: the
         * new address is bound while the old one still serves. No endpoint in a teardown. */
        if (r >= 0 && !m->teardown.enabled) {
                r = manager_metrics_reload_prepare(m, next.metrics_address);
                if (r < 0) {
                        log_error_errno(r, "Reload failed: cannot serve metrics on %s: %m; the configuration in "
                                        "use is unchanged.", next.metrics_address);
                        config_done(&next);
                        return;
                }
        }
        if (r >= 0 && m->puller)
                r = puller_reconfigure(m->puller, &registries, &limits);
        if (r >= 0 && m->cni) {
                r = cni_reconfigure(m->cni, next.cni_bin_dirs, next.cni_timeout_usec);
                if (r < 0 && m->puller) { /* all or nothing: the puller goes back to what is in use */
                        PullLimits old = pull_limits(&m->config);
                        PullRegistries old_registries = pull_registries(&m->config);
                        (void) puller_reconfigure(m->puller, &old_registries, &old);
                }
        }
        manager_metrics_reload_finish(m, r >= 0);
        if (r < 0) {
                log_error_errno(r, "Reload failed: %m");
                config_done(&next);
                return;
        }
        swap_reloadable(&m->config, &next);
        log_set_max_level(m->config.log_level);
        /* next now holds the old values of what was applied: whatever else differs from before
         * was changed in a key that only a restart applies. */
        if (config_to_json(&next, &others) >= 0 && config_to_json(&m->config, &now) >= 0) {
                if (strcmp(others, before) != 0)
                        log_notice("Reload: keys other than [Registries], [Images], [CNI] BinDir=/PluginTimeoutSec=, "
                                   "[Metrics] and LogLevel= changed; they take effect at the next start.");
                free(m->config_json);
                m->config_json = TAKE_PTR(now);
        }
        config_done(&next);
        log_info("Reloaded the configuration: registries %s, mirrors %s, CNI plugins in %s, metrics %s%s.",
                 m->config.registry_insecure[0] ? m->config.registry_insecure : "(none insecure)",
                 m->config.registry_mirrors[0] ? m->config.registry_mirrors : "(none)", m->config.cni_bin_dirs,
                 manager_metrics_url(m) ? "on " : "off", manager_metrics_url(m) ?: "");
}

static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents) {
        Manager *m = w->data;

        /* Not fatal, as SIGHUP's default would be: a terminal closing must not stop the runtime. */
        log_info("Received SIGHUP: reloading the configuration.");
        manager_reload(m);
}

#define RECOVERY_TIMEOUT_USEC (5 * USEC_PER_SEC)

static void manager_recovered(void *userdata) {
        Manager *m = userdata;

        ev_timer_stop(m->loop, &m->recovery_timer);
        m->containers->all_confirmed = NULL;
        grpc_server_pause(m->server, false);
        if (m->teardown.enabled) {
                manager_teardown_maybe_begin(m);
                return;
        }
        (void) sd_notifyf(0, "READY=1\nSTATUS=Serving CRI on %s", m->socket_activated ? "passed socket" : m->config.listen);
}

static void recovery_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
        Manager *m = container_of(w, Manager, recovery_timer);

        log_warning("systemd has not said what became of %u container(s) within %llus; serving, with them UNKNOWN.",
                    m->containers->n_unconfirmed, (unsigned long long) (RECOVERY_TIMEOUT_USEC / USEC_PER_SEC));
        manager_recovered(m);
}

static void manager_start_signals(Manager *m) {
        ev_signal_init(&m->sigterm, signal_cb, SIGTERM);
        ev_signal_init(&m->sigint, signal_cb, SIGINT);
        ev_signal_init(&m->sighup, sighup_cb, SIGHUP);
        m->sigterm.data = m->sigint.data = m->sighup.data = m;
        ev_signal_start(m->loop, &m->sigterm);
        ev_signal_start(m->loop, &m->sigint);
        ev_signal_start(m->loop, &m->sighup);
        ev_timer_init(&m->shutdown_timer, shutdown_timeout_cb, 0., 0.);
}

static void manager_start_bus(Manager *m) {
        /* No bus is not fatal: we serve anyway, Status says why the runtime is not ready, and a timer
         * tries again. */
        if (manager_connect(m) < 0) {
                log_warning("%s; serving anyway, Status reports RuntimeReady=false.", m->bus_error);
                manager_schedule_reconnect(m);
        } else
                manager_ask_systemd(m);
}

/* The directories, what UpdateRuntimeConfig said before, CNI and the pods. */
static int manager_start_pods(Manager *m) {
        Error error = ERROR_INIT;
        int r;

        r = mkdir_p(m->config.root_dir, 0700);
        if (r >= 0)
                r = mkdir_p(m->config.state_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s or %s: %m", m->config.root_dir, m->config.state_dir);
        manager_load_runtime_state(m);
        /* The template may have changed while we were down. */
        if (cni_render_template(m->config.cni_conf_template, m->config.cni_conf_dir, m->pod_cidr, &error) < 0)
                log_warning("CNI: %s", error_text(&error));
        error_done(&error);
        m->pod_init = pod_find_init_binary();
        if (!m->pod_init)
                return log_error_errno(-ENOMEM, "Out of memory.");

        r = cni_new(m->loop, m->config.cni_conf_dir, m->config.cni_bin_dirs, m->config.cni_timeout_usec, &m->cni);
        if (r < 0)
                return log_error_errno(r, "Failed to set up CNI: %m");
        cni_set_observer(m->cni, manager_metrics_observe_cni, m);
        PodEnv env = {
                .loop = m->loop,
                .state_dir = m->config.state_dir,
                .root_dir = m->config.root_dir,
                .cni = m->cni,
                .pod_init = m->pod_init,
                .systemd = pod_env_systemd,
                .userdata = m,
        };
        r = pod_table_new(&env, &m->pods);
        if (r >= 0)
                r = pod_table_load(m->pods);
        if (r < 0)
                return log_error_errno(r, "Failed to read the pods in %s: %m", m->config.root_dir);
        return 0;
}

static int manager_start_images(Manager *m) {
        PullLimits limits = pull_limits(&m->config);
        PullRegistries registries = pull_registries(&m->config);
        int r;

        r = image_store_new(m->loop, m->config.root_dir, &m->images);
        if (r >= 0)
                r = puller_new(m->loop, m->images, &registries, &limits, &m->puller);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the image store in %s: %m", m->config.root_dir);
        puller_set_observer(m->puller, manager_metrics_observe_pull, m);
        return 0;
}

/* The containers, once the sockets (and with them the log pipes systemd kept) are there. Serving
 * waits for systemd's word on those that were running. */
static int manager_start_containers(Manager *m) {
        int r;

        CtrEnv cenv = {
                .loop = m->loop,
                .stored = &m->stored,
                .state_dir = m->config.state_dir,
                .root_dir = m->config.root_dir,
                .pods = m->pods,
                .images = m->images,
                .systemd = pod_env_systemd,
                .cgroup_root = ctr_env_cgroup_root,
                .userdata = m,
        };
        /* The daemon is the child subreaper: what a detached `runc exec` starts becomes its child,
         * watched through a pidfd (ExecSync); other orphans are reaped. */
        r = child_orphans_watch(m->loop);
        if (r < 0)
                return log_error_errno(r, "Failed to become the child subreaper: %m");
        r = ctr_table_new(&cenv, &m->containers);
        if (r >= 0) {
                CtrHandlerConfig handlers = {
                        .runtimes = m->config.runtimes,
                        .n_runtimes = m->config.n_runtimes,
                        .legacy_runtime = m->config.oci_runtime,
                        .default_runtime = m->config.default_runtime,
                };
                _cleanup_free_ char *why = NULL;
                r = ctr_handlers_init(m->containers, &handlers, &why);
                if (r < 0)
                        return why ? log_error_errno(r, "%s", why) : log_error_errno(r, "Failed to set up the runtime handlers: %m");
        }
        if (r >= 0)
                /* Before the load: what recovery learns (exits while the daemon was down) are
                 * events for the first subscribers. */
                r = cri_events_new(m, &m->events);
        if (r >= 0) {
                /* Until systemd says what became of the containers that were running, their state
                 * is not known: kubelet would kill and restart those it is told are UNKNOWN. So the
                 * calls wait in the socket's backlog for that answer (milliseconds), for at most
                 * RECOVERY_TIMEOUT_USEC; past it, what systemd has not answered for is UNKNOWN. */
                grpc_server_pause(m->server, true);
                m->containers->all_confirmed = manager_recovered;
                r = ctr_table_load(m->containers);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to read the containers in %s: %m", m->config.root_dir);
        if (m->containers->n_unconfirmed == 0)
                manager_recovered(m);
        else {
                log_debug("Waiting for systemd's word on %u container(s) before serving.", m->containers->n_unconfirmed);
                ev_timer_init(&m->recovery_timer, recovery_timeout_cb, (double) RECOVERY_TIMEOUT_USEC / USEC_PER_SEC, 0.);
                ev_timer_start(m->loop, &m->recovery_timer);
        }
        return 0;
}

int manager_start(Manager *m) {
        int r;

        manager_start_signals(m);
        manager_start_bus(m);
        r = manager_start_pods(m);
        if (r >= 0)
                r = manager_start_images(m);
        if (r < 0)
                return r;

        if (m->teardown.enabled) {
                /* Nothing is served, and no daemon may be serving on the same state. */
                r = manager_check_not_serving(m);
                if (r < 0)
                        return r;
                manager_teardown_maybe_begin(m);
                return manager_start_containers(m);
        }
        /* Before the CRI socket: a client that finds the daemon ready finds its metrics too. */
        r = manager_metrics_start(m);
        if (r < 0)
                return r;
        /* The log pipes systemd kept for us come with the sockets. */
        r = manager_listen(m);
        if (r < 0)
                return r;
        r = cri_stream_server_new(m, &m->streaming);
        if (r < 0)
                return log_error_errno(r, "Failed to start the streaming server on %s port %u: %m",
                                       m->config.stream_address, (unsigned) m->config.stream_port);
        log_info("Streaming server on %s.", stream_server_base_url(m->streaming));
        return manager_start_containers(m);
}

int manager_run(Manager *m) {
        ev_run(m->loop, 0);
        if (m->teardown.enabled)
                return m->teardown.began && m->teardown.failed == 0 ? 0 : -EIO;
        log_info("rktlet stopped.");
        return 0;
}
