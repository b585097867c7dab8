/* Live updates of a running container's resources: the unit's properties (SetUnitProperties),
 * then the OCI runtime's `update` for the cgroup controllers the systemd manager does not own; a
 * failure puts the old values back in both, in the reverse order. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "ctr-internal.h"
#include "log.h"
#include "macro.h"
#include "op.h"
#include "time-util.h"


typedef enum UpdateStep {
        UPD_SYSTEMD,
        UPD_RUNTIME,
        UPD_APPLIED,
        /* the rollback */
        UPD_RB_RUNTIME,
        UPD_RB_SYSTEMD,
        _UPD_STEP_MAX,
} UpdateStep;

struct CtrUpdate {
        Op op;
        Container *c;
        CtrDone done;
        void *userdata;
        SystemdOp *sd;
        CtrResources asked; /* which values change (non-zero ones) and to what */
        CtrResources old;   /* what they were */
        bool systemd_applied, runtime_ran;
};

static CtrUpdate *upd(Op *o) {
        return container_of(o, CtrUpdate, op);
}

/* --- values -------------------------------------------------------------------------------------- */

int ctr_resources_check(const CtrResources *r, Error *error) {
        assert(r);
        if (r->cpu_shares != 0 && (r->cpu_shares < 2 || r->cpu_shares > 262144))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "cpu_shares %" PRIi64 " is not in 2…262144",
                                 r->cpu_shares);
        if (r->cpu_quota != 0 && r->cpu_quota != -1 && (r->cpu_quota < 1000 || r->cpu_quota > INT64_MAX / 1000000))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "cpu_quota %" PRIi64 " is neither -1 nor at least 1000 (µs)", r->cpu_quota);
        if (r->cpu_period != 0 && (r->cpu_period < 1000 || r->cpu_period > 1000000))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "cpu_period %" PRIi64 " is not in 1000…1000000 (µs)",
                                 r->cpu_period);
        if (r->memory_limit < -1)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "memory_limit_in_bytes %" PRIi64 " is negative",
                                 r->memory_limit);
        if (r->memory_swap_limit < -1)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "memory_swap_limit_in_bytes %" PRIi64 " is negative", r->memory_swap_limit);
        if (r->memory_swap_limit > 0 && (r->memory_limit == -1 || r->memory_swap_limit < r->memory_limit))
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                 "memory_swap_limit_in_bytes %" PRIi64 " is below memory_limit_in_bytes %" PRIi64
                                 " (it counts memory and swap together)",
                                 r->memory_swap_limit, r->memory_limit);
        if (r->pids_limit < -1)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "the pids limit %" PRIi64 " is negative",
                                 r->pids_limit);
        for (int i = 0; i < 2; i++) {
                const char *s = i == 0 ? r->cpuset_cpus : r->cpuset_mems;
                int k = systemd_cpuset_check(s);

                if (k == -ENOMEM)
                        return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
                if (k < 0)
                        return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL,
                                         "%s '%s' is no list of numbers and ranges below %d (\"0-3,7\")",
                                         i == 0 ? "cpuset_cpus" : "cpuset_mems", s, SYSTEMD_CPUSET_MAX);
        }
        return 0;
}

void ctr_resources_done(CtrResources *r) {
        if (!r)
                return;
        free(r->cpuset_cpus);
        free(r->cpuset_mems);
        *r = (CtrResources) {};
}

static int resources_copy(CtrResources *dst, const CtrResources *src) {
        *dst = *src;
        dst->cpuset_cpus = src->cpuset_cpus && src->cpuset_cpus[0] ? strdup(src->cpuset_cpus) : NULL;
        dst->cpuset_mems = src->cpuset_mems && src->cpuset_mems[0] ? strdup(src->cpuset_mems) : NULL;
        if ((src->cpuset_cpus && src->cpuset_cpus[0] && !dst->cpuset_cpus) ||
            (src->cpuset_mems && src->cpuset_mems[0] && !dst->cpuset_mems)) {
                ctr_resources_done(dst);
                return -ENOMEM;
        }
        return 0;
}

/* The values an update or its rollback writes: for each field the update touches, v's (0 there:
 * the default, no limit). */
typedef struct Target {
        const CtrResources *v, *touched;
        int64_t period; /* the period a quota goes with */
} Target;

