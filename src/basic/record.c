/* Records of a state directory: see record.h. */
#include "record.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fd-util.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"

int record_find_prefix_internal(void *first, size_t next_offset, size_t id_offset, const char *prefix, void **ret) {
        size_t n;
        void *found = NULL;

        assert(prefix);
        assert(ret);
        n = strlen(prefix);
        if (n == 0)
                return -ENOENT;
        for (char *e = first; e; e = *(void **) (e + next_offset)) {
                const char *id = e + id_offset;
                if (strncmp(id, prefix, n) != 0)
                        continue;
                if (strlen(id) == n) {
                        *ret = e;
                        return 0;
                }
                if (found)
                        return -ENOTUNIQ;
                found = e;
        }
        if (!found)
                return -ENOENT;
        *ret = found;
        return 0;
}

typedef struct LoadAll {
        const char *dir;
        const RecordType *type;
        void *userdata;
} LoadAll;

static void load_one(const char *id, void *userdata) {
        LoadAll *a = userdata;
        void *record = NULL;
        int r;

        r = a->type->load(id, a->userdata, &record);
        if (r == -ENOENT) {
                if (a->type->orphan)
                        a->type->orphan(id, a->userdata);
                return;
        }
        if (r < 0) {
                log_warning_errno(r, "%s %s: cannot read %s/%s/state.json, ignoring it: %m", a->type->noun, id, a->dir,
                                  id);
                return;
        }
        if (a->type->recovered)
                a->type->recovered(record, a->userdata);
}

int record_load_all(const char *dir, const RecordType *type, void *userdata) {
        LoadAll a = { .dir = dir, .type = type, .userdata = userdata };

        assert(dir);
        assert(type && type->load && type->noun);
        return dir_for_each_id(dir, load_one, &a);
}

char *record_path(const char *dir, const char *id) {
        char *p;

        assert(dir);
        assert(id);
        return asprintf(&p, "%s/%s/state.json", dir, id) < 0 ? NULL : p;
}

int record_read(const char *dir, const char *id, yajl_val *ret) {
        _cleanup_free_ char *path = record_path(dir, id), *text = NULL;
        yajl_val v;
        int r;

        assert(ret);
        if (!path)
                return -ENOMEM;
        r = read_file(path, RECORD_MAX_SIZE, &text, NULL);
        if (r < 0)
                return r;
        v = json_parse(text, NULL, 0);
        if (!YAJL_IS_OBJECT(v)) {
                yajl_tree_free(v);
                return -EBADMSG;
        }
        *ret = v;
        return 0;
}

int record_write(const char *dir, const char *id, yajl_gen g, bool durable) {
        _cleanup_free_ char *path = record_path(dir, id);

        assert(g);
        if (!path)
                return -ENOMEM;
        return durable ? json_gen_write_file(g, path, 0600) : json_gen_save(g, path, 0600);
}

void record_delete_orphan(const char *noun, const char *kind, const char *root_dir, const char *state_dir,
                          const char *id, RecordDeleteOrphan delete, void *userdata) {
        _cleanup_free_ char *root = NULL, *run = NULL;
        int r = -ENOMEM;

        assert(noun);
        assert(kind);
        assert(id);
        assert(delete);
        if (asprintf(&root, "%s/%s/%s", root_dir, kind, id) < 0)
                root = NULL; /* undefined after a failure */
        if (asprintf(&run, "%s/%s/%s", state_dir, kind, id) < 0)
                run = NULL;
        if (root && run)
                r = delete(root, run, id, userdata);
        if (r < 0)
                log_warning_errno(r, "%s %s: cannot delete its directories, which have no record: %m", noun, id);
        else
                log_notice("%s %s: deleted its directories, which had no record.", noun, id);
}
