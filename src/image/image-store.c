/* The image store under <root>/images: blobs by digest, layers unpacked once per chain ID, and
 * image records (JSON, written atomically). What goes is first renamed into trash/ (at once, on
 * the loop: no pull can find it any more) and then deleted there by a child. */
#include "image-store.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "fd-util.h"
#include "fileio.h"
#include "image-ref.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "strv.h"

void image_layers_free(ImageLayer *l, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(l[i].digest);
                free(l[i].diff_id);
                free(l[i].chain_id);
                free(l[i].media_type);
        }
        free(l);
}

void image_free(Image *img) {
        if (!img)
                return;
        free(img->id);
        strv_free(img->repo_tags);
        strv_free(img->repo_digests);
        free(img->user);
        image_layers_free(img->layers, img->n_layers);
        free(img);
}

static const char *hex(const char *digest) {
        const char *c = strchr(digest, ':');
        return c ? c + 1 : digest;
}

char *image_store_blob_path(ImageStore *s, const char *digest) {
        char *p;
        return asprintf(&p, "%s/blobs/sha256/%s", s->dir, hex(digest)) < 0 ? NULL : p;
}

char *image_store_layer_path(ImageStore *s, const char *chain_id) {
        char *p;
        return asprintf(&p, "%s/layers/%s", s->dir, hex(chain_id)) < 0 ? NULL : p;
}

char *image_config_path(ImageStore *s, const Image *img) {
        return image_store_blob_path(s, img->id);
}

bool image_store_has_blob(ImageStore *s, const char *digest) {
        char *p = image_store_blob_path(s, digest);
        bool ok = p && access(p, F_OK) == 0;
        free(p);
        return ok;
}

bool image_store_has_layer(ImageStore *s, const char *chain_id) {
        char *p = image_store_layer_path(s, chain_id), *u = NULL;
        bool ok = p && asprintf(&u, "%s.json", p) >= 0 && access(u, F_OK) == 0 && access(p, F_OK) == 0;
        free(p);
        free(u);
        return ok;
}

/* --- records ------------------------------------------------------------------------------------- */

static char *record_path(ImageStore *s, const char *id) {
        char *p;
        return asprintf(&p, "%s/records/%s.json", s->dir, hex(id)) < 0 ? NULL : p;
}

static int record_save(ImageStore *s, const Image *img) {
        char *path = record_path(s, img->id);
        yajl_gen g = yajl_gen_alloc(NULL);
        int r = -ENOMEM;

        if (!path || !g)
                goto out;
        yajl_gen_config(g, yajl_gen_beautify, 1);
        yajl_gen_map_open(g);
        json_gen_key_str(g, "id", img->id);
        json_gen_key_strv(g, "repoTags", img->repo_tags);
        json_gen_key_strv(g, "repoDigests", img->repo_digests);
        json_gen_key_str(g, "user", img->user);
        json_gen_key_int(g, "size", (long long) img->size);
        json_gen_str(g, "layers");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < img->n_layers; i++) {
                yajl_gen_map_open(g);
                json_gen_key_str(g, "digest", img->layers[i].digest);
                json_gen_key_str(g, "diffId", img->layers[i].diff_id);
                json_gen_key_str(g, "chainId", img->layers[i].chain_id);
                json_gen_key_str(g, "mediaType", img->layers[i].media_type);
                json_gen_key_int(g, "size", (long long) img->layers[i].size);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
        r = json_gen_write_file(g, path, 0600);
out:
        if (g)
                yajl_gen_free(g);
        free(path);
        return r;
}

