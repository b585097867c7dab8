/* A step machine for asynchronous operations on one object of the daemon (a container, a pod; next
 * exec and streaming sessions, event subscriptions): what runs, in which order, what the first
 * failure says, and how it ends. Nothing here knows what the object is.
 *
 * An operation is of a kind (OpKind): a table of steps indexed by step number, the numbers a
 * module's own enum gives them. A kind has the steps it lists; the others (NULL .run) are not its
 * own and are skipped. A step is started by the machine and ends by calling op_next() (go on with
 * the kind's next step) or op_goto() (go on with a given step; the kind's n_steps ends the
 * operation), now or from a callback later. A step that waits for an event just returns.
 *
 * The first op_fail() (or op_fail_error()) wins: its kind, errno and message are what the operation
 * reports (op_error() gives them as an Error). A kind with a
 * rollback turns its first failure before rollback_step into a jump there, once (a failed create
 * undoes what it made, then reports the create's error).
 *
 * Saves: a step that changes what recovery reads calls op_dirty(); the class's save() runs before
 * the next step starts (or the operation ends), so that whatever a step made exists on disk before
 * anything that depends on it happens. op_save() saves at once, where a step must be on disk before
 * it goes on within itself (a unit systemd is about to start).
 *
 * An operation ends once: op_finish() (by the machine, after the last step) unlinks it from its
 * object (class->unlink), logs the outcome, calls the caller back (class->notify, unless
 * op_detach() was called) and frees it (class->free). op_abort() drops it without a callback (daemon
 * shutdown): class->cancel() cancels what it waits for, the child it waits for is abandoned. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "child.h"
#include "error-chain.h"
#include "macro.h"

typedef struct Op Op;

typedef struct OpStep {
        const char *name; /* for logs and tests */
        void (*run)(Op *op);
} OpStep;

typedef struct OpKind {
        const char *name; /* "create", "run": in the log lines "<noun> <id>: <name> done." */
        const OpStep *steps;
        size_t n_steps;     /* a step number >= n_steps is the end */
        bool has_rollback;  /* the first failure before rollback_step jumps there, once */
        unsigned rollback_step;
        bool quiet;         /* its success is logged at debug level only */
} OpKind;

/* What the owner of an operation does for it. Every hook but notify and cancel is required. */
typedef struct OpClass {
        const char *noun;     /* "container", "pod" */
        const char *id_field; /* the journal field naming the object: "CONTAINER_ID" */
        /* The operation ends (aborted: without a callback): the object forgets it. */
        void (*unlink)(Op *op, bool aborted);
        /* Calls the caller's callback (op is unlinked, not yet freed): error is the first failure,
         * NULL on success. */
        void (*notify)(Op *op, const Error *error);
        /* Abort: cancels what the operation waits for (beside its child). */
        void (*cancel)(Op *op);
        /* Writes the object's record; a negative errno when it cannot. */
        int (*save)(Op *op);
        /* Frees the structure that embeds op, and what it owns. */
        void (*free)(Op *op);
        /* A kind with a rollback turns to it (op->message says why); optional. */
        void (*rolling_back)(Op *op);
} OpClass;

struct Op {
        const OpClass *class;
        const OpKind *kind;
        char id[65]; /* the object's, also once it is freed */
        unsigned step;
        bool rollback; /* the kind's rollback runs */
        bool dirty;    /* to be saved before the next step */
        bool detached; /* nobody is called back */
        Error error;   /* the first failure: what the operation reports */
        Child *child;  /* the child the step waits for, abandoned by op_abort() */
};

/* Sets up op (embedded in the owner's structure, zeroed) for a run of kind; it starts with
 * op_start(). */
void op_init(Op *op, const OpClass *class, const OpKind *kind, const char *id);
/* A zeroed structure of size bytes that begins with an Op, set up by op_init(); NULL on OOM. */
void *op_new(size_t size, const OpClass *class, const OpKind *kind, const char *id);
/* Runs step (or the first of the kind's steps after it). */
void op_start(Op *op, unsigned step);
/* The current step is done: the next step of the kind (or its rollback) runs. */
void op_next(Op *op);
/* Goes on with step (or the first of the kind's steps after it; n_steps or more: the end). */
void op_goto(Op *op, unsigned step);
/* Records a failure, unless one was recorded before; error >= 0 counts as -EIO. Its kind is the one
 * the errno implies (ERROR_SYSTEM). */
void op_fail(Op *op, int error, const char *format, ...) _printf_(3, 4);
/* The same with a kind of the caller's (ERROR_WRONG_STATE, ERROR_UNAVAILABLE…). */
void op_fail_kind(Op *op, ErrorKind kind, int error, const char *format, ...) _printf_(4, 5);
/* The same with error's kind, errno and text. */
void op_fail_error(Op *op, const Error *error);
/* The same with the message "<format>: <error's text>". */
void op_fail_wrap(Op *op, const Error *error, const char *format, ...) _printf_(3, 4);
/* The object changed in a way recovery must see: saved before the next step. */
void op_dirty(Op *op);
/* Saves now (a warning when it cannot). */
void op_save(Op *op);
/* The caller is no longer interested: the operation completes without calling it back. */
void op_detach(Op *op);
/* Ends the operation now, whatever step it is at (see above). */
void op_finish(Op *op);
/* Drops it without a callback (daemon shutdown): what was done is on disk. */
void op_abort(Op *op);
/* The name of the current step ("end" past the last). */
const char *op_step_name(const Op *op);