static bool touches_cpu_quota(const CtrResources *t) {
        return t->cpu_quota != 0 || t->cpu_period != 0;
}

static uint64_t limit_or_infinity(int64_t v) {
        return v > 0 ? (uint64_t) v : UINT64_MAX;
}

static int append_properties(sd_bus_message *m, void *userdata) {
        const Target *t = userdata;
        const CtrResources *v = t->v, *touched = t->touched;
        int r = 0;

        if (touched->cpu_shares)
                /* UINT64_MAX: systemd's "unset", the default weight. */
                r = sd_bus_message_append(m, "(sv)", "CPUWeight", "t",
                                          v->cpu_shares > 0 ? systemd_shares_to_weight(v->cpu_shares) : UINT64_MAX);
        if (r >= 0 && touches_cpu_quota(touched))
                r = sd_bus_message_append(m, "(sv)(sv)", "CPUQuotaPerSecUSec", "t",
                                          v->cpu_quota > 0 ? (uint64_t) v->cpu_quota * USEC_PER_SEC / (uint64_t) t->period
                                                           : UINT64_MAX,
                                          "CPUQuotaPeriodUSec", "t", (uint64_t) t->period);
        if (r >= 0 && touched->memory_limit)
                r = sd_bus_message_append(m, "(sv)", "MemoryMax", "t", limit_or_infinity(v->memory_limit));
        if (r >= 0 && touched->pids_limit)
                r = sd_bus_message_append(m, "(sv)", "TasksMax", "t", limit_or_infinity(v->pids_limit));
        if (r >= 0 && touched->cpuset_cpus)
                r = systemd_append_cpuset(m, "AllowedCPUs", v->cpuset_cpus);
        if (r >= 0 && touched->cpuset_mems)
                r = systemd_append_cpuset(m, "AllowedMemoryNodes", v->cpuset_mems);
        return r;
}

/* The OCI runtime's LinuxResources JSON for `update --resources -`. A cpuset that was not set
 * before cannot be put back (the runtime takes no "unset"): a rollback leaves it out. */
static char *runtime_json(const Target *t, bool rollback) {
        const CtrResources *v = t->v, *touched = t->touched;
        char *s = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&s, &n);
        bool cpu = touched->cpu_shares || touches_cpu_quota(touched) || touched->cpuset_cpus || touched->cpuset_mems;
        const char *sep = "";

        if (!f)
                return NULL;
        fputc('{', f);
        if (cpu) {
                const char *s2 = "";
                fputs("\"cpu\":{", f);
                if (touched->cpu_shares) {
                        fprintf(f, "\"shares\":%" PRIi64, v->cpu_shares > 0 ? v->cpu_shares : 1024);
                        s2 = ",";
                }
                if (touches_cpu_quota(touched)) {
                        fprintf(f, "%s\"quota\":%" PRIi64 ",\"period\":%" PRIi64, s2,
                                v->cpu_quota > 0 ? v->cpu_quota : -1, t->period);
                        s2 = ",";
                }
                /* Checked lists: digits, commas and dashes only. */
                if (touched->cpuset_cpus && v->cpuset_cpus && v->cpuset_cpus[0]) {
                        fprintf(f, "%s\"cpus\":\"%s\"", s2, v->cpuset_cpus);
                        s2 = ",";
                }
                if (touched->cpuset_mems && v->cpuset_mems && v->cpuset_mems[0])
                        fprintf(f, "%s\"mems\":\"%s\"", s2, v->cpuset_mems);
                fputc('}', f);
                sep = ",";
        }
        if (touched->memory_limit || touched->memory_swap_limit) {
                const char *s2 = "";
                fprintf(f, "%s\"memory\":{", sep);
                if (touched->memory_limit) {
                        fprintf(f, "\"limit\":%" PRIi64, v->memory_limit > 0 ? v->memory_limit : -1);
                        s2 = ",";
                }
                if (touched->memory_swap_limit || rollback)
                        fprintf(f, "%s\"swap\":%" PRIi64, s2, v->memory_swap_limit > 0 ? v->memory_swap_limit : -1);
                fputc('}', f);
                sep = ",";
        }
        if (touched->pids_limit)
                fprintf(f, "%s\"pids\":{\"limit\":%" PRIi64 "}", sep, v->pids_limit > 0 ? v->pids_limit : -1);
        fputc('}', f);
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

