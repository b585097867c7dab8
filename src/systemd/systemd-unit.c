/* Asynchronous unit jobs on systemd: StartTransientUnit and StopUnit, each finished by its
 * JobRemoved signal, with a deadline; services watched through PropertiesChanged. The client
 * outlives its bus: what a dropped connection, or systemd leaving the bus, may have lost is asked
 * again once systemd is back. */
#include "systemd-unit.h"

#include <assert.h>
#include <stddef.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "time-util.h"
#include "macro.h"
#include "strv.h"

#define SYSTEMD_NAME "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define UNIT_PATH_PREFIX "/org/freedesktop/systemd1/unit"

typedef enum OpKind {
        OP_START,        /* StartTransientUnit, then its job */
        OP_STOP,         /* StopUnit, then its job */
        OP_KILL,         /* KillUnit: the reply ends it */
        OP_RESET_FAILED, /* ResetFailedUnit: the reply ends it */
        OP_SET_PROPERTIES, /* SetUnitProperties (runtime): the reply ends it */
        _OP_KIND_MAX,
        _OP_KIND_INVALID = -EINVAL,
} OpKind;

static const char *const op_kind_names[_OP_KIND_MAX] = {
        [OP_START] = "start",
        [OP_STOP] = "stop",
        [OP_KILL] = "kill",
        [OP_RESET_FAILED] = "reset-failed",
};

struct SystemdOp {
        SystemdClient *client;
        SystemdOp *prev, *next;
        OpKind kind;
        sd_bus_slot *call_slot;  /* the method call, until its reply */
        sd_bus_slot *check_slot; /* OP_START after a loss: the unit's Job, ActiveState, LoadState */
        char *job;               /* object path once systemd accepted the job */
        char *unit;
        ev_timer timer;
        SystemdOpDone done;
        void *userdata;
        /* The reply or the JobRemoved signal may have gone with the bus, or with systemd leaving
         * it: recovered (op_recover()) once systemd is on the bus again. */
        bool lost;
        uint64_t start_usec;
};

struct SystemdWatch {
        SystemdClient *client; /* NULL once the client is freed */
        SystemdWatch *prev, *next;
        char *unit, *path;
        sd_bus_slot *match_slot, *get_slot;
        bool again; /* a change arrived while a GetAll was in flight */
        SystemdUnitChanged changed;
        void *userdata;
};

struct SystemdClient {
        struct ev_loop *loop;
        sd_bus *bus; /* NULL between a drop and the next attach */
        sd_bus_slot *job_removed_slot, *owner_match_slot, *owner_slot, *subscribe_slot;
        char *owner;         /* systemd's unique name on the bus; NULL while it is not there, or not known */
        unsigned generation; /* how many times systemd appeared on a bus of this client */
        char *down;          /* why the last bus dropped, for messages */
        SystemdOp *ops;
        SystemdWatch *watches;
        SystemdReady ready;
        void *ready_userdata;
        SystemdObserve observe;
        void *observe_userdata;
};

static void watch_get(SystemdWatch *w);
static int watch_match(SystemdWatch *w);

static void *mfree(void *p) {
        free(p);
        return NULL;
}

/* --- ops ----------------------------------------------------------------------------------------- */

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
        sd_bus_slot_unref(op->check_slot);
        free(op->job);
        free(op->unit);
        free(op);
}

static void op_finish(SystemdOp *op, int error, const char *message) {
        SystemdOpDone done = op->done;
        void *userdata = op->userdata;
        /* message is borrowed for the call: the callback gets a const Error. */
        Error e = { .kind = ERROR_SYSTEM, .errno_value = -error, .message = (char *) message };
        SystemdClient *c = op->client;

        if (c->observe)
                c->observe(op_kind_names[op->kind], error >= 0, now_usec(CLOCK_MONOTONIC) - op->start_usec,
                           c->observe_userdata);
        op_free(op);
        done(error < 0 ? &e : NULL, userdata);
}

static void op_finishf(SystemdOp *op, int error, const char *format, ...) _printf_(3, 4);
static void op_finishf(SystemdOp *op, int error, const char *format, ...) {
        char message[768];
        va_list ap;

        va_start(ap, format);
        vsnprintf(message, sizeof message, format, ap);
        va_end(ap);
        op_finish(op, error, message);
}

