/* The generic step machine: see op.h. */
#include "op.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void op_init(Op *op, const OpClass *class, const OpKind *kind, const char *id) {
        assert(op);
        assert(class && class->unlink && class->save && class->free);
        assert(kind && kind->steps);
        assert(id);

        op->class = class;
        op->kind = kind;
        snprintf(op->id, sizeof op->id, "%s", id);
        op->step = 0;
}

void *op_new(size_t size, const OpClass *class, const OpKind *kind, const char *id) {
        Op *op;

        assert(size >= sizeof(Op));
        op = calloc(1, size);
        if (op)
                op_init(op, class, kind, id);
        return op;
}

/* The first step of the kind at or after step; n_steps when there is none. */
static unsigned first_from(const Op *op, unsigned step) {
        while (step < op->kind->n_steps && !op->kind->steps[step].run)
                step++;
        return MIN(step, (unsigned) op->kind->n_steps);
}

static void run(Op *op, unsigned step) {
        op->step = first_from(op, step);
        if (op->dirty)
                op_save(op);
        if (op->step >= op->kind->n_steps) {
                op_finish(op);
                return;
        }
        op->kind->steps[op->step].run(op);
}

void op_start(Op *op, unsigned step) {
        assert(op && op->kind);
        run(op, step);
}

void op_next(Op *op) {
        const OpKind *k;

        assert(op);
        k = op->kind;
        if (error_is_set(&op->error) && k->has_rollback && !op->rollback && op->step < k->rollback_step) {
                op->rollback = true;
                log_debug("%s %s: %s failed (%s); rolling back.", op->class->noun, op->id, k->name,
                          error_text(&op->error));
                if (op->class->rolling_back)
                        op->class->rolling_back(op);
                run(op, k->rollback_step);
                return;
        }
        run(op, op->step + 1);
}

void op_goto(Op *op, unsigned step) {
        assert(op);
        run(op, step);
}

_printf_(4, 0)
static void op_failv(Op *op, ErrorKind kind, int error, const char *format, va_list ap) {
        assert(op);
        assert(format);
        /* The first failure is what the operation reports; error >= 0 counts as EIO. */
        (void) error_setv(&op->error, kind, error < 0 ? -error : EIO, format, ap);
}

void op_fail(Op *op, int error, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        op_failv(op, ERROR_SYSTEM, error, format, ap);
        va_end(ap);
}

void op_fail_kind(Op *op, ErrorKind kind, int error, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        op_failv(op, kind, error, format, ap);
        va_end(ap);
}

void op_fail_error(Op *op, const Error *error) {
        assert(op);
        assert(error_is_set(error));
        if (error_is_set(&op->error))
                return;
        if (error_copy(&op->error, error) < 0) /* out of memory: the kind and errno without the text */
                op->error = (Error) { .kind = error->kind, .errno_value = error->errno_value };
}

void op_fail_wrap(Op *op, const Error *error, const char *format, ...) {
        _cleanup_free_ char *prefix = NULL;
        va_list ap;

        assert(op);
        assert(error_is_set(error));
        assert(format);
        if (error_is_set(&op->error))
                return;
        va_start(ap, format);
        if (vasprintf(&prefix, format, ap) < 0)
                prefix = NULL;
        va_end(ap);
        op_fail_kind(op, error->kind, error_to_errno(error), "%s: %s", prefix ?: "?", error_text(error));
}

void op_dirty(Op *op) {
        assert(op);
        op->dirty = true;
}

void op_save(Op *op) {
        int r;

        assert(op);
        op->dirty = false;
        r = op->class->save(op);
        if (r < 0)
                log_warning_errno(r, "%s %s: cannot save its state: %m", op->class->noun, op->id);
}

void op_detach(Op *op) {
        if (op)
                op->detached = true;
}

void op_finish(Op *op) {
        Error error = ERROR_INIT;
        char id_field[64 + 65];
        const char *fields[] = { id_field, NULL };

        assert(op);
        error_move(&error, &op->error);
        op->class->unlink(op, false);
        snprintf(id_field, sizeof id_field, "%s=%s", op->class->id_field, op->id);
        if (error_is_set(&error))
                log_fields(LOG_WARNING, fields, "%s %s: %s failed: %s", op->class->noun, op->id, op->kind->name,
                           error_text(&error));
        else
                log_fields(op->kind->quiet ? LOG_DEBUG : LOG_INFO, fields, "%s %s: %s done.", op->class->noun, op->id,
                           op->kind->name);
        if (!op->detached && op->class->notify)
                op->class->notify(op, error_is_set(&error) ? &error : NULL);
        error_done(&error);
        op->class->free(op);
}

void op_abort(Op *op) {
        assert(op);
        if (op->class->cancel)
                op->class->cancel(op);
        if (op->child)
                child_abandon(TAKE_PTR(op->child));
        op->class->unlink(op, true);
        error_done(&op->error);
        op->class->free(op);
}

const char *op_step_name(const Op *op) {
        assert(op);
        if (op->step >= op->kind->n_steps || !op->kind->steps[op->step].name)
                return "end";
        return op->kind->steps[op->step].name;
}
