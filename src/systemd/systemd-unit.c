/* Asynchronous unit jobs on systemd: StartTransientUnit and StopUnit, each finished by its
 * JobRemoved signal, with a deadline. */
#include "systemd-unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"

struct SystemdOp {
        SystemdClient *client;
        SystemdOp *prev, *next;
        sd_bus_slot *call_slot;
        char *job; /* object path once systemd accepted the job */
        char *unit;
        ev_timer timer;
        SystemdOpDone done;
        void *userdata;
        bool no_job; /* a plain call (KillUnit, ResetFailedUnit): its reply finishes it */
};

struct SystemdClient {
        struct ev_loop *loop;
        sd_bus *bus;
        sd_bus_slot *job_removed_slot;
        sd_bus_slot *subscribe_slot;
        SystemdOp *ops;
};

static void op_free(SystemdOp *op) {
        SystemdClient *c = op->client;

        if (op->prev)
                op->prev->next = op->next;
        else
                c->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        ev_timer_stop(c->loop, &op->timer);
        sd_bus_slot_unref(op->call_slot);
        free(op->job);
        free(op->unit);
        free(op);
}

static void op_finish(SystemdOp *op, int error, const char *message) {
        SystemdOpDone done = op->done;
        void *userdata = op->userdata;

        op_free(op);
        done(error, message, userdata);
}

void systemd_op_cancel(SystemdOp *op) {
        if (op)
                op_free(op);
}

static int job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdClient *c = userdata;
        const char *job, *unit, *result;
        uint32_t id;
        char message[512];

        if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
                return 0;
        for (SystemdOp *op = c->ops; op; op = op->next) {
                if (!op->job || strcmp(op->job, job) != 0)
                        continue;
                if (strcmp(result, "done") == 0) {
                        op_finish(op, 0, NULL);
                } else {
                        snprintf(message, sizeof message, "job for %s ended with result '%s'", unit, result);
                        op_finish(op, -EIO, message);
                }
                break;
        }
        return 0;
}

static int call_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdOp *op = userdata;
        const char *job;
        char message[512];

        op->call_slot = sd_bus_slot_unref(op->call_slot);
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                int error = -EIO;

                if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.UnitExists"))
                        error = -EEXIST;
                else if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit"))
                        error = -ENOENT;
                else if (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) ||
                         sd_bus_error_has_name(e, SD_BUS_ERROR_TIMEOUT))
                        error = -ETIMEDOUT;
                snprintf(message, sizeof message, "%s: %s: %s", op->unit, e->name, e->message ?: "");
                op_finish(op, error, message);
                return 0;
        }
        if (op->no_job) {
                op_finish(op, 0, NULL);
                return 0;
        }
        if (sd_bus_message_read(m, "o", &job) < 0 || !(op->job = strdup(job))) {
                op_finish(op, -EIO, "unexpected reply from systemd");
                return 0;
        }
        /* Now JobRemoved finishes it. systemd sends the reply before the job can complete, and the
         * bus keeps the order, so the signal cannot have passed already. */
        return 0;
}

static void op_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
        SystemdOp *op = container_of(w, SystemdOp, timer);
        char message[256];

        snprintf(message, sizeof message, "%s: systemd did not finish the job in time", op->unit);
        op_finish(op, -ETIMEDOUT, message);
}

static int op_new(SystemdClient *c, const char *unit, uint64_t timeout_usec, SystemdOpDone done,
                  void *userdata, SystemdOp **ret) {
        SystemdOp *op = calloc(1, sizeof *op);

        if (!op)
                return -ENOMEM;
        op->unit = strdup(unit);
        if (!op->unit) {
                free(op);
                return -ENOMEM;
        }
        op->client = c;
        op->done = done;
        op->userdata = userdata;
        ev_timer_init(&op->timer, op_timeout, (double) (timeout_usec ?: 90 * 1000000ULL) / 1e6, 0.);
        ev_timer_start(c->loop, &op->timer);
        op->next = c->ops;
        if (c->ops)
                c->ops->prev = op;
        c->ops = op;
        *ret = op;
        return 0;
}

/* Sends m (whatever r says about building it) as the job of a new op; takes m. */
static int op_submit(SystemdClient *c, const char *name, sd_bus_message *m, int r, uint64_t timeout_usec,
                     SystemdOpDone done, void *userdata, SystemdOp **ret) {
        SystemdOp *op = NULL;

        if (r >= 0)
                r = op_new(c, name, timeout_usec, done, userdata, &op);
        if (r >= 0) {
                r = sd_bus_call_async(c->bus, &op->call_slot, m, call_reply, op, 0);
                if (r < 0)
                        op_free(op);
        }
        sd_bus_message_unref(m);
        if (r < 0)
                return r;
        if (ret)
                *ret = op;
        return 0;
}