void systemd_op_cancel(SystemdOp *op) {
        if (op)
                op_free(op);
}

/* Why systemd cannot be heard now, for messages. */
static const char *client_why(SystemdClient *c) {
        if (!c->bus)
                return c->down ?: "the bus to systemd dropped";
        return "systemd left the bus";
}

/* An error reply that says nothing of the call, only that the bus or systemd went away before
 * answering it: the question is asked again once systemd is back. */
static bool answer_lost(SystemdClient *c, sd_bus_message *m) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        if (!c || !c->bus || sd_bus_message_get_bus(m) != c->bus || sd_bus_is_open(c->bus) <= 0)
                return true; /* sd-bus failing the calls of a connection that closed */
        if (c->generation == 0)
                return false; /* systemd was never seen: a failure to report */
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                return true; /* systemd is not on the bus (re-executing, or the bus is new) */
        /* "Message recipient disconnected from message bus without replying": systemd left. */
        return sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) && !c->owner;
}

static int job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdClient *c = userdata;
        const char *job, *unit, *result;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
                return 0;
        for (SystemdOp *op = c->ops; op; op = op->next) {
                if (!op->job || strcmp(op->job, job) != 0)
                        continue;
                if (strcmp(result, "done") == 0)
                        op_finish(op, 0, NULL);
                else
                        op_finishf(op, -EIO, "job for %s ended with result '%s'", unit, result);
                break;
        }
        return 0;
}

static int call_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdOp *op = userdata;
        const char *job;

        op->call_slot = sd_bus_slot_unref(op->call_slot);
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                int error = -EIO;

                if (answer_lost(op->client, m)) {
                        log_debug("systemd: %s: the answer was lost (%s: %s), asking again once systemd is back",
                                  op->unit, e->name, e->message ?: "");
                        op->lost = true;
                        return 0;
                }
                if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.UnitExists"))
                        error = -EEXIST;
                else if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit"))
                        error = -ENOENT;
                else if (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) ||
                         sd_bus_error_has_name(e, SD_BUS_ERROR_TIMEOUT))
                        error = -ETIMEDOUT;
                op_finishf(op, error, "%s: %s: %s", op->unit, e->name, e->message ?: "");
                return 0;
        }
        if (op->kind == OP_KILL || op->kind == OP_RESET_FAILED || op->kind == OP_SET_PROPERTIES) {
                op_finish(op, 0, NULL);
                return 0;
        }
        if (sd_bus_message_read(m, "o", &job) < 0 || free_and_strdup(&op->job, job) < 0) {
                op_finish(op, -EIO, "unexpected reply from systemd");
                return 0;
        }
        /* Now JobRemoved finishes it. systemd sends the reply before the job can complete, and the
         * bus keeps the order, so the signal cannot have passed already. */
        return 0;
}

static void op_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
        SystemdOp *op = container_of(w, SystemdOp, timer);
        SystemdClient *c = op->client;

        if (!c->bus || !c->owner || op->lost)
                op_finishf(op, -ETIMEDOUT, "%s: %s, and systemd was not back before the job's deadline", op->unit,
                           client_why(c));
        else
                op_finishf(op, -ETIMEDOUT, "%s: systemd did not finish the job in time", op->unit);
}