static int record_load(ImageStore *s, const char *file, Image **ret) {
        char *path = NULL, *text = NULL;
        yajl_val v = NULL, layers;
        Image *img = NULL;
        long long size = 0;
        int r;

        if (asprintf(&path, "%s/records/%s", s->dir, file) < 0)
                return -ENOMEM;
        r = read_file(path, 4 * 1024 * 1024, &text, NULL);
        if (r < 0)
                goto out;
        v = json_parse(text, NULL, 0);
        r = -EBADMSG;
        if (!v || !digest_valid(json_get_str(v, "id")))
                goto out;
        img = calloc(1, sizeof *img);
        if (!img) {
                r = -ENOMEM;
                goto out;
        }
        img->id = json_dup_str(v, "id");
        img->repo_tags = json_get_strv(v, "repoTags");
        img->repo_digests = json_get_strv(v, "repoDigests");
        img->user = json_dup_str(v, "user");
        (void) json_get_int(v, "size", &size);
        img->size = (uint64_t) size;
        layers = json_get(v, "layers");
        if (YAJL_IS_ARRAY(layers)) {
                img->layers = calloc(layers->u.array.len + 1, sizeof *img->layers);
                for (size_t i = 0; img->layers && i < layers->u.array.len; i++) {
                        yajl_val l = layers->u.array.values[i];
                        long long ls = 0;
                        /* Both name files of the store: a layer without them is no image's. */
                        if (!digest_valid(json_get_str(l, "digest")) || !digest_valid(json_get_str(l, "chainId")))
                                goto out;
                        (void) json_get_int(l, "size", &ls);
                        img->layers[i] = (ImageLayer) {
                                .digest = json_dup_str(l, "digest"),
                                .diff_id = json_dup_str(l, "diffId"),
                                .chain_id = json_dup_str(l, "chainId"),
                                .media_type = json_dup_str(l, "mediaType"),
                                .size = (uint64_t) ls,
                        };
                        img->n_layers++;
                }
        }
        if (YAJL_IS_ARRAY(layers) && !img->layers) {
                r = -ENOMEM;
                goto out;
        }
        *ret = TAKE_PTR(img);
        r = 0;
out:
        image_free(img);
        yajl_tree_free(v);
        free(text);
        free(path);
        return r;
}

static void link_image(ImageStore *s, Image *img) {
        img->next = s->images;
        if (s->images)
                s->images->prev = img;
        s->images = img;
        s->n_images++;
}

static void unlink_image(ImageStore *s, Image *img) {
        if (img->prev)
                img->prev->next = img->next;
        else
                s->images = img->next;
        if (img->next)
                img->next->prev = img->prev;
        img->prev = img->next = NULL;
        s->n_images--;
}

int image_store_new(struct ev_loop *loop, const char *root, ImageStore **ret) {
        ImageStore *s = calloc(1, sizeof *s);
        struct dirent **entries = NULL;
        char *p = NULL;
        int n, r;

        if (!s)
                return -ENOMEM;
        s->loop = loop;
        if (asprintf(&s->dir, "%s/images", root) < 0) {
                free(s);
                return -ENOMEM;
        }
        const char *subdirs[] = { "blobs/sha256", "blobs/tmp", "layers", "records", "trash" };
        for (size_t i = 0; i < ELEMENTSOF(subdirs); i++) {
                if (asprintf(&p, "%s/%s", s->dir, subdirs[i]) < 0) {
                        image_store_free(s);
                        return -ENOMEM;
                }
                r = mkdir_p(p, 0700);
                free(p);
                if (r < 0) {
                        image_store_free(s);
                        return r;
                }
        }
        /* Downloads cut short by a crash are never trusted: start over. */
        if (asprintf(&p, "%s/blobs/tmp", s->dir) >= 0) {
                (void) rm_rf(p);
                (void) mkdir_p(p, 0700);
                free(p);
        }
        if (asprintf(&p, "%s/records", s->dir) < 0) {
                image_store_free(s);
                return -ENOMEM;
        }
        n = scandir(p, &entries, NULL, alphasort);
        free(p);
        for (int i = 0; i < n; i++) {
                Image *img;
                size_t len = strlen(entries[i]->d_name);
                if (len > 5 && strcmp(entries[i]->d_name + len - 5, ".json") == 0) {
                        r = record_load(s, entries[i]->d_name, &img);
                        if (r < 0)
                                log_warning_errno(r, "Image record %s is unreadable, ignoring it: %m", entries[i]->d_name);
                        else
                                link_image(s, img);
                }
                free(entries[i]);
        }
        free(entries);
        image_store_collect(s);
        *ret = s;
        return 0;
}

ImageStore *image_store_free(ImageStore *s) {
        if (!s)
                return NULL;
        while (s->images) {
                Image *img = s->images;
                unlink_image(s, img);
                image_free(img);
        }
        strv_free(s->busy);
        free(s->dir);
        free(s);
        return NULL;
}

