/* Small helpers around yajl: generating strings and whole parsed trees, finding values, atomic
 * JSON files. */
#include "json-util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"

void json_gen_str(yajl_gen g, const char *s) {
        yajl_gen_string(g, (const unsigned char *) s, strlen(s));
}

void json_gen_key_str(yajl_gen g, const char *key, const char *value) {
        json_gen_str(g, key);
        if (value)
                json_gen_str(g, value);
        else
                yajl_gen_null(g);
}

void json_gen_key_int(yajl_gen g, const char *key, long long value) {
        json_gen_str(g, key);
        yajl_gen_integer(g, value);
}

void json_gen_key_bool(yajl_gen g, const char *key, bool value) {
        json_gen_str(g, key);
        yajl_gen_bool(g, value);
}

void json_gen_key_strv(yajl_gen g, const char *key, char **l) {
        json_gen_str(g, key);
        yajl_gen_array_open(g);
        for (char **p = l; p && *p; p++)
                json_gen_str(g, *p);
        yajl_gen_array_close(g);
}

void json_gen_key_pairs(yajl_gen g, const char *key, const StrPair *p, size_t n) {
        json_gen_str(g, key);
        yajl_gen_map_open(g);
        for (size_t i = 0; i < n; i++)
                json_gen_key_str(g, p[i].key, p[i].value);
        yajl_gen_map_close(g);
}

StrPair *json_get_pairs(yajl_val obj, const char *key, size_t *ret_n) {
        yajl_val m = json_get(obj, key);
        size_t n = YAJL_IS_OBJECT(m) ? m->u.object.len : 0, k = 0;
        StrPair *p = calloc(n + 1, sizeof *p);

        for (size_t i = 0; p && i < n; i++)
                if (YAJL_IS_STRING(m->u.object.values[i])) {
                        p[k].key = strdup(m->u.object.keys[i]);
                        p[k].value = strdup(m->u.object.values[i]->u.string);
                        k++;
                        if (!p[k - 1].key || !p[k - 1].value) {
                                pairs_free(p, k);
                                p = NULL;
                        }
                }
        *ret_n = p ? k : 0;
        return p;
}

void json_gen_value(yajl_gen g, yajl_val v) {
        if (!v) {
                yajl_gen_null(g);
                return;
        }
        switch (v->type) {
        case yajl_t_string:
                json_gen_str(g, v->u.string);
                break;
        case yajl_t_number:
                yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
                break;
        case yajl_t_object:
                yajl_gen_map_open(g);
                for (size_t i = 0; i < v->u.object.len; i++) {
                        json_gen_str(g, v->u.object.keys[i]);
                        json_gen_value(g, v->u.object.values[i]);
                }
                yajl_gen_map_close(g);
                break;
        case yajl_t_array:
                yajl_gen_array_open(g);
                for (size_t i = 0; i < v->u.array.len; i++)
                        json_gen_value(g, v->u.array.values[i]);
                yajl_gen_array_close(g);
                break;
        case yajl_t_true:
                yajl_gen_bool(g, 1);
                break;
        case yajl_t_false:
                yajl_gen_bool(g, 0);
                break;
        default:
                yajl_gen_null(g);
        }
}

char *json_gen_steal(yajl_gen g) {
        const unsigned char *buf;
        size_t len;

        if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
                return NULL;
        return strndup((const char *) buf, len);
}

yajl_val json_parse(const char *s, char *err, size_t err_size) {
        char buf[256] = "";
        yajl_val v = yajl_tree_parse(s, buf, sizeof buf);

        if (!v && err && err_size > 0) {
                /* yajl's messages span lines; keep the first. */
                buf[strcspn(buf, "\n")] = '\0';
                snprintf(err, err_size, "%s", buf[0] ? buf : "invalid JSON");
        }
        return v;
}

yajl_val json_get(yajl_val obj, const char *key) {
        if (!obj || obj->type != yajl_t_object)
                return NULL;
        for (size_t i = 0; i < obj->u.object.len; i++)
                if (strcmp(obj->u.object.keys[i], key) == 0)
                        return obj->u.object.values[i];
        return NULL;
}

const char *json_get_str(yajl_val obj, const char *key) {
        yajl_val v = json_get(obj, key);
        return v && v->type == yajl_t_string ? v->u.string : NULL;
}

char *json_dup_str(yajl_val obj, const char *key) {
        const char *s = json_get_str(obj, key);
        return s ? strdup(s) : NULL;
}

static int json_gen_write(yajl_gen g, const char *path, unsigned mode, bool durable) {
        const unsigned char *buf;
        size_t len;

        if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
                return -ENOMEM;
        return durable ? write_file_atomic(path, (const char *) buf, len, mode)
                       : write_file_replace(path, (const char *) buf, len, mode);
}

int json_gen_write_file(yajl_gen g, const char *path, unsigned mode) {
        return json_gen_write(g, path, mode, true);
}

int json_gen_save(yajl_gen g, const char *path, unsigned mode) {
        return json_gen_write(g, path, mode, false);
}

bool json_get_int(yajl_val obj, const char *key, long long *ret) {
        yajl_val v = json_get(obj, key);

        if (!v || !YAJL_IS_INTEGER(v))
                return false;
        *ret = YAJL_GET_INTEGER(v);
        return true;
}

long long json_get_int_or_zero(yajl_val obj, const char *key) {
        long long v = 0;
        (void) json_get_int(obj, key, &v);
        return v;
}

bool json_get_true(yajl_val obj, const char *key) {
        return YAJL_IS_TRUE(json_get(obj, key));
}

char **json_get_strv(yajl_val obj, const char *key) {
        yajl_val a = json_get(obj, key);
        size_t n = YAJL_IS_ARRAY(a) ? a->u.array.len : 0, k = 0;
        char **l = calloc(n + 1, sizeof(char *));

        for (size_t i = 0; l && i < n; i++)
                if (YAJL_IS_STRING(a->u.array.values[i]) && !(l[k++] = strdup(a->u.array.values[i]->u.string))) {
                        for (size_t j = 0; j + 1 < k; j++)
                                free(l[j]);
                        free(l);
                        return NULL;
                }
        return l;
}