static int op_new(SystemdClient *c, OpKind kind, const char *unit, uint64_t timeout_usec, SystemdOpDone done,
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
        op->kind = kind;
        op->start_usec = now_usec(CLOCK_MONOTONIC);
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

static int new_manager_call(SystemdClient *c, const char *member, sd_bus_message **ret) {
        if (!c->bus)
                return -ENOTCONN;
        return sd_bus_message_new_method_call(c->bus, ret, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, member);
}

/* Sends m (whatever r says about building it) as the call of a new op; takes m. */
static int op_submit(SystemdClient *c, OpKind kind, const char *name, sd_bus_message *m, int r,
                     uint64_t timeout_usec, SystemdOpDone done, void *userdata, SystemdOp **ret) {
        SystemdOp *op = NULL;

        if (r >= 0)
                r = op_new(c, kind, name, timeout_usec, done, userdata, &op);
        if (r >= 0) {
                r = sd_bus_call_async(c->bus, &op->call_slot, m, call_reply, op, 0);
                if (r < 0 && sd_bus_is_open(c->bus) <= 0) {
                        /* The connection broke under the write, or was closing already: the call
                         * is as lost as one in flight, and recovered the same way. */
                        log_debug_errno(r, "systemd: %s: the bus dropped as the call was sent: %m", name);
                        op->lost = true;
                        r = 0;
                } else if (r < 0)
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

        r = new_manager_call(c, "StartTransientUnit", &m);
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
        return op_submit(c, OP_START, name, m, r, timeout_usec, done, userdata, ret);
}

/* StopUnit and ResetFailedUnit: what systemd is asked again when the answer was lost. */
static int build_idempotent_call(SystemdClient *c, OpKind kind, const char *name, sd_bus_message **ret) {
        sd_bus_message *m = NULL;
        int r;

        assert(kind == OP_STOP || kind == OP_RESET_FAILED);
        r = new_manager_call(c, kind == OP_STOP ? "StopUnit" : "ResetFailedUnit", &m);
        if (r >= 0)
                r = kind == OP_STOP ? sd_bus_message_append(m, "ss", name, "replace")
                                    : sd_bus_message_append(m, "s", name);
        if (r < 0) {
                sd_bus_message_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

int systemd_stop_unit(SystemdClient *c, const char *name, uint64_t timeout_usec, SystemdOpDone done,
                      void *userdata, SystemdOp **ret) {
        sd_bus_message *m = NULL;
        int r = build_idempotent_call(c, OP_STOP, name, &m);

        return op_submit(c, OP_STOP, name, m, r, timeout_usec, done, userdata, ret);
}

int systemd_kill_unit(SystemdClient *c, const char *name, const char *who, int signo, uint64_t timeout_usec,
                      SystemdOpDone done, void *userdata, SystemdOp **ret) {
        sd_bus_message *m = NULL;
        int r;

        r = new_manager_call(c, "KillUnit", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "ssi", name, who, (int32_t) signo);
        return op_submit(c, OP_KILL, name, m, r, timeout_usec, done, userdata, ret);
}

int systemd_reset_failed_unit(SystemdClient *c, const char *name, uint64_t timeout_usec, SystemdOpDone done,
                              void *userdata, SystemdOp **ret) {
        sd_bus_message *m = NULL;
        int r = build_idempotent_call(c, OP_RESET_FAILED, name, &m);

        return op_submit(c, OP_RESET_FAILED, name, m, r, timeout_usec, done, userdata, ret);
}

int systemd_set_unit_properties(SystemdClient *c, const char *name, SystemdAppendProperties append,
                                void *append_userdata, uint64_t timeout_usec, SystemdOpDone done, void *userdata,
                                SystemdOp **ret) {
        sd_bus_message *m = NULL;
        int r;

        r = new_manager_call(c, "SetUnitProperties", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "sb", name, 1); /* runtime: gone with the unit */
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0 && append)
                r = append(m, append_userdata);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return op_submit(c, OP_SET_PROPERTIES, name, m, r, timeout_usec, done, userdata, ret);
}

/* --- what a loss leaves to check ------------------------------------------------------------------ */

typedef struct UnitState {
        uint32_t job_id;
        char job[256];
        char active_state[32], load_state[32];
} UnitState;

/* Reads an a{sv} of properties: one(m, name, contents, userdata) reads the variant of each
 * property it knows and returns 1, or 0 to have it skipped. */
static int read_properties(sd_bus_message *m, int (*one)(sd_bus_message *m, const char *name, const char *contents,
                                                         void *userdata),
                           void *userdata) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name, *contents;
                char type;

                if ((r = sd_bus_message_read(m, "s", &name)) < 0 || (r = sd_bus_message_peek_type(m, &type, &contents)) < 0)
                        return r;
                r = one(m, name, contents, userdata);
                if (r == 0)
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

static int read_str(sd_bus_message *m, char *buf, size_t size) {
        const char *str;
        int r = sd_bus_message_read(m, "v", "s", &str);

        if (r >= 0)
                snprintf(buf, size, "%s", str);
        return r < 0 ? r : 1;
}

static int unit_state_one(sd_bus_message *m, const char *name, const char *contents, void *userdata) {
        UnitState *s = userdata;
        const char *str;
        int r;

        if (strcmp(name, "Job") == 0 && strcmp(contents, "(uo)") == 0) {
                r = sd_bus_message_read(m, "v", "(uo)", &s->job_id, &str);
                if (r >= 0)
                        snprintf(s->job, sizeof s->job, "%s", str);
                return r < 0 ? r : 1;
        }
        if (strcmp(name, "ActiveState") == 0 && strcmp(contents, "s") == 0)
                return read_str(m, s->active_state, sizeof s->active_state);
        if (strcmp(name, "LoadState") == 0 && strcmp(contents, "s") == 0)
                return read_str(m, s->load_state, sizeof s->load_state);
        return 0;
}

static int read_unit_state(sd_bus_message *m, UnitState *s) {
        return read_properties(m, unit_state_one, s);
}

/* The truth about an OP_START whose answer may have been lost: its job still queued (waited for),
 * or gone, and then the unit's state says how it went. */
static int start_checked(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdOp *op = userdata;
        UnitState s = {};
        int r;

        op->check_slot = sd_bus_slot_unref(op->check_slot);
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);

                if (answer_lost(op->client, m)) {
                        op->lost = true; /* checked again when systemd is back */
                        return 0;
                }
                op_finishf(op, -EIO, "%s: systemd was lost and came back, but the unit cannot be checked: %s: %s",
                           op->unit, e->name, e->message ?: "");
                return 0;
        }
        r = read_unit_state(m, &s);
        if (r < 0) {
                op_finishf(op, -EIO, "%s: unexpected properties from systemd: %s", op->unit, strerror(-r));
                return 0;
        }
        if (s.job_id != 0 && (!op->job || strcmp(op->job, s.job) == 0)) {
                /* Still queued (or, when the reply was lost, queued by our call): JobRemoved ends it,
                 * on this connection that subscribed before asking. */
                if (free_and_strdup(&op->job, s.job) < 0)
                        op_finish(op, -ENOMEM, "out of memory");
                else
                        log_debug("systemd: %s: job %s is still queued after the loss, waiting for it", op->unit,
                                  op->job);
                return 0;
        }
        if (!op->job && (strcmp(s.load_state, "not-found") == 0 || s.load_state[0] == '\0')) {
                op_finishf(op, -ECONNRESET, "%s: the bus to systemd dropped before systemd took the job", op->unit);
                return 0;
        }
        if (strcmp(s.active_state, "active") == 0 || strcmp(s.active_state, "reloading") == 0) {
                op_finish(op, 0, NULL);
                return 0;
        }
        op_finishf(op, -EIO, "the job for %s ended while rktlet could not hear from systemd, leaving the unit %s (%s)",
                   op->unit, s.active_state[0] ? s.active_state : "?", s.load_state[0] ? s.load_state : "?");
        return 0;
}

/* systemd is on the bus again: what op was waiting for may have been lost. Returns false when it
 * finished op. */
static bool op_recover(SystemdOp *op) {
        SystemdClient *c = op->client;
        sd_bus_message *m = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        op->lost = false;
        op->call_slot = sd_bus_slot_unref(op->call_slot);
        op->check_slot = sd_bus_slot_unref(op->check_slot);
        switch (op->kind) {
        case OP_KILL:
                /* Not sent again: the signal may have been delivered, and a second one is not harmless
                 * (a second SIGINT is a forced quit for many programs). The caller looks at the unit. */
                op_finishf(op, -ECONNRESET, "%s: KillUnit got no answer: %s", op->unit, client_why(c));
                return false;
        case OP_SET_PROPERTIES:
                /* Not sent again either: the properties are the caller's, who decides (an update
                 * rolls back what else it applied). */
                op_finishf(op, -ECONNRESET, "%s: SetUnitProperties got no answer: %s", op->unit, client_why(c));
                return false;
        case OP_STOP:
        case OP_RESET_FAILED:
                /* Asked again: a stop merges with one still queued, and ends at once on a stopped
                 * unit; NoSuchUnit when the unit is gone, which is what a stop means. */
                op->job = mfree(op->job);
                r = build_idempotent_call(c, op->kind, op->unit, &m);
                if (r >= 0)
                        r = sd_bus_call_async(c->bus, &op->call_slot, m, call_reply, op, 0);
                sd_bus_message_unref(m);
                break;
        case OP_START:
                r = sd_bus_path_encode(UNIT_PATH_PREFIX, op->unit, &path);
                if (r >= 0)
                        r = sd_bus_call_method_async(c->bus, &op->check_slot, SYSTEMD_NAME, path,
                                                     "org.freedesktop.DBus.Properties", "GetAll", start_checked, op,
                                                     "s", "org.freedesktop.systemd1.Unit");
                break;
        default:
                assert(false);
                r = -EINVAL;
        }
        if (r < 0) {
                op_finishf(op, r, "%s: cannot ask systemd again after the loss: %s", op->unit, strerror(-r));
                return false;
        }
        return true;
}

/* --- systemd on the bus --------------------------------------------------------------------------- */

static int subscribed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdClient *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        c->subscribe_slot = sd_bus_slot_unref(c->subscribe_slot);
        if (!e || sd_bus_error_has_name(e, "org.freedesktop.systemd1.AlreadySubscribed"))
                return 0;
        if (answer_lost(c, m))
                log_debug("systemd: Subscribe: %s: %s; again when systemd is back", e->name, e->message ?: "");
        else
                log_warning("systemd: Subscribe failed, unit jobs will time out: %s: %s", e->name, e->message ?: "");
        return 0;
}