Image *image_store_find(ImageStore *s, const char *ref) {
        ImageRef parsed;
        const char *error;
        char *name = NULL;
        Image *found = NULL;
        size_t n = strlen(ref);

        if (n == 0)
                return NULL;
        /* An id, or a unique prefix of one (at least 12 hex digits, as docker allows). */
        const char *h = strncmp(ref, "sha256:", 7) == 0 ? ref + 7 : ref;
        if (strlen(h) >= 12 && strspn(h, "0123456789abcdef") == strlen(h)) {
                for (Image *i = s->images; i; i = i->next)
                        if (strncmp(hex(i->id), h, strlen(h)) == 0) {
                                if (found)
                                        return NULL;
                                found = i;
                        }
                if (found)
                        return found;
        }
        for (Image *i = s->images; i; i = i->next)
                if (strv_contains(i->repo_tags, ref) || strv_contains(i->repo_digests, ref))
                        return i;
        if (image_ref_parse(ref, &parsed, &error) < 0)
                return NULL;
        /* By repo digest when there is a digest (a tag beside it is not looked at, as containerd),
         * else by tag. */
        name = image_ref_canonical(&parsed);
        for (Image *i = s->images; i && name && !found; i = i->next)
                if (strv_contains(parsed.digest ? i->repo_digests : i->repo_tags, name))
                        found = i;
        free(name);
        image_ref_done(&parsed);
        return found;
}

int image_store_add(ImageStore *s, Image *img, Image **ret) {
        Image *existing = NULL;
        int r;

        /* Tags are unique: one that now names this image leaves any other. */
        for (Image *i = s->images; i; i = i->next) {
                if (strcmp(i->id, img->id) == 0) {
                        existing = i;
                        continue;
                }
                bool changed = false;
                for (char **t = img->repo_tags; t && *t; t++)
                        if (strv_contains(i->repo_tags, *t)) {
                                strv_remove(i->repo_tags, *t);
                                changed = true;
                        }
                if (changed)
                        (void) record_save(s, i);
        }
        if (existing) {
                for (char **t = img->repo_tags; t && *t; t++)
                        if (!strv_contains(existing->repo_tags, *t) && (r = strv_push(&existing->repo_tags, *t)) < 0)
                                goto fail;
                for (char **d = img->repo_digests; d && *d; d++)
                        if (!strv_contains(existing->repo_digests, *d) &&
                            (r = strv_push(&existing->repo_digests, *d)) < 0)
                                goto fail;
                image_free(img);
                r = record_save(s, existing);
                if (r < 0)
                        return r;
                *ret = existing;
                return 0;
        }
        r = record_save(s, img);
        if (r < 0)
                goto fail;
        link_image(s, img);
        *ret = img;
        return 0;
fail:
        image_free(img);
        return r;
}

void image_store_hold(ImageStore *s, const char *id) {
        if (id)
                (void) strv_push(&s->busy, id);
}

void image_store_release(ImageStore *s, const char *id) {
        /* One hold at a time: several pulls may hold the same id. */
        for (size_t i = 0; id && s->busy && s->busy[i]; i++)
                if (strcmp(s->busy[i], id) == 0) {
                        free(s->busy[i]);
                        memmove(s->busy + i, s->busy + i + 1, (strv_length(s->busy + i + 1) + 1) * sizeof(char *));
                        return;
                }
}

bool image_store_blob_used(ImageStore *s, const char *digest) {
        assert(s);
        assert(digest);
        if (strv_contains(s->busy, digest))
                return true;
        for (Image *i = s->images; i; i = i->next) {
                if (strcmp(i->id, digest) == 0)
                        return true;
                for (size_t k = 0; k < i->n_layers; k++)
                        if (strcmp(i->layers[k].digest, digest) == 0)
                                return true;
        }
        return false;
}

bool image_store_layer_used(ImageStore *s, const char *chain_id) {
        assert(s);
        assert(chain_id);
        if (strv_contains(s->busy, chain_id))
                return true;
        for (Image *i = s->images; i; i = i->next)
                for (size_t k = 0; k < i->n_layers; k++)
                        if (strcmp(i->layers[k].chain_id, chain_id) == 0)
                                return true;
        return false;
}

