/* Records: the objects the daemon keeps across restarts (containers, pods), each in
 * <dir>/<id>/state.json beneath a directory of its kind, and held in a doubly linked list whose
 * elements have an `id` (64 hex digits, NUL-terminated) and a `next` member. What a record says is
 * its module's; reading every record of a directory back, finding one by a prefix of its id, and
 * reading or writing one's file are the same for all of them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#define RECORD_MAX_SIZE (4 * 1024 * 1024)

/* The element of a list (first) whose id is prefix, or else the only one whose id begins with it:
 * -ENOENT (also for ""), or -ENOTUNIQ when more than one begins with it. */
int record_find_prefix_internal(void *first, size_t next_offset, size_t id_offset, const char *prefix, void **ret);
#define record_find_prefix(first, type, prefix, ret)                                                    \
        ({                                                                                              \
                void *_found_ = NULL;                                                                   \
                int _r_ = record_find_prefix_internal((first), offsetof(type, next), offsetof(type, id), \
                                                      (prefix), &_found_);                              \
                if (_r_ >= 0)                                                                           \
                        *(ret) = _found_;                                                               \
                _r_;                                                                                    \
        })

/* How the records of a directory are read back. */
typedef struct RecordType {
        const char *noun; /* "container", "pod": for the log */
        /* Reads the record of id: -ENOENT when the directory has none (it is then an orphan). */
        int (*load)(const char *id, void *userdata, void **ret);
        /* A directory of the kind without a record: what a crash left half made or half deleted. */
        void (*orphan)(const char *id, void *userdata);
        /* A record read back: recovery's turn. */
        void (*recovered)(void *record, void *userdata);
} RecordType;

/* Every <dir>/<id> (64 hex digits), in order: loaded, then recovered; a directory without a record
 * is an orphan; a record that cannot be read is logged and left alone. 0 when dir does not exist. */
int record_load_all(const char *dir, const RecordType *type, void *userdata);

/* <dir>/<id>/state.json (NULL on OOM). */
char *record_path(const char *dir, const char *id);
/* Reads and parses <dir>/<id>/state.json (at most RECORD_MAX_SIZE bytes): read_file()'s error
 * (-ENOENT when absent), -EBADMSG when it is no JSON object (truncated, garbage). */
int record_read(const char *dir, const char *id, yajl_val *ret);
/* Writes what g generated to <dir>/<id>/state.json atomically; durable: with the fsyncs
 * (write_file_atomic), else without (write_file_replace, made durable by the caller). */
int record_write(const char *dir, const char *id, yajl_gen g, bool durable);

/* Deletes what an orphan (an id without a record) left: <root_dir>/<kind>/<id> (persistent) and
 * <state_dir>/<kind>/<id> (runtime), through delete(), which the module gives (a trash, unmounts
 * first…), and logs the outcome for noun ("container", "pod"). */
typedef int (*RecordDeleteOrphan)(const char *root, const char *run, const char *id, void *userdata);
void record_delete_orphan(const char *noun, const char *kind, const char *root_dir, const char *state_dir,
                          const char *id, RecordDeleteOrphan delete, void *userdata);