/* What the update writes: the asked values over the old ones. */
static int new_values(const CtrUpdate *u, CtrResources *ret) {
        const CtrResources *a = &u->asked, *o = &u->old;
        CtrResources v = *o;

        v.cpuset_cpus = a->cpuset_cpus ?: o->cpuset_cpus;
        v.cpuset_mems = a->cpuset_mems ?: o->cpuset_mems;
#define PICK(f) v.f = a->f != 0 ? a->f : o->f
        PICK(cpu_shares);
        PICK(cpu_quota);
        PICK(cpu_period);
        PICK(memory_limit);
        PICK(memory_swap_limit);
        PICK(pids_limit);
#undef PICK
        return resources_copy(ret, &v);
}

static void target_init(Target *t, const CtrResources *v, const CtrResources *touched) {
        *t = (Target) { .v = v, .touched = touched, .period = v->cpu_period > 0 ? v->cpu_period : 100000 };
}

/* --- the steps ----------------------------------------------------------------------------------- */

static void properties_set(const Error *error, void *userdata) {
        CtrUpdate *u = userdata;

        u->sd = NULL;
        if (u->op.step == UPD_SYSTEMD) {
                if (error_is_set(error))
                        op_fail_wrap(&u->op, error, "update container %s: set the unit's properties", u->op.id);
                else
                        u->systemd_applied = true;
        } else if (error_is_set(error))
                log_warning("container %s: cannot put the unit's old properties back: %s", u->op.id, error_text(error));
        op_next(&u->op);
}

static void set_properties(CtrUpdate *u, const CtrResources *v) {
        Container *c = u->c;
        SystemdClient *sd = c->table->env.systemd(c->table->env.userdata);
        _cleanup_free_ char *unit = ctr_unit_name(c);
        Target t;
        int r = -ENOMEM;

        target_init(&t, v, &u->asked);
        if (!sd)
                r = -ENOTCONN;
        else if (unit)
                r = systemd_set_unit_properties(sd, unit, append_properties, &t, CTR_SYSTEMD_TIMEOUT_USEC,
                                                properties_set, u, &u->sd);
        if (r >= 0)
                return;
        if (u->op.step == UPD_SYSTEMD) {
                if (r == -ENOTCONN)
                        op_fail_kind(&u->op, ERROR_UNAVAILABLE, r, "update container %s: systemd is unreachable", u->op.id);
                else
                        op_fail(&u->op, r, "update container %s: SetUnitProperties: %s", u->op.id, strerror(-r));
        } else
                log_warning_errno(r, "container %s: cannot put the unit's old properties back: %m", u->op.id);
        op_next(&u->op);
}

static void step_systemd(Op *o) {
        CtrUpdate *u = upd(o);
        CtrResources v;

        if (new_values(u, &v) < 0) {
                op_fail(o, -ENOMEM, "update container %s: out of memory", o->id);
                op_next(o);
                return;
        }
        set_properties(u, &v);
        ctr_resources_done(&v);
}

/* The runtime's error line: logrus's msg="…" when it is there, else its whole stderr. */
static void runtime_message(const ChildResult *res, char *buf, size_t size) {
        const char *err = res->err && res->err_len ? res->err : res->out ?: "";
        const char *msg = strstr(err, "msg=\"");
        size_t n;

        if (msg) {
                const char *end;
                msg += 5;
                end = strstr(msg, "\"\n") ?: strrchr(msg, '"') ?: msg + strlen(msg);
                n = (size_t) (end - msg);
        } else {
                msg = err;
                n = strlen(msg);
                while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                        n--;
        }
        if (n == 0) {
                if (res->signal)
                        snprintf(buf, size, "killed by signal %d%s", res->signal, res->timed_out ? " (timed out)" : "");
                else
                        snprintf(buf, size, "exit status %d", res->exit_code);
                return;
        }
        snprintf(buf, size, "%.*s", (int) MIN(n, size - 1), msg);
}