int systemd_start_transient_unit(SystemdClient *c, const char *name, SystemdAppendProperties append,
                                 void *append_userdata, uint64_t timeout_usec, SystemdOpDone done,
                                 void *userdata, SystemdOp **ret) {
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                           "org.freedesktop.systemd1.Manager", "StartTransientUnit");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", name, "fail");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0 && append)
                r = append(m, append_userdata);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "a(sa(sv))", 0);
        return op_submit(c, name, m, r, timeout_usec, done, userdata, ret);
}

int systemd_stop_unit(SystemdClient *c, const char *name, uint64_t timeout_usec, SystemdOpDone done,
                      void *userdata, SystemdOp **ret) {
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                           "org.freedesktop.systemd1.Manager", "StopUnit");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", name, "replace");
        return op_submit(c, name, m, r, timeout_usec, done, userdata, ret);
}

/* A method on the manager that answers without a job: the reply ends the op. */
static int submit_call(SystemdClient *c, const char *name, sd_bus_message *m, int r, uint64_t timeout_usec,
                       SystemdOpDone done, void *userdata, SystemdOp **ret) {
        SystemdOp *op = NULL;

        r = op_submit(c, name, m, r, timeout_usec, done, userdata, &op);
        if (r < 0)
                return r;
        op->no_job = true;
        if (ret)
                *ret = op;
        return 0;
}

int systemd_kill_unit(SystemdClient *c, const char *name, const char *who, int signo, uint64_t timeout_usec,
                      SystemdOpDone done, void *userdata, SystemdOp **ret) {
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                           "org.freedesktop.systemd1.Manager", "KillUnit");
        if (r >= 0)
                r = sd_bus_message_append(m, "ssi", name, who, (int32_t) signo);
        return submit_call(c, name, m, r, timeout_usec, done, userdata, ret);
}

int systemd_reset_failed_unit(SystemdClient *c, const char *name, uint64_t timeout_usec, SystemdOpDone done,
                              void *userdata, SystemdOp **ret) {
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                           "org.freedesktop.systemd1.Manager", "ResetFailedUnit");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", name);
        return submit_call(c, name, m, r, timeout_usec, done, userdata, ret);
}

/* --- watching a service ---------------------------------------------------------------------------- */

struct SystemdWatch {
        sd_bus *bus; /* its own reference: a watch may outlive the client */
        char *unit, *path;
        sd_bus_slot *match_slot, *get_slot;
        bool again; /* a change arrived while a GetAll was in flight */
        SystemdUnitChanged changed;
        void *userdata;
};

static int read_service_properties(sd_bus_message *m, SystemdServiceInfo *info) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name, *contents;
                char type;

                if ((r = sd_bus_message_read(m, "s", &name)) < 0 || (r = sd_bus_message_peek_type(m, &type, &contents)) < 0)
                        return r;
                if (strcmp(name, "MainPID") == 0 && strcmp(contents, "u") == 0)
                        r = sd_bus_message_read(m, "v", "u", &info->main_pid);
                else if (strcmp(name, "ExecMainCode") == 0 && strcmp(contents, "i") == 0)
                        r = sd_bus_message_read(m, "v", "i", &info->exec_main_code);
                else if (strcmp(name, "ExecMainStatus") == 0 && strcmp(contents, "i") == 0)
                        r = sd_bus_message_read(m, "v", "i", &info->exec_main_status);
                else if (strcmp(name, "ControlPID") == 0 && strcmp(contents, "u") == 0)
                        r = sd_bus_message_read(m, "v", "u", &info->control_pid);
                else if (strcmp(name, "ExecMainPID") == 0 && strcmp(contents, "u") == 0)
                        r = sd_bus_message_read(m, "v", "u", &info->exec_main_pid);
                else if (strcmp(name, "ExecMainStartTimestamp") == 0 && strcmp(contents, "t") == 0)
                        r = sd_bus_message_read(m, "v", "t", &info->exec_main_start_usec);
                else if (strcmp(name, "ExecMainExitTimestamp") == 0 && strcmp(contents, "t") == 0)
                        r = sd_bus_message_read(m, "v", "t", &info->exec_main_exit_usec);
                else if (strcmp(name, "Result") == 0 && strcmp(contents, "s") == 0) {
                        const char *s;
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r >= 0)
                                snprintf(info->result, sizeof info->result, "%s", s);
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                if ((r = sd_bus_message_exit_container(m)) < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static void watch_get(SystemdWatch *w);

static int watch_got(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdWatch *w = userdata;
        SystemdServiceInfo info = {};
        int r;

        w->get_slot = sd_bus_slot_unref(w->get_slot);
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                log_debug("systemd: properties of %s: %s: %s", w->unit, e->name, e->message ?: "");
                if (!sd_bus_error_has_names(e, "org.freedesktop.systemd1.NoSuchUnit",
                                            "org.freedesktop.DBus.Error.UnknownObject",
                                            "org.freedesktop.DBus.Error.UnknownInterface")) {
                        /* No answer (a timeout, a busy manager), which says nothing of the unit: ask
                         * again while the bus lasts; a new bus watches anew. */
                        if (sd_bus_is_open(w->bus) > 0)
                                watch_get(w);
                        return 0;
                }
                info.gone = true;
        } else {
                r = read_service_properties(m, &info);
                if (r < 0) {
                        log_debug_errno(r, "systemd: cannot read the properties of %s: %m", w->unit);
                        return 0;
                }
        }
        if (w->again) {
                w->again = false;
                watch_get(w);
                return 0;
        }
        w->changed(w, &info, w->userdata);
        return 0;
}