static void systemd_gone(SystemdClient *c);

/* systemd (again) owns its name on the bus: subscribe on this connection, re-read every watched
 * unit and recover what the loss may have taken. */
static void systemd_here(SystemdClient *c, const char *owner) {
        unsigned generation;
        int r;

        if (c->owner && strcmp(c->owner, owner) == 0)
                return;
        systemd_gone(c); /* another owner, and no word of the last one leaving */
        if (free_and_strdup(&c->owner, owner) < 0)
                return; /* out of memory: the next signal or the deadlines will do */
        generation = ++c->generation;
        log_debug("systemd: %s owns %s (appearance %u).", owner, SYSTEMD_NAME, generation);

        /* Without a subscriber systemd emits neither job nor unit signals. Sent before the checks
         * below: systemd handles them in order, so nothing it emits after a check is missed. */
        c->subscribe_slot = sd_bus_slot_unref(c->subscribe_slot);
        r = sd_bus_call_method_async(c->bus, &c->subscribe_slot, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                     "Subscribe", subscribed, c, NULL);
        if (r < 0)
                log_warning_errno(r, "systemd: cannot subscribe to its signals: %m");

        for (SystemdWatch *w = c->watches; w; w = w->next)
                watch_get(w);

        /* op_recover() may finish an op, whose callback may start or cancel others: start over from
         * the head after each, until no op is left lost. */
        for (bool again = true; again;) {
                again = false;
                for (SystemdOp *op = c->ops; op; op = op->next)
                        if (op->lost) {
                                if (!op_recover(op))
                                        again = true;
                                if (again || c->generation != generation || !c->bus)
                                        break;
                        }
                if (c->generation != generation || !c->bus)
                        return; /* a callback saw the bus go, or systemd go and come */
        }
        if (c->ready)
                c->ready(c, generation, c->ready_userdata);
}