static void runtime_updated(Child *child, const ChildResult *res, void *userdata) {
        CtrUpdate *u = userdata;
        char msg[1024];

        u->op.child = NULL;
        if (res->exit_code == 0) {
                op_next(&u->op);
                return;
        }
        runtime_message(res, msg, sizeof msg);
        if (u->op.step != UPD_RUNTIME)
                log_warning("container %s: cannot put the old limits back: %s update: %s", u->op.id,
                            u->c->runtime, msg);
        else if (strstr(msg, "unable to set memory limit") || strstr(msg, "device or resource busy"))
                /* The kernel's EBUSY: the cgroup could not be reclaimed below the new limit. */
                op_fail_kind(&u->op, ERROR_WRONG_STATE, EBUSY,
                             "update container %s: the kernel refused the memory limit (EBUSY: usage above it "
                             "could not be reclaimed): %s",
                             u->op.id, msg);
        else
                op_fail(&u->op, -EIO, "update container %s: %s update: %s", u->op.id, u->c->runtime, msg);
        op_next(&u->op);
}

static void run_runtime(CtrUpdate *u, const CtrResources *v, bool rollback) {
        Container *c = u->c;
        _cleanup_free_ char *json = NULL;
        _cleanup_(strv_freep) char **argv = NULL;
        char *args[] = { "update", "--resources", "-", c->id, NULL };
        Target t;
        int r = -ENOMEM;

        target_init(&t, v, &u->asked);
        json = runtime_json(&t, rollback);
        if (json && (argv = ctr_runtime_argv(c, args))) {
                ChildSpec spec = { .argv = argv, .stdin_data = json, .stdin_len = strlen(json),
                                   .timeout_usec = CTR_CHILD_TIMEOUT_USEC, .max_output = 16 * 1024 };
                log_debug("container %s: %s update %s", c->id, c->runtime, json);
                r = child_spawn(c->table->env.loop, &spec, runtime_updated, u, &u->op.child);
        }
        if (r >= 0) {
                if (!rollback)
                        u->runtime_ran = true;
                return;
        }
        if (!rollback)
                op_fail(&u->op, r, "update container %s: cannot run %s update: %s", u->op.id, c->runtime,
                        strerror(-r));
        else
                log_warning_errno(r, "container %s: cannot put the old limits back: %m", u->op.id);
        op_next(&u->op);
}

static void step_runtime(Op *o) {
        CtrUpdate *u = upd(o);
        CtrResources v;

        if (u->c->state != CTR_RUNNING) {
                op_fail_kind(o, ERROR_WRONG_STATE, 0, "update container %s: it exited meanwhile", o->id);
                op_next(o);
                return;
        }
        if (new_values(u, &v) < 0) {
                op_fail(o, -ENOMEM, "update container %s: out of memory", o->id);
                op_next(o);
                return;
        }
        run_runtime(u, &v, false);
        ctr_resources_done(&v);
}

static int replace_str(char **p, const char *s) {
        char *n = strdup(s);
        if (!n)
                return -ENOMEM;
        free(*p);
        *p = n;
        return 0;
}

static void step_applied(Op *o) {
        CtrUpdate *u = upd(o);
        Container *c = u->c;
        CtrResources v;

        if (new_values(u, &v) < 0 || (v.cpuset_cpus && replace_str(&c->cpuset_cpus, v.cpuset_cpus) < 0) ||
            (v.cpuset_mems && replace_str(&c->cpuset_mems, v.cpuset_mems) < 0)) {
                /* Applied, and not recorded: said, and the old values reported until the next update. */
                log_warning("container %s: out of memory recording its new resources", c->id);
        } else {
                c->cpu_shares = v.cpu_shares;
                c->cpu_quota = v.cpu_quota;
                c->cpu_period = v.cpu_period;
                c->memory_limit = v.memory_limit;
                c->memory_swap_limit = v.memory_swap_limit;
                c->pids_limit = v.pids_limit;
                op_dirty(o);
        }
        ctr_resources_done(&v);
        op_goto(o, _UPD_STEP_MAX);
}

static void step_rb_runtime(Op *o) {
        CtrUpdate *u = upd(o);

        /* The runtime may have written some controllers before one refused: its old values go back
         * when it ran at all. */
        if (!u->runtime_ran || u->c->state != CTR_RUNNING) {
                op_next(o);
                return;
        }
        run_runtime(u, &u->old, true);
}

