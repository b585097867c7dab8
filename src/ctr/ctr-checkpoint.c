/* CheckpointContainer: whether criu works here (`criu check`, run once in a child and remembered),
 * then the OCI runtime's `checkpoint --leave-running` into a directory of the container's, tarred
 * to the caller's location, all in children. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "child.h"
#include "ctr-internal.h"
#include "fd-util.h"
#include "log.h"
#include "macro.h"
#include "quote.h"
#include "time-util.h"

typedef enum CriuState {
        CRIU_UNKNOWN,
        CRIU_CHECKING,
        CRIU_WORKS,
        CRIU_MISSING, /* not found, or `criu check` failed: why is in the message */
} CriuState;

typedef enum CheckpointStep {
        CP_PROBE,      /* waiting for `criu check` */
        CP_CHECKPOINT, /* runc checkpoint */
        CP_TAR,
        CP_CLEANUP, /* the image directory removed, in a child */
} CheckpointStep;

struct CtrCheckpoint {
        CtrCriu *criu;
        CtrCheckpoint *prev, *next;
        CheckpointStep step;
        char *id; /* the request's container id (or prefix) while probing; then the container's */
        char *location, *dir;
        uint64_t timeout_usec;
        Child *child;
        Error error;
        CtrCheckpointDone done;
        void *userdata;
};

struct CtrCriu {
        CtrTable *table;
        CriuState state;
        char *message;
        Child *child;
        CtrCheckpoint *ops;
};

static void cp_free(CtrCheckpoint *cp) {
        CtrCriu *k = cp->criu;

        if (cp->prev)
                cp->prev->next = cp->next;
        else
                k->ops = cp->next;
        if (cp->next)
                cp->next->prev = cp->prev;
        if (cp->child)
                child_abandon(cp->child);
        error_done(&cp->error);
        free(cp->id);
        free(cp->location);
        free(cp->dir);
        free(cp);
}

static void cp_finish(CtrCheckpoint *cp) {
        CtrCheckpointDone done = cp->done;
        void *userdata = cp->userdata;
        Error e = ERROR_INIT;

        error_move(&e, &cp->error);
        cp_free(cp);
        if (error_is_set(&e))
                log_warning("CheckpointContainer: %s", error_text(&e));
        if (done)
                done(error_is_set(&e) ? &e : NULL, userdata);
        error_done(&e);
}

CtrCriu *ctr_criu_free(CtrCriu *k) {
        if (!k)
                return NULL;
        while (k->ops) {
                k->ops->done = NULL;
                cp_free(k->ops);
        }
        if (k->child)
                child_abandon(k->child);
        free(k->message);
        free(k);
        return NULL;
}

/* The first "Error (file:line): what" line of criu's output, as "what". */
static char *criu_reason(const ChildResult *res) {
        const char *all[] = { res->err, res->out };
        char *s = NULL;

        for (size_t i = 0; i < ELEMENTSOF(all) && !s; i++) {
                const char *p = all[i], *e, *colon;
                if (!p || !(p = strstr(p, "Error (")))
                        continue;
                e = strchrnul(p, '\n');
                colon = strstr(p, "): ");
                if (colon && colon < e)
                        p = colon + 3;
                s = strndup(p, (size_t) (e - p));
        }
        if (!s && asprintf(&s, "exit status %d", res->exit_code) < 0)
                s = NULL;
        return s;
}

static int spawn_step(CtrCheckpoint *cp);
static int cp_resolve(CtrCheckpoint *cp, Error *error);

static void probe_next(CtrCheckpoint *cp) {
        CtrCriu *k = cp->criu;

        if (k->state != CRIU_WORKS) {
                (void) error_set(&cp->error, ERROR_UNSUPPORTED, EOPNOTSUPP,
                                 "CheckpointContainer is not available here: %s", k->message ?: "criu does not work");
                cp_finish(cp);
                return;
        }
        if (cp_resolve(cp, &cp->error) < 0) {
                cp_finish(cp);
                return;
        }
        cp->step = CP_CHECKPOINT;
        if (spawn_step(cp) < 0)
                cp_finish(cp);
}

