/* NULL-terminated string arrays, key-value pairs and random identifiers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

void strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
size_t strv_length(char **l);
bool strv_contains(char **l, const char *s);
/* Appends a copy of s. */
int strv_push(char ***l, const char *s);
/* Removes every entry equal to s. */
void strv_remove(char **l, const char *s);
/* The non-empty fields of s between any of the characters in sep, leading blanks cut off. */
char **strv_split(const char *s, const char *sep);
/* *p = a copy of s (or NULL), the old value freed. */
int free_and_strdup(char **p, const char *s);

/* Key-value pairs (labels, annotations, sysctls…): arrays with a count. */
typedef struct StrPair {
        char *key, *value;
} StrPair;
void pairs_free(StrPair *p, size_t n);
/* A copy (n + 1 entries, the last zeroed); NULL on OOM. */
StrPair *pairs_dup(const StrPair *p, size_t n);

/* A new random identifier: 64 lowercase hex digits (256 bits from getrandom()). */
int random_id(char id[static 65]);

/* Whether path has a ".." component ("a..b" is a name like any other). */
bool path_has_dotdot(const char *path);