static void systemd_gone(SystemdClient *c) {
        if (!c->owner)
                return;
        log_debug("systemd: %s left the bus.", SYSTEMD_NAME);
        c->owner = mfree(c->owner);
        /* Its JobRemoved signals could be missed until it is back (calls in flight say so in their
         * error replies): each job is checked then. */
        for (SystemdOp *op = c->ops; op; op = op->next)
                if (op->job)
                        op->lost = true;
}

static int owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdClient *c = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || strcmp(name, SYSTEMD_NAME) != 0)
                return 0;
        if (new_owner[0] == '\0')
                systemd_gone(c);
        else
                systemd_here(c, new_owner);
        return 0;
}

static int got_owner(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdClient *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        const char *owner;

        c->owner_slot = sd_bus_slot_unref(c->owner_slot);
        if (e) {
                if (sd_bus_is_open(c->bus) <= 0)
                        return 0;
                if (sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                        log_debug("systemd: not on the bus yet, waiting for it.");
                        return 0; /* NameOwnerChanged says when it comes */
                }
                /* A bus that will not say: carry on as if systemd were there. */
                log_warning("systemd: cannot ask the bus who owns %s: %s: %s", SYSTEMD_NAME, e->name,
                            e->message ?: "");
                systemd_here(c, "?");
                return 0;
        }
        if (sd_bus_message_read(m, "s", &owner) >= 0)
                systemd_here(c, owner);
        return 0;
}