static void criu_checked(Child *child, const ChildResult *res, void *userdata) {
        CtrCriu *k = userdata;
        _cleanup_free_ char *why = NULL;

        k->child = NULL;
        if (res->exit_code == 0)
                k->state = CRIU_WORKS;
        else {
                why = criu_reason(res);
                k->state = CRIU_MISSING;
                free(k->message);
                if (asprintf(&k->message, "criu check failed: %s", why ?: "?") < 0)
                        k->message = NULL;
        }
        log_info("criu %s%s.", k->state == CRIU_WORKS ? "works" : "does not work here: ",
                 k->state == CRIU_WORKS ? "" : (k->message ?: ""));
        /* Each waiter goes on (or ends); a finished one leaves the list. */
        for (CtrCheckpoint *cp = k->ops, *next; cp; cp = next) {
                next = cp->next;
                if (cp->step == CP_PROBE)
                        probe_next(cp);
        }
}

static char *find_in_path(const char *name) {
        const char *path = getenv("PATH") ?: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

        for (const char *p = path; *p;) {
                size_t n = strcspn(p, ":");
                char *f;
                if (n > 0 && asprintf(&f, "%.*s/%s", (int) n, p, name) >= 0) {
                        if (access(f, X_OK) == 0)
                                return f;
                        free(f);
                }
                p += n;
                if (*p == ':')
                        p++;
        }
        return NULL;
}

static int criu_probe(CtrCriu *k) {
        _cleanup_free_ char *criu = NULL;
        int r;

        if (k->state != CRIU_UNKNOWN)
                return 0;
        criu = find_in_path("criu");
        if (!criu) {
                k->state = CRIU_MISSING;
                return free_and_strdup(&k->message, "criu not found in $PATH");
        }
        {
                char *argv[] = { criu, "check", NULL };
                ChildSpec spec = { .argv = argv, .timeout_usec = CTR_CHILD_TIMEOUT_USEC, .max_output = 64 * 1024 };
                r = child_spawn(k->table->env.loop, &spec, criu_checked, k, &k->child);
        }
        if (r < 0)
                return r; /* tried again next time */
        k->state = CRIU_CHECKING;
        return 0;
}

/* --- the checkpoint itself ---------------------------------------------------------------------- */

static int rm_child(void *userdata) {
        return rm_rf(userdata);
}

static void step_done(Child *child, const ChildResult *res, void *userdata) {
        CtrCheckpoint *cp = userdata;

        cp->child = NULL;
        if (res->exit_code != 0 && cp->step != CP_CLEANUP) {
                const char *err = res->err_len ? res->err : res->out ?: "";
                size_t n = strlen(err);
                while (n > 0 && err[n - 1] == '\n')
                        n--;
                (void) error_set(&cp->error, ERROR_SYSTEM, EIO, "checkpoint container %s: %s: %.*s", cp->id,
                                 cp->step == CP_CHECKPOINT ? "runtime checkpoint" : "tar", (int) MIN(n, 2000), err);
        }
        if (cp->step == CP_CLEANUP) {
                cp_finish(cp);
                return;
        }
        cp->step = error_is_set(&cp->error) ? CP_CLEANUP : cp->step + 1;
        if (spawn_step(cp) < 0)
                cp_finish(cp);
}

static int spawn_step(CtrCheckpoint *cp) {
        CtrTable *t = cp->criu->table;
        _cleanup_free_ char *image = NULL, *work = NULL;
        _cleanup_(strv_freep) char **argv = NULL;
        ChildSpec spec = { .timeout_usec = cp->timeout_usec, .max_output = 64 * 1024 };
        int r = -ENOMEM;

        if (asprintf(&image, "%s/image", cp->dir) < 0 || asprintf(&work, "%s/work", cp->dir) < 0)
                goto fail;
        switch (cp->step) {
        case CP_CHECKPOINT: {
                /* The container may have gone since the call began: then there is nothing to checkpoint. */
                Container *c = ctr_find(t, cp->id);
                char *args[] = { "checkpoint", "--image-path", image, "--work-path", work, "--leave-running", cp->id,
                                 NULL };
                if (!c) {
                        r = -ENOENT;
                        goto fail;
                }
                if (!(argv = ctr_runtime_argv(c, args)))
                        goto fail;
                r = mkdir_p(image, 0700);
                if (r >= 0)
                        r = mkdir_p(work, 0700);
                if (r >= 0) {
                        spec.argv = argv;
                        r = child_spawn(t->env.loop, &spec, step_done, cp, &cp->child);
                }
                break;
        }
        case CP_TAR: {
                char *tar[] = { "tar", "-C", image, "-cf", cp->location, ".", NULL };
                spec.argv = tar;
                r = child_spawn(t->env.loop, &spec, step_done, cp, &cp->child);
                break;
        }
        case CP_CLEANUP:
                spec.setup = rm_child;
                spec.setup_userdata = cp->dir;
                r = child_spawn(t->env.loop, &spec, step_done, cp, &cp->child);
                break;
        default:
                assert(false);
        }
        if (r >= 0)
                return 0;
fail:
        (void) error_set(&cp->error, ERROR_SYSTEM, -r, "checkpoint container %s: %s", cp->id, strerror(-r));
        if (cp->step != CP_CLEANUP) {
                cp->step = CP_CLEANUP;
                return spawn_step(cp); /* the directory may be there */
        }
        return r;
}