bool image_store_gc_keep(ImageStore *s, ImageGcArea area, const char *name) {
        _cleanup_free_ char *id = NULL;
        size_t n = strlen(name);

        if (name[0] == '.')
                return true;
        if (area == IMAGE_GC_LAYERS) {
                if (n == 64 + 5 && strcmp(name + 64, ".json") == 0)
                        return true; /* goes with its directory */
                if (n != 64)
                        return false; /* a partial unpack ("<hex>.tmp-…") or a stranger */
        }
        if (asprintf(&id, "sha256:%s", name) < 0)
                return true; /* out of memory: nothing is lost by waiting */
        return area == IMAGE_GC_LAYERS ? image_store_layer_used(s, id) : image_store_blob_used(s, id);
}

typedef struct GcPaths {
        char **paths;
} GcPaths;

static int gc_child(void *userdata) {
        GcPaths *g = userdata;
        return rm_rf_all(g->paths);
}

static void gc_done(Child *child, const ChildResult *res, void *userdata) {
        if (res->exit_code != 0)
                log_warning("Image store clean-up failed: %.*s", (int) res->err_len, res->err ?: "");
}

static void gc_spawn(ImageStore *s, GcPaths *g) {
        ChildSpec spec = { .setup = gc_child, .setup_userdata = g, .timeout_usec = 600ULL * 1000 * 1000 };
        int r;

        if (!g->paths)
                return;
        r = child_spawn(s->loop, &spec, gc_done, NULL, NULL);
        if (r < 0)
                log_warning_errno(r, "Failed to start the image store clean-up: %m");
}

void image_store_collect(ImageStore *s) {
        GcPaths g = {};
        struct dirent *de;
        char *dir = NULL;
        DIR *d;

        /* Blobs no record names (a pull killed before it recorded its image) and half-unpacked
         * or unused layers: a crash leaves such things; nothing trusts them, they only take room. */
        if (asprintf(&dir, "%s/blobs/sha256", s->dir) >= 0 && (d = opendir(dir))) {
                while ((de = readdir(d))) {
                        char *p = NULL;
                        if (!image_store_gc_keep(s, IMAGE_GC_BLOBS, de->d_name) &&
                            asprintf(&p, "%s/%s", dir, de->d_name) >= 0)
                                (void) strv_push(&g.paths, p);
                        free(p);
                }
                closedir(d);
        }
        free(dir);
        if (asprintf(&dir, "%s/layers", s->dir) >= 0 && (d = opendir(dir))) {
                while ((de = readdir(d))) {
                        char *p = NULL;
                        if (image_store_gc_keep(s, IMAGE_GC_LAYERS, de->d_name))
                                continue;
                        if (asprintf(&p, "%s/%s", dir, de->d_name) >= 0) {
                                char *u = NULL;
                                if (strlen(de->d_name) == 64 && asprintf(&u, "%s.json", p) >= 0)
                                        (void) unlink(u);
                                free(u);
                                (void) strv_push(&g.paths, p);
                        }
                        free(p);
                }
                closedir(d);
        }
        free(dir);
        /* What a deletion cut short by the crash left in the trash. */
        _cleanup_free_ char *bin = NULL;
        if (asprintf(&bin, "%s/trash", s->dir) < 0)
                bin = NULL;
        if (bin && (d = opendir(bin))) {
                while ((de = readdir(d))) {
                        char *p = NULL;
                        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                            asprintf(&p, "%s/%s", bin, de->d_name) >= 0)
                                (void) strv_push(&g.paths, p);
                        free(p);
                }
                closedir(d);
        }
        if (g.paths)
                log_info("Image store: removing %zu unused or partial blob(s) and layer(s).", strv_length(g.paths));
        /* Before the daemon serves: no pull can race with it. */
        (void) gc_child(&g);
        strv_free(g.paths);
}

/* Out of the store's names at once, into the trash for the child to delete; when it cannot be
 * renamed (EXDEV: something mounted there), the child deletes it where it is. */
static void trash(ImageStore *s, GcPaths *g, const char *path) {
        _cleanup_free_ char *t = NULL;
        const char *base = strrchr(path, '/');
        uint32_t rnd = 0;

        (void) getrandom(&rnd, sizeof rnd, 0);
        if (asprintf(&t, "%s/trash/%s.%08x", s->dir, base ? base + 1 : path, rnd) < 0)
                t = NULL;
        if (t && rename(path, t) >= 0) {
                (void) strv_push(&g->paths, t);
                return;
        }
        if (t && errno == ENOENT)
                return; /* not there (a layer never finished, a blob never fetched) */
        (void) strv_push(&g->paths, path);
}