/* --- the client ----------------------------------------------------------------------------------- */

int systemd_client_new(struct ev_loop *loop, SystemdClient **ret) {
        SystemdClient *c = calloc(1, sizeof *c);

        if (!c)
                return -ENOMEM;
        c->loop = loop;
        *ret = c;
        return 0;
}

void systemd_client_set_ready(SystemdClient *c, SystemdReady ready, void *userdata) {
        c->ready = ready;
        c->ready_userdata = userdata;
}

void systemd_client_set_observer(SystemdClient *c, SystemdObserve observe, void *userdata) {
        c->observe = observe;
        c->observe_userdata = userdata;
}

/* Lets go of the bus: every slot on it, and the bus. Ops and watches stay. */
static void client_drop_bus(SystemdClient *c) {
        c->job_removed_slot = sd_bus_slot_unref(c->job_removed_slot);
        c->owner_match_slot = sd_bus_slot_unref(c->owner_match_slot);
        c->owner_slot = sd_bus_slot_unref(c->owner_slot);
        c->subscribe_slot = sd_bus_slot_unref(c->subscribe_slot);
        c->owner = mfree(c->owner);
        for (SystemdWatch *w = c->watches; w; w = w->next) {
                w->match_slot = sd_bus_slot_unref(w->match_slot);
                w->get_slot = sd_bus_slot_unref(w->get_slot);
                w->again = false; /* all are read again when systemd is back */
        }
        for (SystemdOp *op = c->ops; op; op = op->next) {
                op->call_slot = sd_bus_slot_unref(op->call_slot);
                op->check_slot = sd_bus_slot_unref(op->check_slot);
                op->lost = true;
        }
        c->bus = sd_bus_unref(c->bus);
}

int systemd_client_attach(SystemdClient *c, sd_bus *bus) {
        int r;

        assert(!c->bus);
        c->bus = sd_bus_ref(bus);
        /* Matches first, then the question: the bus handles them in order, so systemd's name cannot
         * change unseen between the two. */
        r = sd_bus_match_signal_async(bus, &c->job_removed_slot, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                      "JobRemoved", job_removed, NULL, c);
        if (r >= 0)
                r = sd_bus_add_match_async(bus, &c->owner_match_slot,
                                           "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                           "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                           "arg0='" SYSTEMD_NAME "'",
                                           owner_changed, NULL, c);
        for (SystemdWatch *w = c->watches; w && r >= 0; w = w->next)
                r = watch_match(w);
        if (r >= 0)
                r = sd_bus_call_method_async(bus, &c->owner_slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                             "org.freedesktop.DBus", "GetNameOwner", got_owner, c, "s", SYSTEMD_NAME);
        if (r < 0) {
                client_drop_bus(c);
                return r;
        }
        return 0;
}

void systemd_client_detach(SystemdClient *c, const char *why) {
        if (!c)
                return;
        (void) free_and_strdup(&c->down, why);
        client_drop_bus(c);
        /* A KillUnit or SetUnitProperties whose answer is lost fails now (see op_recover()); the rest
         * wait for systemd. */
        for (bool again = true; again;) {
                again = false;
                for (SystemdOp *op = c->ops; op; op = op->next)
                        if (op->kind == OP_KILL || op->kind == OP_SET_PROPERTIES) {
                                op_finishf(op, -ECONNRESET, "%s: %s got no answer: %s", op->unit,
                                           op->kind == OP_KILL ? "KillUnit" : "SetUnitProperties", client_why(c));
                                again = true;
                                break;
                        }
        }
}

SystemdClient *systemd_client_free(SystemdClient *c) {
        if (!c)
                return NULL;
        while (c->ops)
                op_finish(c->ops, -ECONNRESET, "the connection to systemd was lost");
        client_drop_bus(c);
        while (c->watches) {
                SystemdWatch *w = c->watches;
                c->watches = w->next;
                w->prev = w->next = NULL;
                w->client = NULL;
        }
        free(c->owner);
        free(c->down);
        free(c);
        return NULL;
}

/* --- watching a service ---------------------------------------------------------------------------- */