static void step_rb_systemd(Op *o) {
        CtrUpdate *u = upd(o);

        if (!u->systemd_applied) {
                op_next(o);
                return;
        }
        set_properties(u, &u->old);
}

static const OpStep update_steps[_UPD_STEP_MAX] = {
        [UPD_SYSTEMD] = { "unit-properties", step_systemd },
        [UPD_RUNTIME] = { "runtime-update", step_runtime },
        [UPD_APPLIED] = { "applied", step_applied },
        [UPD_RB_RUNTIME] = { "runtime-rollback", step_rb_runtime },
        [UPD_RB_SYSTEMD] = { "unit-properties-rollback", step_rb_systemd },
};

static const OpKind update_kind = {
        .name = "update",
        .steps = update_steps,
        .n_steps = _UPD_STEP_MAX,
        .has_rollback = true,
        .rollback_step = UPD_RB_RUNTIME,
};

/* --- the class ----------------------------------------------------------------------------------- */

static void upd_unlink(Op *o, bool aborted) {
        CtrUpdate *u = upd(o);

        u->c->busy = false;
        u->c->update = NULL;
}

static void upd_notify(Op *o, const Error *error) {
        CtrUpdate *u = upd(o);
        if (u->done)
                u->done(u->c, error, u->userdata);
}

static void upd_cancel(Op *o) {
        systemd_op_cancel(TAKE_PTR(upd(o)->sd));
}

static int upd_save(Op *o) {
        return ctr_save(upd(o)->c);
}

static void upd_free(Op *o) {
        CtrUpdate *u = upd(o);

        ctr_resources_done(&u->asked);
        ctr_resources_done(&u->old);
        free(u);
}

static const OpClass update_class = {
        .noun = "container",
        .id_field = "CONTAINER_ID",
        .unlink = upd_unlink,
        .notify = upd_notify,
        .cancel = upd_cancel,
        .save = upd_save,
        .free = upd_free,
};

int ctr_update_resources(Container *c, const CtrResources *r, CtrDone done, void *userdata, Error *error,
                         CtrUpdate **ret) {
        CtrResources old = {
                .cpu_shares = c->cpu_shares,
                .cpu_quota = c->cpu_quota,
                .cpu_period = c->cpu_period,
                .memory_limit = c->memory_limit,
                .memory_swap_limit = c->memory_swap_limit,
                .pids_limit = c->pids_limit,
                .cpuset_cpus = c->cpuset_cpus,
                .cpuset_mems = c->cpuset_mems,
        };
        CtrUpdate *u;
        int k;

        assert(c && r);
        k = ctr_resources_check(r, error);
        if (k < 0)
                return k;
        if (c->busy)
                return error_set(error, ERROR_CONFLICT, EBUSY, "container %s is busy with another operation; try again",
                                 c->id);
        if (c->removing || ctr_reported_state(c) != CTR_RUNNING)
                return error_set(error, ERROR_WRONG_STATE, 0,
                                 "container %s is %s, not running: only a running container's resources are updated",
                                 c->id, c->removing ? "being removed" : ctr_state_to_string(ctr_reported_state(c)));
        u = op_new(sizeof *u, &update_class, &update_kind, c->id);
        if (!u)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        if (resources_copy(&u->asked, r) < 0 || resources_copy(&u->old, &old) < 0) {
                upd_free(&u->op);
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        }
        /* A memory limit with no swap limit for a container whose swap was held to its memory (no
         * swap, as kubelet asks): the swap limit follows, else the kernel would refuse a memory
         * limit above the old memory + swap one. */
        if (u->asked.memory_limit && !u->asked.memory_swap_limit && old.memory_swap_limit > 0 &&
            old.memory_swap_limit == old.memory_limit)
                u->asked.memory_swap_limit = u->asked.memory_limit;
        u->c = c;
        u->done = done;
        u->userdata = userdata;
        c->busy = true;
        c->update = u;
        if (ret)
                *ret = u;
        op_start(&u->op, UPD_SYSTEMD);
        return 0;
}

void ctr_update_detach(CtrUpdate *u) {
        if (u)
                op_detach(&u->op);
}

void ctr_update_abort(CtrUpdate *u) {
        if (u)
                op_abort(&u->op);
}