static void watch_get(SystemdWatch *w) {
        int r;

        if (w->get_slot) {
                w->again = true;
                return;
        }
        r = sd_bus_call_method_async(w->bus, &w->get_slot, "org.freedesktop.systemd1", w->path,
                                     "org.freedesktop.DBus.Properties", "GetAll", watch_got, w, "s",
                                     "org.freedesktop.systemd1.Service");
        if (r < 0)
                log_warning_errno(r, "systemd: cannot ask for the properties of %s: %m", w->unit);
}

void systemd_watch_refresh(SystemdWatch *w) {
        if (w)
                watch_get(w);
}

static int watch_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        watch_get(userdata);
        return 0;
}

int systemd_watch_service(SystemdClient *c, const char *name, SystemdUnitChanged changed, void *userdata,
                          SystemdWatch **ret) {
        SystemdWatch *w = calloc(1, sizeof *w);
        int r;

        if (!w)
                return -ENOMEM;
        w->bus = sd_bus_ref(c->bus);
        w->changed = changed;
        w->userdata = userdata;
        w->unit = strdup(name);
        if (!w->unit) {
                systemd_watch_free(w);
                return -ENOMEM;
        }
        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", name, &w->path);
        if (r >= 0)
                /* Installed before any job on the unit is sent, on the same connection: no change is
                 * missed. */
                r = sd_bus_match_signal_async(c->bus, &w->match_slot, "org.freedesktop.systemd1", w->path,
                                              "org.freedesktop.DBus.Properties", "PropertiesChanged", watch_signal,
                                              NULL, w);
        if (r < 0) {
                systemd_watch_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

SystemdWatch *systemd_watch_free(SystemdWatch *w) {
        if (!w)
                return NULL;
        sd_bus_slot_unref(w->match_slot);
        sd_bus_slot_unref(w->get_slot);
        sd_bus_unref(w->bus);
        free(w->unit);
        free(w->path);
        free(w);
        return NULL;
}

static int subscribed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdClient *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        c->subscribe_slot = sd_bus_slot_unref(c->subscribe_slot);
        if (e)
                log_warning("systemd: Subscribe failed, unit jobs will time out: %s: %s", e->name, e->message ?: "");
        return 0;
}

int systemd_client_new(struct ev_loop *loop, sd_bus *bus, SystemdClient **ret) {
        SystemdClient *c = calloc(1, sizeof *c);
        int r;

        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->bus = sd_bus_ref(bus);
        r = sd_bus_match_signal_async(bus, &c->job_removed_slot, "org.freedesktop.systemd1",
                                      "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                                      "JobRemoved", job_removed, NULL, c);
        if (r >= 0)
                /* Without a subscriber systemd does not emit job signals. */
                r = sd_bus_call_method_async(bus, &c->subscribe_slot, "org.freedesktop.systemd1",
                                             "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                                             "Subscribe", subscribed, c, NULL);
        if (r < 0) {
                systemd_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

SystemdClient *systemd_client_free(SystemdClient *c) {
        if (!c)
                return NULL;
        while (c->ops)
                op_finish(c->ops, -ECONNRESET, "the connection to systemd was lost");
        sd_bus_slot_unref(c->job_removed_slot);
        sd_bus_slot_unref(c->subscribe_slot);
        sd_bus_unref(c->bus);
        free(c);
        return NULL;
}

bool systemd_unit_name_valid(const char *name, const char *suffix) {
        size_t n = strlen(name), k = strlen(suffix);

        if (n <= k || n > 255 || strcmp(name + n - k, suffix) != 0)
                return false;
        for (size_t i = 0; i < n - k; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.\\-@", name[i]))
                        return false;
        if (strcmp(suffix, ".slice") == 0) {
                /* "-" separates levels: no empty level. "-.slice" is the root slice. */
                if (strcmp(name, "-.slice") == 0)
                        return true;
                if (name[0] == '-' || name[n - k - 1] == '-' || strstr(name, "--") || strchr(name, '@'))
                        return false;
        }
        return true;
}