static int service_one(sd_bus_message *m, const char *name, const char *contents, void *userdata) {
        SystemdServiceInfo *info = userdata;
        static const struct {
                const char *name, *type;
                size_t offset;
        } fields[] = {
                { "MainPID", "u", offsetof(SystemdServiceInfo, main_pid) },
                { "ExecMainCode", "i", offsetof(SystemdServiceInfo, exec_main_code) },
                { "ExecMainStatus", "i", offsetof(SystemdServiceInfo, exec_main_status) },
                { "ControlPID", "u", offsetof(SystemdServiceInfo, control_pid) },
                { "ExecMainPID", "u", offsetof(SystemdServiceInfo, exec_main_pid) },
                { "ExecMainStartTimestamp", "t", offsetof(SystemdServiceInfo, exec_main_start_usec) },
                { "ExecMainExitTimestamp", "t", offsetof(SystemdServiceInfo, exec_main_exit_usec) },
        };

        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (strcmp(name, fields[i].name) == 0 && strcmp(contents, fields[i].type) == 0) {
                        int r = sd_bus_message_read(m, "v", fields[i].type, (uint8_t *) info + fields[i].offset);
                        return r < 0 ? r : 1;
                }
        if (strcmp(name, "Result") == 0 && strcmp(contents, "s") == 0)
                return read_str(m, info->result, sizeof info->result);
        return 0;
}

static int read_service_properties(sd_bus_message *m, SystemdServiceInfo *info) {
        return read_properties(m, service_one, info);
}

static int watch_got(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdWatch *w = userdata;
        SystemdServiceInfo info = {};
        int r;

        w->get_slot = sd_bus_slot_unref(w->get_slot);
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                log_debug("systemd: properties of %s: %s: %s", w->unit, e->name, e->message ?: "");
                if (answer_lost(w->client, m)) {
                        w->again = false; /* read again when systemd is back */
                        return 0;
                }
                if (!sd_bus_error_has_names(e, "org.freedesktop.systemd1.NoSuchUnit",
                                            "org.freedesktop.DBus.Error.UnknownObject",
                                            "org.freedesktop.DBus.Error.UnknownInterface")) {
                        /* No answer (a timeout, a busy manager), which says nothing of the unit: ask
                         * again. */
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
        SystemdClient *c = w->client;
        int r;

        if (w->get_slot) {
                w->again = true;
                return;
        }
        /* Without systemd on the bus the answer would say nothing: every watch is read when it is
         * there (again). */
        if (!c || !c->bus || !c->owner || sd_bus_is_open(c->bus) <= 0)
                return;
        r = sd_bus_call_method_async(c->bus, &w->get_slot, SYSTEMD_NAME, w->path, "org.freedesktop.DBus.Properties",
                                     "GetAll", watch_got, w, "s", "org.freedesktop.systemd1.Service");
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

/* The watch's match on the client's bus. Installed before any job on the unit is sent, on the same
 * connection: no change is missed. */
static int watch_match(SystemdWatch *w) {
        return sd_bus_match_signal_async(w->client->bus, &w->match_slot, SYSTEMD_NAME, w->path,
                                         "org.freedesktop.DBus.Properties", "PropertiesChanged", watch_signal, NULL,
                                         w);
}

int systemd_watch_service(SystemdClient *c, const char *name, SystemdUnitChanged changed, void *userdata,
                          SystemdWatch **ret) {
        SystemdWatch *w = calloc(1, sizeof *w);
        int r;

        if (!w)
                return -ENOMEM;
        w->client = c;
        w->changed = changed;
        w->userdata = userdata;
        w->next = c->watches;
        if (c->watches)
                c->watches->prev = w;
        c->watches = w;
        w->unit = strdup(name);
        if (!w->unit) {
                systemd_watch_free(w);
                return -ENOMEM;
        }
        r = sd_bus_path_encode(UNIT_PATH_PREFIX, name, &w->path);
        if (r >= 0 && c->bus)
                r = watch_match(w);
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
        if (w->client) {
                if (w->prev)
                        w->prev->next = w->next;
                else
                        w->client->watches = w->next;
                if (w->next)
                        w->next->prev = w->prev;
        }
        sd_bus_slot_unref(w->match_slot);
        sd_bus_slot_unref(w->get_slot);
        free(w->unit);
        free(w->path);
        free(w);
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
