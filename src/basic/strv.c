/* NULL-terminated string arrays, key-value pairs and random identifiers. */
#include "strv.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

void strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

size_t strv_length(char **l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

bool strv_contains(char **l, const char *s) {
        for (char **p = l; p && *p; p++)
                if (strcmp(*p, s) == 0)
                        return true;
        return false;
}

int strv_push(char ***l, const char *s) {
        size_t n = strv_length(*l);
        char **m = realloc(*l, (n + 2) * sizeof(char *));

        if (!m)
                return -ENOMEM;
        *l = m;
        m[n + 1] = NULL;
        if (!(m[n] = strdup(s)))
                return -ENOMEM;
        return 0;
}

void strv_remove(char **l, const char *s) {
        size_t k = 0;

        for (size_t i = 0; l && l[i]; i++) {
                if (strcmp(l[i], s) == 0)
                        free(l[i]);
                else
                        l[k++] = l[i];
        }
        if (l)
                l[k] = NULL;
}

char **strv_split(const char *s, const char *sep) {
        char *copy = strdup(s ?: ""), *save = NULL;
        char **l = calloc(strlen(s ?: "") + 2, sizeof(char *));
        size_t n = 0;

        if (!copy || !l) {
                free(copy);
                free(l);
                return NULL;
        }
        for (char *t = strtok_r(copy, sep, &save); t; t = strtok_r(NULL, sep, &save)) {
                t += strspn(t, " \t");
                if (*t && !(l[n++] = strdup(t))) {
                        free(copy);
                        strv_free(l);
                        return NULL;
                }
        }
        free(copy);
        return l;
}

int free_and_strdup(char **p, const char *s) {
        char *c = NULL;

        if (s && !(c = strdup(s)))
                return -ENOMEM;
        free(*p);
        *p = c;
        return 0;
}

void pairs_free(StrPair *p, size_t n) {
        for (size_t i = 0; p && i < n; i++) {
                free(p[i].key);
                free(p[i].value);
        }
        free(p);
}

StrPair *pairs_dup(const StrPair *p, size_t n) {
        StrPair *out = calloc(n + 1, sizeof *out);

        for (size_t i = 0; out && i < n; i++)
                if (!(out[i].key = strdup(p[i].key)) || !(out[i].value = strdup(p[i].value))) {
                        pairs_free(out, i + 1);
                        return NULL;
                }
        return out;
}

int random_id(char id[static 65]) {
        uint8_t b[32];
        ssize_t n = getrandom(b, sizeof b, 0);

        if (n != (ssize_t) sizeof b)
                return n < 0 ? -errno : -EIO;
        for (size_t i = 0; i < sizeof b; i++)
                snprintf(id + 2 * i, 3, "%02x", b[i]);
        return 0;
}

bool path_has_dotdot(const char *path) {
        for (const char *p = path; (p = strstr(p, "..")); p += 2)
                if ((p == path || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
                        return true;
        return false;
}