static void trash_layer(ImageStore *s, GcPaths *g, const char *chain_id) {
        _cleanup_free_ char *l = image_store_layer_path(s, chain_id), *u = NULL;

        if (!l || asprintf(&u, "%s.json", l) < 0)
                return;
        /* The usage file first: without it the layer no longer counts as there. */
        (void) unlink(u);
        trash(s, g, l);
}

void image_store_discard_path(ImageStore *s, const char *path) {
        GcPaths g = {};

        trash(s, &g, path);
        gc_spawn(s, &g);
        strv_free(g.paths);
}

void image_store_discard_unused(ImageStore *s, char *const *digests, char *const *chain_ids) {
        GcPaths g = {};

        for (char *const *d = digests; d && *d; d++)
                if (!image_store_blob_used(s, *d)) {
                        _cleanup_free_ char *b = image_store_blob_path(s, *d);
                        if (b)
                                trash(s, &g, b);
                }
        for (char *const *c = chain_ids; c && *c; c++)
                if (!image_store_layer_used(s, *c))
                        trash_layer(s, &g, *c);
        gc_spawn(s, &g);
        strv_free(g.paths);
}

int image_store_remove(ImageStore *s, Image *img) {
        char *path = record_path(s, img->id), **digests = NULL, **chains = NULL;
        int r;

        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0 && errno != ENOENT) {
                r = -errno;
                free(path);
                return r;
        }
        free(path);
        unlink_image(s, img);

        /* What no remaining image uses goes. */
        (void) strv_push(&digests, img->id);
        for (size_t k = 0; k < img->n_layers; k++) {
                (void) strv_push(&digests, img->layers[k].digest);
                (void) strv_push(&chains, img->layers[k].chain_id);
        }
        image_store_discard_unused(s, digests, chains);
        strv_free(digests);
        strv_free(chains);
        image_free(img);
        return 0;
}

uint64_t image_store_layer_size(ImageStore *s, const char *chain_id) {
        _cleanup_free_ char *l = image_store_layer_path(s, chain_id), *u = NULL, *text = NULL;
        long long v = 0;
        yajl_val j;

        if (!l || asprintf(&u, "%s.json", l) < 0 || read_file(u, 4096, &text, NULL) < 0 ||
            !(j = json_parse(text, NULL, 0)))
                return 0;
        if (!json_get_int(j, "size", &v))
                (void) json_get_int(j, "bytes", &v);
        yajl_tree_free(j);
        return v > 0 ? (uint64_t) v : 0;
}

int image_store_usage(ImageStore *s, uint64_t *ret_bytes, uint64_t *ret_inodes) {
        uint64_t bytes = 0, inodes = 0;
        struct dirent *de;
        char *p;
        DIR *d;

        /* Blobs: one stat each. Layers: the usage their unpacking recorded. */
        if (asprintf(&p, "%s/blobs/sha256", s->dir) < 0)
                return -ENOMEM;
        d = opendir(p);
        free(p);
        while (d && (de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) >= 0) {
                        bytes += (uint64_t) st.st_blocks * 512;
                        inodes++;
                }
        }
        if (d)
                closedir(d);
        if (asprintf(&p, "%s/layers", s->dir) < 0)
                return -ENOMEM;
        d = opendir(p);
        while (d && (de = readdir(d))) {
                size_t n = strlen(de->d_name);
                char *f = NULL, *text = NULL;
                yajl_val v;
                long long b = 0, i = 0;

                if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0 || asprintf(&f, "%s/%s", p, de->d_name) < 0)
                        continue;
                if (read_file(f, 4096, &text, NULL) >= 0 && (v = json_parse(text, NULL, 0))) {
                        (void) json_get_int(v, "bytes", &b);
                        (void) json_get_int(v, "inodes", &i);
                        bytes += (uint64_t) b;
                        inodes += (uint64_t) i;
                        yajl_tree_free(v);
                }
                free(text);
                free(f);
        }
        if (d)
                closedir(d);
        free(p);
        *ret_bytes = bytes;
        *ret_inodes = inodes;
        return 0;
}