/* The container the id names, running: what the checkpoint may go on with. */
static int cp_resolve(CtrCheckpoint *cp, Error *error) {
        CtrTable *t = cp->criu->table;
        Container *c;
        uint64_t rnd = 0;
        int r;

        if (!cp->id[0])
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "container_id is empty");
        if (cp->location[0] != '/')
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "location %s is no absolute path",
                                 QUOTE(cp->location));
        r = ctr_find_prefix(t, cp->id, &c);
        if (r == -ENOTUNIQ)
                return error_set(error, ERROR_INVALID_ARGUMENT, EINVAL, "container_id prefix %s is ambiguous",
                                 QUOTE(cp->id));
        if (r < 0)
                return error_set(error, ERROR_NOT_FOUND, ENOENT, "container_id %s does not exist", QUOTE(cp->id));
        if (c->removing || ctr_reported_state(c) != CTR_RUNNING)
                return error_set(error, ERROR_WRONG_STATE, 0, "container %s is %s, not running: it cannot be checkpointed",
                                 c->id, c->removing ? "being removed" : ctr_state_to_string(ctr_reported_state(c)));
        (void) getrandom(&rnd, sizeof rnd, GRND_NONBLOCK);
        free(cp->dir);
        if (free_and_strdup(&cp->id, c->id) < 0 ||
            asprintf(&cp->dir, "%s/containers/%s/checkpoint-%016llx", t->env.state_dir, c->id,
                     (unsigned long long) rnd) < 0) {
                cp->dir = NULL;
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        }
        return 0;
}

int ctr_checkpoint(CtrTable *t, const char *id, const char *location, uint64_t timeout_usec, CtrCheckpointDone done,
                   void *userdata, Error *error, CtrCheckpoint **ret) {
        CtrCriu *k;
        CtrCheckpoint *cp;
        int r;

        assert(t);
        if (!t->criu) {
                t->criu = calloc(1, sizeof *t->criu);
                if (!t->criu)
                        return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
                t->criu->table = t;
        }
        k = t->criu;
        /* Whether this host can checkpoint at all comes first: the method is not there otherwise
         * (while criu check runs, the request waits for it before it is judged). */
        r = criu_probe(k);
        if (r < 0)
                return error_set(error, ERROR_SYSTEM, -r, "CheckpointContainer: cannot run criu check: %s", strerror(-r));
        if (k->state == CRIU_MISSING)
                return error_set(error, ERROR_UNSUPPORTED, EOPNOTSUPP, "CheckpointContainer is not available here: %s",
                                 k->message ?: "criu does not work");
        cp = calloc(1, sizeof *cp);
        if (!cp)
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        cp->criu = k;
        cp->id = strdup(id ?: "");
        cp->location = strdup(location ?: "");
        cp->timeout_usec = timeout_usec ?: CTR_CHILD_TIMEOUT_USEC;
        cp->done = done;
        cp->userdata = userdata;
        cp->next = k->ops;
        if (k->ops)
                k->ops->prev = cp;
        k->ops = cp;
        if (!cp->id || !cp->location) {
                cp_free(cp);
                return error_set(error, ERROR_SYSTEM, ENOMEM, NULL);
        }
        if (k->state == CRIU_CHECKING) {
                cp->step = CP_PROBE;
                /* The container is looked for once criu answered. */
                if (ret)
                        *ret = cp;
                return 0;
        }
        r = cp_resolve(cp, error);
        if (r < 0) {
                cp_free(cp);
                return r;
        }
        cp->step = CP_CHECKPOINT;
        r = spawn_step(cp);
        if (r < 0) {
                error_move(error, &cp->error);
                cp_free(cp);
                return r;
        }
        if (ret)
                *ret = cp;
        return 0;
}

void ctr_checkpoint_detach(CtrCheckpoint *cp) {
        if (cp)
                cp->done = NULL;
}
