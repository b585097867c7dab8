/* Small helpers around yajl: generating strings and whole parsed trees, finding values, atomic
 * JSON files. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "macro.h"
#include "strv.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(yajl_gen, yajl_gen_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(yajl_val, yajl_tree_free);

void json_gen_str(yajl_gen g, const char *s);
void json_gen_key_str(yajl_gen g, const char *key, const char *value); /* value NULL: null */
void json_gen_key_int(yajl_gen g, const char *key, long long value);
void json_gen_key_bool(yajl_gen g, const char *key, bool value);
void json_gen_key_strv(yajl_gen g, const char *key, char **l); /* an array of strings */
void json_gen_key_pairs(yajl_gen g, const char *key, const StrPair *p, size_t n); /* an object of strings */
/* Regenerates a parsed value (numbers keep their text). */
void json_gen_value(yajl_gen g, yajl_val v);
/* The generator's output as a new string. */
char *json_gen_steal(yajl_gen g);

/* Parses s; on failure returns NULL with a message in err (when given). */
yajl_val json_parse(const char *s, char *err, size_t err_size);
/* obj[key], NULL when obj is no object or lacks the key. */
yajl_val json_get(yajl_val obj, const char *key);
const char *json_get_str(yajl_val obj, const char *key); /* NULL unless a string */
char *json_dup_str(yajl_val obj, const char *key);       /* a copy of that, or NULL */
bool json_get_int(yajl_val obj, const char *key, long long *ret);
/* obj[key] as an integer, 0 when it is none; whether obj[key] is true (false when absent). */
long long json_get_int_or_zero(yajl_val obj, const char *key);
bool json_get_true(yajl_val obj, const char *key);
/* obj[key]'s strings as a new NULL-terminated array (empty when absent); NULL on OOM. */
char **json_get_strv(yajl_val obj, const char *key);
/* obj[key]'s string members as pairs (n + 1 entries; empty when absent); NULL on OOM. */
StrPair *json_get_pairs(yajl_val obj, const char *key, size_t *ret_n);

/* Writes what g generated to path atomically (see below). */
int json_gen_write_file(yajl_gen g, const char *path, unsigned mode);
/* Writes what g generated to path with write_file_replace(): a record saved on the loop. */
int json_gen_save(yajl_gen g, const char *path, unsigned mode);
